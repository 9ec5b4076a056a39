// tinyllama train --config FILE [--set key=value ...] [--resume auto|PATH]
// Several GPUs: the same command under torchrun, mpirun or srun (one process per GPU).
// Exit status: 0 when the run finished or a stop signal ended it after saving; 1 on an
// error (bad config, a checkpoint that cannot be written, too many non-finite steps).
#include <cstdio>

#include "cli/commands.h"
#include "core/log.h"
#include "train/trainer.h"

namespace tl::cli {

namespace {
// A word the shell reads back as `s`.
std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_./:=@%+,-") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}
}  // namespace

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model from a JSON config");
  struct Opts {
    std::string config, resume, device, init_from;
    std::vector<std::string> sets;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config", o->config, "Training config (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", o->sets, "Override a config key, e.g. --set optim.lr=3e-4 (repeatable)");
  cmd->add_option("--resume", o->resume,
                  "'auto' continues from the newest valid checkpoint of the run folder; or a "
                  "checkpoint path");
  cmd->add_option("--device", o->device, "cpu, cuda or auto (overrides train.device)");
  cmd->add_option("--init-from", o->init_from,
                  "Start from this checkpoint's weights (e.g. an imported Hugging Face model): "
                  "step 0, fresh optimizer; its model must equal the config's model section")
      ->check(CLI::ExistingPath);
  cmd->callback([o] {
    std::vector<std::string> sets = o->sets;
    if (!o->device.empty()) sets.push_back("train.device=" + o->device);
    TrainConfig cfg = TrainConfig::load(o->config, sets);
    install_stop_signal_handlers();
    Trainer trainer(cfg, o->resume, o->init_from);
    TrainSummary s;
    try {
      s = trainer.run();
    } catch (const std::exception& e) {
      trainer.report_failure(e.what());  // multi-GPU runs: every rank learns why
      throw;
    }
    if (s.stopped) {
      // The run folder's config.json is this run's config, --set overrides included.
      std::printf(
          "stopped by a signal at step %lld of %lld; checkpoint: %s\n"
          "continue with: tinyllama train --config %s --resume auto\n",
          (long long)s.steps, (long long)cfg.train.steps, s.final_checkpoint.c_str(),
          shell_quote(cfg.train.run_dir + "/config.json").c_str());
      return;
    }
    std::printf("trained %lld steps in %.1f s; final train loss %.4f", (long long)s.steps,
                s.seconds, s.final_train_loss);
    if (s.final_val_loss >= 0) std::printf("; validation loss %.4f", s.final_val_loss);
    if (s.final_val_loss >= 0 && s.first_val_loss >= 0)
      std::printf(" (first %.4f)", s.first_val_loss);
    if (s.skipped_steps > 0 || s.spikes > 0)
      std::printf("; %lld steps skipped (non-finite), %lld loss spikes", (long long)s.skipped_steps,
                  (long long)s.spikes);
    std::printf("\ncheckpoint: %s\n", s.final_checkpoint.c_str());
  });
}

}  // namespace tl::cli
