// tinyllama init --preset NAME [--set key=value ...] --out CK [--seed S]
// A model-only checkpoint with TinyLlama's random init: a model to export, benchmark or
// compare against other implementations without training it first.
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "cli/commands.h"
#include "core/fs.h"
#include "model/llama.h"

namespace tl::cli {

void add_init_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "init", "Write a randomly initialized model checkpoint (no training, no optimizer state)");
  struct Opts {
    std::string preset = "tinyllama-1.1b", out, device = "cpu";
    std::vector<std::string> sets;
    uint64_t seed = 0;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--preset", o->preset, "Model preset")->capture_default_str();
  cmd->add_option("--set", o->sets,
                  "Override a model field, e.g. --set dim=256 --set n_layers=2 (repeatable)");
  cmd->add_option("--out", o->out, "Checkpoint file to write")->required();
  cmd->add_option("--seed", o->seed, "Init seed")->capture_default_str();
  cmd->add_option("--device", o->device, "Where the model is built: cpu, cuda or auto")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads (0 = all cores)");
  cmd->callback([o] {
    json mj = {{"preset", o->preset}};
    for (const auto& s : o->sets) {
      const auto eq = s.find('=');
      TL_CHECK(eq != std::string::npos, "--set expects key=value, got '", s, "'");
      json_set_dotted(mj, s.substr(0, eq), s.substr(eq + 1));
    }
    const ModelConfig cfg = ModelConfig::from_json(mj, "model");
    auto be = make_backend(o->device, o->threads);
    LlamaModel model(cfg, *be);
    model.init_weights(o->seed);
    CheckpointData ck;
    ck.meta = {
        {"format", "tinyllama-init"}, {"model", cfg.to_json()}, {"seed", o->seed}, {"step", 0}};
    ck.params = model.get_params();
    make_dirs(std::filesystem::path(o->out).parent_path().string());
    save_checkpoint(o->out, ck);
    std::printf("initialized %s (%lld parameters, seed %llu) -> %s\n", cfg.preset.c_str(),
                static_cast<long long>(cfg.num_params()), static_cast<unsigned long long>(o->seed),
                o->out.c_str());
  });
}

}  // namespace tl::cli
