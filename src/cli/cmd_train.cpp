// tinyllama train --config FILE [--set key=value ...] [--resume auto|PATH]
#include <cstdio>

#include "cli/commands.h"
#include "core/log.h"
#include "train/trainer.h"

namespace tl::cli {

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model from a JSON config");
  struct Opts {
    std::string config, resume, device;
    std::vector<std::string> sets;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config", o->config, "Training config (JSON)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--set", o->sets, "Override a config key, e.g. --set optim.lr=3e-4 (repeatable)");
  cmd->add_option("--resume", o->resume,
                  "'auto' continues from the newest valid checkpoint of the run folder; or a "
                  "checkpoint path");
  cmd->add_option("--device", o->device, "cpu, cuda or auto (overrides train.device)");
  cmd->callback([o] {
    std::vector<std::string> sets = o->sets;
    if (!o->device.empty()) sets.push_back("train.device=" + o->device);
    TrainConfig cfg = TrainConfig::load(o->config, sets);
    install_stop_signal_handlers();
    Trainer trainer(cfg, o->resume);
    TrainSummary s;
    try {
      s = trainer.run();
    } catch (const std::exception& e) {
      trainer.report_failure(e.what());  // multi-GPU runs: every rank learns why
      throw;
    }
    std::printf("trained %lld steps in %.1f s; final train loss %.4f", (long long)s.steps,
                s.seconds, s.final_train_loss);
    if (s.final_val_loss >= 0)
      std::printf("; validation loss %.4f (first %.4f)", s.final_val_loss, s.first_val_loss);
    std::printf("\ncheckpoint: %s\n", s.final_checkpoint.c_str());
  });
}

}  // namespace tl::cli
