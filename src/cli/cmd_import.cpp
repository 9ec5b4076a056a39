// tinyllama import: a Hugging Face Llama folder -> a native model-only checkpoint.
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "checkpoint/hf.h"
#include "cli/commands.h"
#include "core/fs.h"

namespace tl::cli {

void add_import_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "import", "Import a Hugging Face Llama model (config.json + safetensors) as a checkpoint");
  auto hf_dir = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("--hf", *hf_dir, "Hugging Face model folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--out", *out, "checkpoint file to write")->required();
  cmd->callback([hf_dir, out] {
    HfModel m = import_hf(*hf_dir);
    CheckpointData ck;
    ck.meta = {{"model", m.config.to_json()},
               {"source", {{"hf_dir", *hf_dir}, {"hf_config", m.hf_config}}},
               {"step", 0}};
    ck.params = std::move(m.params);
    make_dirs(std::filesystem::path(*out).parent_path().string());
    save_checkpoint(*out, ck);
    std::printf("imported %s (%s, %lld parameters) -> %s\n", hf_dir->c_str(),
                m.config.preset.c_str(), static_cast<long long>(m.config.num_params()),
                out->c_str());
  });
}

}  // namespace tl::cli
