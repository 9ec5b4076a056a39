// Each subcommand lives in its own cmd_*.cpp and registers itself on the root app.
// Callbacks throw tl::Error for bad input; main() prints it and exits non-zero.
#pragma once
#include <CLI/CLI.hpp>

namespace tl::cli {

void add_tokenize_command(CLI::App& app);
void add_tokenizer_train_command(CLI::App& app);
void add_prepare_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_import_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_init_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_comm_check_command(CLI::App& app);
void add_serve_command(CLI::App& app);

}  // namespace tl::cli
