// Flat parameters -> a Hugging Face Llama folder. config.json is removed first and written
// last, every file atomically: a crash never leaves a folder that looks complete.
#include <cstdio>
#include <filesystem>

#include "checkpoint/hf.h"
#include "checkpoint/hf_tensors.h"
#include "checkpoint/safetensors.h"
#include "core/fs.h"
#include "core/log.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

const char* torch_dtype_name(DType t) {
  return t == DType::F32 ? "float32" : t == DType::BF16 ? "bfloat16" : "float16";
}

// Weight files of an earlier export would mix with ours (and shadow shards).
void remove_old_export(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    bool shard = name.starts_with("model-") && name.find("-of-") != std::string::npos &&
                 name.ends_with(".safetensors");
    if (shard || name == "config.json" || name == "model.safetensors" || name == "tokenizer.json" ||
        name == "model.safetensors.index.json") {
      std::error_code ec;
      fs::remove(e.path(), ec);
      TL_CHECK(!ec, "cannot remove '", e.path().string(), "': ", ec.message());
    }
  }
}

std::string in_dir(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

void write_json(const std::string& dir, const std::string& name, const json& j) {
  write_file_atomic(in_dir(dir, name), j.dump(2) + "\n");
}

std::string shard_name(size_t k, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, n);
  return buf;
}

// bytes: the tokenizer.model file, sp: what it holds (parsed before anything was written).
void write_tokenizer(const std::string& dir, const std::string& model, const std::string& bytes,
                     const SpModelInfo& sp, const ModelConfig& cfg) {
  write_file_atomic(in_dir(dir, "tokenizer.model"), bytes);
  // The fast tokenizer too, where the model can be described exactly; else the slow
  // SentencePiece path still works from tokenizer.model.
  const std::string why = hf_tokenizer_json_unsupported(sp);
  if (why.empty())
    write_file_atomic(in_dir(dir, "tokenizer.json"), hf_tokenizer_json(sp).dump(2) + "\n");
  else
    log_warn("export: no tokenizer.json for '", model, "': ", why, " (tokenizer.model is written)");
  // With tokenizer.json, PreTrainedTokenizerFast: it runs the file's pipeline as written.
  // transformers 5's LlamaTokenizer replaces that pipeline with a Metaspace pre-tokenizer,
  // which drops SentencePiece's dummy prefix before a leading space (" a" -> [▁a], not
  // [▁, ▁a]; measured on an H100 machine with transformers 5.17, 3 of 7234 texts differed).
  json tok = {{"tokenizer_class", why.empty() ? "PreTrainedTokenizerFast" : "LlamaTokenizer"},
              {"bos_token", "<s>"},
              {"eos_token", "</s>"},
              {"unk_token", "<unk>"},
              {"pad_token", nullptr},
              {"add_bos_token", true},
              {"add_eos_token", false},
              {"legacy", false},
              {"clean_up_tokenization_spaces", false},
              {"model_max_length", cfg.max_seq_len},
              {"sp_model_kwargs", json::object()}};
  json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}};
  write_json(dir, "tokenizer_config.json", tok);
  write_json(dir, "special_tokens_map.json", special);
}

}  // namespace

void export_hf(const std::string& dir, const ModelConfig& cfg, const std::vector<float>& params,
               const HfExportOptions& opts) {
  cfg.validate();
  ParamLayout layout(cfg);
  TL_CHECK(params.size() == size_t(layout.total()), "export_hf: ", params.size(),
           " parameters given, the model config needs ", layout.total());
  TL_CHECK(opts.dtype == DType::F32 || opts.dtype == DType::BF16 || opts.dtype == DType::F16,
           "export_hf: dtype must be f32, bf16 or f16, got ", dtype_name(opts.dtype));
  TL_CHECK(opts.max_shard_bytes > 0, "export_hf: max_shard_bytes must be positive");
  TL_CHECK(opts.tokenizer_model.empty() || file_exists(opts.tokenizer_model),
           "export_hf: tokenizer model '", opts.tokenizer_model, "' does not exist");
  std::string tok_bytes;
  SpModelInfo tok;
  if (!opts.tokenizer_model.empty()) {
    tok_bytes = read_file(opts.tokenizer_model);
    tok = parse_sp_model(tok_bytes, opts.tokenizer_model);
  }
  make_dirs(dir);
  remove_old_export(dir);

  // Greedy shards in checkpoint order; a tensor larger than the limit gets its own.
  const auto slots = hf_tensor_slots(cfg, layout);
  std::vector<std::vector<StWriteItem>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (const auto& s : slots) {
    uint64_t nbytes = uint64_t(shape_numel(s.shape)) * dtype_size(opts.dtype);
    if (!shards.back().empty() && shard_bytes + nbytes > opts.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back({s.name, opts.dtype, s.shape, params.data() + s.offset, DType::F32});
    shard_bytes += nbytes;
    total_bytes += nbytes;
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}};  // transformers checks it
  if (shards.size() == 1) {
    write_safetensors(in_dir(dir, "model.safetensors"), shards[0], meta);
  } else {
    json weight_map = json::object();
    for (size_t k = 0; k < shards.size(); ++k) {
      const std::string name = shard_name(k, shards.size());
      for (const auto& it : shards[k]) weight_map[it.name] = name;
      write_safetensors(in_dir(dir, name), shards[k], meta);
    }
    write_json(dir, "model.safetensors.index.json",
               {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}});
  }

  json hf = hf_config_from_model(cfg);
  hf["torch_dtype"] = hf["dtype"] = torch_dtype_name(opts.dtype);
  json gen = {{"bos_token_id", hf["bos_token_id"]},
              {"eos_token_id", hf["eos_token_id"]},
              {"do_sample", false},
              {"max_length", cfg.max_seq_len}};
  write_json(dir, "generation_config.json", gen);
  if (!opts.tokenizer_model.empty())
    write_tokenizer(dir, opts.tokenizer_model, tok_bytes, tok, cfg);
  write_json(dir, "config.json", hf);
}

}  // namespace tl
