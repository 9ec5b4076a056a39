// STUB: replaced by the real subcommand.
#include "cli/commands.h"
#include "core/error.h"

namespace tl::cli {

void add_tokenizer_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer-train", "(not built yet)");
  cmd->callback([] { fail("tokenizer-train: not built yet"); });
}

}  // namespace tl::cli
