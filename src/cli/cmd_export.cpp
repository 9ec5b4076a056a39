// STUB: replaced by the real subcommand.
#include "cli/commands.h"
#include "core/error.h"

namespace tl::cli {

void add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "(not built yet)");
  cmd->callback([] { fail("export: not built yet"); });
}

}  // namespace tl::cli
