// tinyllama export: a native checkpoint -> a Hugging Face Llama folder.
#include <cmath>
#include <cstdio>

#include "checkpoint/checkpoint.h"
#include "checkpoint/hf.h"
#include "dist/sharded_checkpoint.h"
#include "cli/commands.h"
#include "core/fs.h"
#include "data/tokenizer.h"

namespace tl::cli {

namespace {
struct ExportArgs {
  std::string checkpoint, format = "hf", out, dtype = "bf16", tokenizer;
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

void run_export(const ExportArgs& a) {
  // An empty, random or truncated file is refused here, as every other command refuses it.
  if (!a.tokenizer.empty()) Tokenizer::load(a.tokenizer);
  CheckpointData ck = load_any_checkpoint(a.checkpoint, /*with_optimizer=*/false);
  TL_CHECK(ck.meta.is_object() && ck.meta.contains("model"), "checkpoint '", a.checkpoint,
           "' has no meta.model (the model config)");
  ModelConfig cfg = ModelConfig::from_json(ck.meta["model"], "model");
  HfExportOptions opts;
  opts.dtype = dtype_from_name(a.dtype == "fp32" ? "f32" : a.dtype == "fp16" ? "f16" : a.dtype);
  opts.max_shard_bytes = uint64_t(std::llround(a.max_shard_gb * double(1ull << 30)));
  TL_CHECK(opts.max_shard_bytes > 0, "--max-shard-gb ", a.max_shard_gb, " is too small");
  opts.tokenizer_model = a.tokenizer.empty() ? tokenizer_of_run(ck.meta) : a.tokenizer;
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
              static_cast<long long>(cfg.num_params()), a.dtype.c_str(), a.out.c_str());
  if (!opts.tokenizer_model.empty())
    std::printf("tokenizer: %s\n", opts.tokenizer_model.c_str());
  else if (!left_out.empty())
    std::printf("tokenizer: none (%s; give --tokenizer to include one)\n", left_out.c_str());
  else
    std::printf("tokenizer: none (give --tokenizer to include one)\n");
}
}  // namespace

void add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Export a checkpoint's model as a Hugging Face folder");
  auto a = std::make_shared<ExportArgs>();
  cmd->add_option("--checkpoint", a->checkpoint,
                  "native checkpoint to read (a file, or a sharded run's step folder)")
      ->required()->check(CLI::ExistingPath);
  cmd->add_option("--format", a->format, "output format")
      ->capture_default_str()->check(CLI::IsMember({"hf"}));
  cmd->add_option("--out", a->out, "folder to write (created if missing)")->required();
  cmd->add_option("--dtype", a->dtype, "weight dtype")
      ->capture_default_str()->check(CLI::IsMember({"bf16", "f32", "fp32", "f16", "fp16"}));
  cmd->add_option("--tokenizer", a->tokenizer, "SentencePiece tokenizer.model to include (default: the training run's "
                  "data.tokenizer, when the checkpoint names one that exists)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--max-shard-gb", a->max_shard_gb,
                  "shard the weights above this size, in GiB")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->callback([a] { run_export(*a); });
}

}  // namespace tl::cli
