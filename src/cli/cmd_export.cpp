// tinyllama export: a native checkpoint -> a Hugging Face Llama folder or a llama.cpp GGUF file.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_llama.h"
#include "checkpoint/hf.h"
#include "checkpoint/load.h"
#include "cli/commands.h"
#include "core/fs.h"
#include "data/tokenizer.h"

namespace tl::cli {

namespace {
struct ExportArgs {
  std::string checkpoint, format = "hf", out, dtype, tokenizer;  // dtype "": bf16 (hf), f16 (gguf)
  double max_shard_gb = 5.0;
};

// The tokenizer a training run named (train_config.data.tokenizer, relative to its base_dir),
// when the file is still there; "" otherwise.
std::string tokenizer_of_run(const json& meta) {
  if (!meta.contains("train_config") || !meta["train_config"].is_object()) return "";
  const json& tc = meta["train_config"];
  if (!tc.contains("data") || !tc["data"].is_object()) return "";
  const json& data = tc["data"];
  if (!data.contains("tokenizer") || !data["tokenizer"].is_string()) return "";
  std::string path = data["tokenizer"].get<std::string>();
  if (!path.empty() && path[0] != '/' && tc.contains("base_dir") && tc["base_dir"].is_string())
    path = tc["base_dir"].get<std::string>() + "/" + path;
  return !path.empty() && file_exists(path) ? path : "";
}

std::string canonical_dtype(const std::string& d) {
  return d == "fp32" ? "f32" : d == "fp16" ? "f16" : d;
}

gguf::TensorType gguf_type(const std::string& d) {
  if (d == "f32") return gguf::TensorType::F32;
  if (d == "bf16") return gguf::TensorType::BF16;
  if (d == "q8_0") return gguf::TensorType::Q8_0;
  return gguf::TensorType::F16;
}

void run_export(const ExportArgs& a) {
  const std::string dtype =
      canonical_dtype(a.dtype.empty() ? (a.format == "gguf" ? "f16" : "bf16") : a.dtype);
  TL_CHECK(a.format == "gguf" || dtype != "q8_0",
           "--dtype q8_0 is for --format gguf (Hugging Face folders "
           "hold f32, bf16 or f16)");
  // An empty, random or truncated file is refused here, as every other command refuses it.
  if (!a.tokenizer.empty()) Tokenizer::load(a.tokenizer);
  CheckpointData ck = load_any_checkpoint(a.checkpoint, /*with_optimizer=*/false);
  TL_CHECK(ck.meta.is_object() && ck.meta.contains("model"), "checkpoint '", a.checkpoint,
           "' has no meta.model (the model config)");
  ModelConfig cfg = ModelConfig::from_json(ck.meta["model"], "model");
  const std::string tokenizer = a.tokenizer.empty() ? tokenizer_of_run(ck.meta) : a.tokenizer;
  if (a.format == "gguf") {
    TL_CHECK(!tokenizer.empty(),
             "export --format gguf needs the tokenizer (llama.cpp reads the vocabulary from "
             "the file): give --tokenizer MODEL (the checkpoint names none that exists)");
    const SpModelInfo vocab = Tokenizer::load(tokenizer).model_info();
    GgufExportOptions opts;
    opts.type = gguf_type(dtype);
    opts.name = std::filesystem::path(a.out).stem().string();
    try {
      export_gguf(a.out, cfg, ck.params, vocab, opts);
    } catch (const Error& e) {
      fail("export to '", a.out, "' (tokenizer '", tokenizer, "'): ", e.what());
    }
    std::printf("exported %s (%lld parameters, %s) -> %s (GGUF v%u, tokenizer %s)\n",
                a.checkpoint.c_str(), static_cast<long long>(cfg.num_params()), dtype.c_str(),
                a.out.c_str(), gguf::kVersion, tokenizer.c_str());
    return;
  }
  HfExportOptions opts;
  opts.dtype = dtype_from_name(dtype);
  opts.max_shard_bytes = uint64_t(std::llround(a.max_shard_gb * double(1ull << 30)));
  TL_CHECK(opts.max_shard_bytes > 0, "--max-shard-gb ", a.max_shard_gb, " is too small");
  opts.tokenizer_model = tokenizer;
  std::string left_out;  // why the run's own tokenizer is not included
  if (!opts.tokenizer_model.empty()) {
    const Tokenizer tok = Tokenizer::load(opts.tokenizer_model);
    if (tok.vocab_size() != cfg.vocab_size) {
      TL_CHECK(a.tokenizer.empty(), "--tokenizer '", a.tokenizer, "' has ", tok.vocab_size(),
               " pieces, but the model has vocab_size ", cfg.vocab_size,
               "; give the tokenizer the model was trained with");
      left_out = cat("the run's tokenizer '", opts.tokenizer_model, "' has ", tok.vocab_size(),
                     " pieces, the model vocab_size ", cfg.vocab_size);
      opts.tokenizer_model.clear();
    }
  }
  export_hf(a.out, cfg, ck.params, opts);
  std::printf("exported %s (%lld parameters, %s) -> %s\n", a.checkpoint.c_str(),
              static_cast<long long>(cfg.num_params()), dtype.c_str(), a.out.c_str());
  if (!opts.tokenizer_model.empty())
    std::printf("tokenizer: %s\n", opts.tokenizer_model.c_str());
  else if (!left_out.empty())
    std::printf("tokenizer: none (%s; give --tokenizer to include one)\n", left_out.c_str());
  else
    std::printf("tokenizer: none (give --tokenizer to include one)\n");
}
}  // namespace

void add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export",
      "Export a checkpoint's model as a Hugging Face folder or a GGUF file (llama.cpp, ollama)");
  auto a = std::make_shared<ExportArgs>();
  cmd->add_option("--checkpoint", a->checkpoint,
                  "native checkpoint to read (a file, or a sharded run's step folder)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--format", a->format,
                  "output format: hf (a Hugging Face folder) or gguf (one file)")
      ->capture_default_str()
      ->check(CLI::IsMember({"hf", "gguf"}));
  cmd->add_option("--out", a->out, "folder (hf, created if missing) or file (gguf) to write")
      ->required();
  cmd->add_option("--dtype", a->dtype,
                  "weight dtype: bf16, f32, f16, or q8_0 (gguf only); default bf16 for "
                  "hf, f16 for gguf (norms stay f32 in GGUF)")
      ->check(CLI::IsMember({"bf16", "f32", "fp32", "f16", "fp16", "q8_0"}));
  cmd->add_option("--tokenizer", a->tokenizer,
                  "SentencePiece tokenizer.model to include (default: the training run's "
                  "data.tokenizer, when the checkpoint names one that exists)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--max-shard-gb", a->max_shard_gb, "shard the weights above this size, in GiB")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->callback([a] { run_export(*a); });
}

}  // namespace tl::cli
