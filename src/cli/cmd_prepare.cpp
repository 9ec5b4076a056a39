// STUB: replaced by the real subcommand.
#include "cli/commands.h"
#include "core/error.h"

namespace tl::cli {

void add_prepare_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "(not built yet)");
  cmd->callback([] { fail("prepare: not built yet"); });
}

}  // namespace tl::cli
