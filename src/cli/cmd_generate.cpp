// STUB: replaced by the real subcommand.
#include "cli/commands.h"
#include "core/error.h"

namespace tl::cli {

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "(not built yet)");
  cmd->callback([] { fail("generate: not built yet"); });
}

}  // namespace tl::cli
