// tinyllama import: a Hugging Face Llama folder or a llama GGUF -> a native model-only checkpoint.
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_llama.h"
#include "checkpoint/hf.h"
#include "cli/commands.h"
#include "core/fs.h"

namespace tl::cli {

void add_import_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("import",
                                 "Import a Hugging Face Llama model (config.json + safetensors) or "
                                 "a llama GGUF as a checkpoint");
  auto hf_dir = std::make_shared<std::string>();
  auto gguf_path = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* hf =
      cmd->add_option("--hf", *hf_dir, "Hugging Face model folder")->check(CLI::ExistingDirectory);
  auto* gg = cmd->add_option("--gguf", *gguf_path,
                             "GGUF file of a llama model (F32, F16, BF16 or Q8_0; "
                             "Q8_0 is dequantized)")
                 ->check(CLI::ExistingFile);
  hf->excludes(gg);
  cmd->add_option("--out", *out, "checkpoint file to write")->required();
  cmd->callback([hf_dir, gguf_path, out] {
    TL_CHECK(!hf_dir->empty() || !gguf_path->empty(), "import: give --hf DIR or --gguf FILE");
    CheckpointData ck;
    ModelConfig cfg;
    std::string source = *hf_dir;
    if (!hf_dir->empty()) {
      HfModel m = import_hf(*hf_dir);
      cfg = m.config;
      ck.meta = {{"source", {{"hf_dir", *hf_dir}, {"hf_config", m.hf_config}}}};
      ck.params = std::move(m.params);
    } else {
      GgufModel m = import_gguf(*gguf_path);
      cfg = m.config;
      ck.meta = {{"source", {{"gguf", *gguf_path}, {"name", m.name}}}};
      ck.params = std::move(m.params);
      source = *gguf_path;
    }
    ck.meta["model"] = cfg.to_json();
    ck.meta["step"] = 0;
    make_dirs(std::filesystem::path(*out).parent_path().string());
    save_checkpoint(*out, ck);
    std::printf("imported %s (%s, %lld parameters) -> %s\n", source.c_str(), cfg.preset.c_str(),
                static_cast<long long>(cfg.num_params()), out->c_str());
  });
}

}  // namespace tl::cli
