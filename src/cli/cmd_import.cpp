// STUB: replaced by the real subcommand.
#include "cli/commands.h"
#include "core/error.h"

namespace tl::cli {

void add_import_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("import", "(not built yet)");
  cmd->callback([] { fail("import: not built yet"); });
}

}  // namespace tl::cli
