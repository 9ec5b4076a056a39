// STUB: replaced by the real subcommand.
#include "cli/commands.h"
#include "core/error.h"

namespace tl::cli {

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "(not built yet)");
  cmd->callback([] { fail("tokenize: not built yet"); });
}

}  // namespace tl::cli
