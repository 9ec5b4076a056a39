// tinyllama: one binary for the whole life of a model.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <unistd.h>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  // OpenMP threads that spin at every barrier crawl when the cores are shared (CI, laptops);
  // passive waiting costs little on idle cores. The user's own setting wins. libgomp reads
  // its environment before main() runs, so a setenv here alone does nothing: set it and run
  // this binary again (same pid, same arguments); if exec fails, go on as we are.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
  }
  CLI::App app{"tinyllama: pretrain Llama-architecture language models from raw text"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tinyllama 0.1");
  tl::cli::add_tokenize_command(app);
  tl::cli::add_tokenizer_train_command(app);
  tl::cli::add_prepare_command(app);
  tl::cli::add_train_command(app);
  tl::cli::add_eval_command(app);
  tl::cli::add_report_command(app);
  tl::cli::add_generate_command(app);
  tl::cli::add_import_command(app);
  tl::cli::add_export_command(app);
  tl::cli::add_bench_command(app);
  tl::cli::add_init_command(app);
  tl::cli::add_logits_command(app);
  tl::cli::add_comm_check_command(app);
  tl::cli::add_serve_command(app);
  // CLI11 would call a misspelled subcommand "A subcommand is required": name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      found = found || sub->get_name() == argv[1];
    }
    if (!found) {
      std::fprintf(stderr, "error: unknown subcommand '%s' (known: %s); see tinyllama --help\n",
                   argv[1], known.c_str());
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const tl::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of host memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
