// Llama <-> GGUF: the tensor table follows the Hugging Face one (checkpoint/hf_tensors.h)
// with llama.cpp's names, dims innermost first, and q/k rows in llama.cpp's RoPE order.
#include "checkpoint/gguf_llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "checkpoint/hf_tensors.h"
#include "checkpoint/safetensors.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/fs.h"

namespace tl {

namespace {

using gguf::TensorType;
using gguf::Value;
using gguf::ValueType;

struct GgufSlot {
  std::string name;            // "blk.3.attn_q.weight"
  std::vector<int64_t> shape;  // [rows, cols] (or [n]) as we store it
  int64_t offset = 0;          // first element in the flat parameters
  int rope_heads = 0;          // > 0: q/k rows reordered per head of shape[0] / rope_heads rows
};

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight", and so on.
std::string gguf_name(const std::string& hf) {
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "ffn_gate"},       {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string pre = "model.layers.";
  TL_ASSERT(hf.starts_with(pre));
  const size_t dot = hf.find('.', pre.size());
  const std::string layer = hf.substr(pre.size(), dot - pre.size());
  const std::string rest = hf.substr(dot + 1, hf.size() - dot - 1 - std::string(".weight").size());
  for (const auto& [from, to] : kLayer)
    if (rest == from) return "blk." + layer + "." + to + ".weight";
  TL_ASSERT(false);
}

std::vector<GgufSlot> gguf_slots(const ModelConfig& cfg, const ParamLayout& layout) {
  std::vector<GgufSlot> out;
  for (const HfTensorSlot& s : hf_tensor_slots(cfg, layout)) {
    GgufSlot g{gguf_name(s.name), s.shape, s.offset, 0};
    if (s.name.ends_with("q_proj.weight")) g.rope_heads = cfg.n_heads;
    if (s.name.ends_with("k_proj.weight")) g.rope_heads = cfg.n_kv_heads;
    out.push_back(std::move(g));
  }
  return out;
}

// Row r of the GGUF tensor holds our row rope_source_row(r): within a head of hd rows, GGUF
// row 2j + s is our row s * hd/2 + j (s = 0 for the first half, 1 for the second).
int64_t rope_source_row(int64_t r, int64_t rows, int heads) {
  if (heads == 0) return r;
  const int64_t hd = rows / heads, head = r / hd, i = r % hd;
  return head * hd + (i % 2) * (hd / 2) + i / 2;
}

std::vector<int64_t> gguf_dims(const std::vector<int64_t>& shape) {
  return std::vector<int64_t>(shape.rbegin(), shape.rend());
}

// llama_ftype: the file's "mostly" type.
uint32_t file_type(TensorType t) {
  switch (t) {
    case TensorType::F32: return 0;
    case TensorType::F16: return 1;
    case TensorType::Q8_0: return 7;
    case TensorType::BF16: return 32;
  }
  return 0;
}

// Converts one row of n values and appends its bytes.
void encode_row(const float* x, int64_t n, TensorType t, std::vector<uint8_t>& out) {
  const size_t at = out.size();
  out.resize(at + gguf::row_bytes(t, n));
  uint8_t* p = out.data() + at;
  switch (t) {
    case TensorType::F32: std::memcpy(p, x, size_t(n) * 4); break;
    case TensorType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(x[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case TensorType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case TensorType::Q8_0: quantize_q8_0(x, n, p); break;
  }
}

void decode_row(const uint8_t* p, int64_t n, uint32_t t, float* x) {
  switch (TensorType(t)) {
    case TensorType::F32: std::memcpy(x, p, size_t(n) * 4); break;
    case TensorType::F16: f16_bytes_to_f32(p, n, x); break;
    case TensorType::BF16: bf16_bytes_to_f32(p, n, x); break;
    case TensorType::Q8_0: dequantize_q8_0(p, n, x); break;
  }
}

// Our tokenizer's pieces as tokenizer.ggml.* metadata.
void set_vocab(gguf::Writer& w, const SpModelInfo& vocab) {
  std::vector<std::string> tokens;
  std::vector<double> scores, types;
  for (const SpPiece& p : vocab.pieces) {
    tokens.push_back(p.text);
    scores.push_back(p.score);
    types.push_back(double(int(p.type)));
  }
  w.set("tokenizer.ggml.model", Value::str("llama"));
  w.set("tokenizer.ggml.tokens", Value::str_array(std::move(tokens)));
  w.set("tokenizer.ggml.scores", Value::num_array(ValueType::F32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", Value::num_array(ValueType::I32, std::move(types)));
  if (vocab.bos_id >= 0) w.set("tokenizer.ggml.bos_token_id", Value::u32(uint32_t(vocab.bos_id)));
  if (vocab.eos_id >= 0) w.set("tokenizer.ggml.eos_token_id", Value::u32(uint32_t(vocab.eos_id)));
  if (vocab.unk_id >= 0)
    w.set("tokenizer.ggml.unknown_token_id", Value::u32(uint32_t(vocab.unk_id)));
  if (vocab.pad_id >= 0)
    w.set("tokenizer.ggml.padding_token_id", Value::u32(uint32_t(vocab.pad_id)));
  w.set("tokenizer.ggml.add_bos_token", Value::boolean(true));
  w.set("tokenizer.ggml.add_eos_token", Value::boolean(false));
  w.set("tokenizer.ggml.add_space_prefix", Value::boolean(vocab.add_dummy_prefix));
  w.set("tokenizer.ggml.remove_extra_whitespaces", Value::boolean(vocab.remove_extra_whitespaces));
}

void check_vocab(const SpModelInfo& vocab, const ModelConfig& cfg) {
  TL_CHECK(int64_t(vocab.pieces.size()) == cfg.vocab_size, "the tokenizer has ",
           vocab.pieces.size(), " pieces but the model's vocab_size is ", cfg.vocab_size,
           ": GGUF needs exactly one piece per row of the embedding (give the tokenizer the model "
           "was trained with)");
  TL_CHECK(vocab.is_bpe(), "the tokenizer is a SentencePiece model of type ", vocab.model_type,
           ", not BPE (2): llama.cpp's llama tokenizer merges by score, which only reproduces BPE "
           "models");
  TL_CHECK(vocab.normalizer == "identity" && !vocab.has_charsmap,
           "the tokenizer normalizes text with '", vocab.normalizer,
           "', which llama.cpp's llama tokenizer does not apply: GGUF export needs an "
           "identity-normalized model (as Llama 2's)");
  TL_CHECK(vocab.escape_whitespaces,
           "the tokenizer does not escape whitespace as '\u2581', which llama.cpp assumes");
}

}  // namespace

void quantize_q8_0(const float* x, int64_t n, uint8_t* out) {
  TL_ASSERT(n % gguf::kQ8BlockSize == 0);
  for (int64_t b = 0; b < n / gguf::kQ8BlockSize; ++b, x += gguf::kQ8BlockSize) {
    float amax = 0;
    for (int j = 0; j < gguf::kQ8BlockSize; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = f32_to_f16(d);
    uint8_t* blk = out + b * gguf::kQ8BlockBytes;
    std::memcpy(blk, &dh, 2);
    for (int j = 0; j < gguf::kQ8BlockSize; ++j)
      blk[2 + j] = uint8_t(int8_t(std::round(x[j] * id)));
  }
}

void dequantize_q8_0(const uint8_t* in, int64_t n, float* x) {
  TL_ASSERT(n % gguf::kQ8BlockSize == 0);
  for (int64_t b = 0; b < n / gguf::kQ8BlockSize; ++b, x += gguf::kQ8BlockSize) {
    const uint8_t* blk = in + b * gguf::kQ8BlockBytes;
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const float d = f16_to_f32(dh);
    for (int j = 0; j < gguf::kQ8BlockSize; ++j) x[j] = float(int8_t(blk[2 + j])) * d;
  }
}

void export_gguf(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params,
                 const SpModelInfo& vocab, const GgufExportOptions& opts) {
  cfg.validate();
  const ParamLayout layout(cfg);
  TL_CHECK(params.size() == size_t(layout.total()), "export_gguf: ", params.size(),
           " parameters given, the model config needs ", layout.total());
  check_vocab(vocab, cfg);
  TL_CHECK(cfg.head_dim() % 2 == 0, "head_dim ", cfg.head_dim(), " is odd: RoPE needs pairs");
  const std::vector<GgufSlot> slots = gguf_slots(cfg, layout);
  for (const GgufSlot& s : slots) {
    const TensorType t = s.shape.size() == 1 ? TensorType::F32 : opts.type;
    TL_CHECK(t != TensorType::Q8_0 || s.shape.back() % gguf::kQ8BlockSize == 0, "cannot export '",
             s.name, "' as q8_0: its rows have ", s.shape.back(), " values, not a multiple of ",
             gguf::kQ8BlockSize, " (use f16, bf16 or f32)");
    const int64_t n = shape_numel(s.shape);
    for (int64_t i = 0; i < n; ++i) {
      const float v = params[size_t(s.offset + i)];
      TL_CHECK(std::isfinite(v), "cannot export: tensor '", s.name,
               "' holds a non-finite value at element ", i);
      TL_CHECK(t != TensorType::F16 || std::fabs(v) < 65504.0f, "cannot export '", s.name,
               "' as f16: element ", i, " = ", v, " is beyond f16's range (use bf16 or f32)");
    }
  }
  const ParamInfo& embed = layout.get(ParamKind::Embed);
  const ParamInfo& head = layout.get(ParamKind::Head);
  const bool tied = std::memcmp(params.data() + embed.offset, params.data() + head.offset,
                                size_t(embed.numel()) * sizeof(float)) == 0;

  gguf::Writer w;
  w.set("general.architecture", Value::str("llama"));
  w.set("general.name", Value::str(opts.name));
  w.set("general.file_type", Value::u32(file_type(opts.type)));
  w.set("general.quantization_version", Value::u32(2));
  w.set("llama.vocab_size", Value::u32(uint32_t(cfg.vocab_size)));
  w.set("llama.context_length", Value::u32(uint32_t(cfg.max_seq_len)));
  w.set("llama.embedding_length", Value::u32(uint32_t(cfg.dim)));
  w.set("llama.block_count", Value::u32(uint32_t(cfg.n_layers)));
  w.set("llama.feed_forward_length", Value::u32(uint32_t(cfg.ffn_dim)));
  w.set("llama.attention.head_count", Value::u32(uint32_t(cfg.n_heads)));
  w.set("llama.attention.head_count_kv", Value::u32(uint32_t(cfg.n_kv_heads)));
  w.set("llama.rope.dimension_count", Value::u32(uint32_t(cfg.head_dim())));
  w.set("llama.rope.freq_base", Value::f32(cfg.rope_theta));
  w.set("llama.attention.layer_norm_rms_epsilon", Value::f32(cfg.norm_eps));
  set_vocab(w, vocab);

  for (const GgufSlot& s : slots) {
    if (tied && s.name == "output.weight") continue;  // llama.cpp reuses token_embd
    const TensorType t = s.shape.size() == 1 ? TensorType::F32 : opts.type;
    const float* src = params.data() + s.offset;
    const int64_t rows = s.shape.size() == 1 ? 1 : s.shape[0], cols = s.shape.back();
    w.add_tensor(s.name, gguf_dims(s.shape), t, [=, &s](std::FILE* f, uint64_t bytes) {
      std::vector<uint8_t> buf;
      for (int64_t r = 0; r < rows; ++r) {
        buf.clear();
        encode_row(src + rope_source_row(r, rows, s.rope_heads) * cols, cols, t, buf);
        write_all(f, buf.data(), buf.size(), path);
      }
      (void)bytes;
    });
  }
  make_dirs(std::filesystem::path(path).parent_path().string());
  w.write(path);
}

GgufModel import_gguf(const std::string& path) {
  gguf::File f(path);
  const std::string arch = f.get_string("general.architecture");
  TL_CHECK(arch == "llama", "GGUF '", path, "': general.architecture is '", arch,
           "'; only 'llama' models can be imported");
  if (const Value* e = f.find("llama.expert_count"))
    TL_CHECK(e->u == 0 && e->i == 0, "GGUF '", path,
             "': llama.expert_count is set (a mixture of experts), "
             "which tinyllama's model does not have");
  if (const Value* s = f.find("llama.rope.scaling.type"))
    TL_CHECK(s->type == ValueType::String && (s->s == "none" || s->s.empty()), "GGUF '", path,
             "': llama.rope.scaling.type '", s->s, "' is not supported (plain RoPE only)");

  GgufModel out;
  if (const Value* n = f.find("general.name"); n && n->type == ValueType::String) out.name = n->s;
  ModelConfig& cfg = out.config;
  auto get_int = [&](const std::string& key, uint64_t max) {
    const uint64_t v = f.get_uint(key);
    TL_CHECK(v >= 1 && v <= max, "GGUF '", path, "': metadata '", key, "' = ", v,
             " is out of range (1 to ", max, ")");
    return int(v);
  };
  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  TL_CHECK(embd && embd->dims.size() == 2, "GGUF '", path,
           "': missing tensor 'token_embd.weight' (2-D)");
  cfg.dim = get_int("llama.embedding_length", 1 << 16);
  cfg.n_layers = get_int("llama.block_count", 4096);
  cfg.n_heads = get_int("llama.attention.head_count", 4096);
  cfg.n_kv_heads = f.find("llama.attention.head_count_kv")
                       ? get_int("llama.attention.head_count_kv", 4096)
                       : cfg.n_heads;
  cfg.ffn_dim = get_int("llama.feed_forward_length", 1 << 20);
  cfg.max_seq_len = get_int("llama.context_length", 1 << 24);
  cfg.vocab_size =
      f.find("llama.vocab_size") ? get_int("llama.vocab_size", 1 << 24) : int(embd->dims[1]);
  if (const Value* toks = f.find("tokenizer.ggml.tokens"))
    TL_CHECK(toks->size() == size_t(cfg.vocab_size), "GGUF '", path,
             "': tokenizer.ggml.tokens has ", toks->size(), " entries but the vocabulary size is ",
             cfg.vocab_size);
  cfg.norm_eps = float(f.get_float("llama.attention.layer_norm_rms_epsilon"));
  cfg.rope_theta =
      f.find("llama.rope.freq_base") ? float(f.get_float("llama.rope.freq_base")) : 10000.0f;
  try {
    cfg.validate();
  } catch (const Error& e) {
    fail("GGUF '", path, "': ", e.what());
  }
  if (f.find("llama.rope.dimension_count"))
    TL_CHECK(f.get_uint("llama.rope.dimension_count") == uint64_t(cfg.head_dim()), "GGUF '", path,
             "': llama.rope.dimension_count ", f.get_uint("llama.rope.dimension_count"),
             " differs from the head size ", cfg.head_dim(), " (partial rotary is not supported)");
  // Every tensor the model needs must be in the file with its shape before the flat array is
  // allocated: the file's own size then bounds the allocation.
  TL_CHECK(uint64_t(cfg.n_layers) * 9 + 2 <= f.tensors().size(), "GGUF '", path,
           "': ", cfg.n_layers, " blocks need ", uint64_t(cfg.n_layers) * 9 + 2,
           " tensors, the file has ", f.tensors().size());
  const ParamLayout layout(cfg);
  const std::vector<GgufSlot> slots = gguf_slots(cfg, layout);
  bool tied = false;
  for (const GgufSlot& s : slots) {
    const gguf::TensorInfo* t = f.find_tensor(s.name);
    if (!t && s.name == "output.weight") {
      tied = true;
      continue;
    }
    TL_CHECK(t, "GGUF '", path, "': missing tensor '", s.name, "'");
    TL_CHECK(t->dims == gguf_dims(s.shape), "GGUF '", path, "': tensor '", s.name, "' has dims ",
             shape_str(t->dims), ", expected ", shape_str(gguf_dims(s.shape)), " for this config");
    TL_CHECK(gguf::known_tensor_type(t->type), "GGUF '", path, "': tensor '", s.name,
             "' is of ggml type ", t->type,
             "; import reads F32, F16, BF16 and Q8_0 (requantize other files to one of them)");
  }
  if (f.tensors().size() != slots.size() - (tied ? 1 : 0)) {
    for (const auto& t : f.tensors()) {
      bool known = false;
      for (const GgufSlot& s : slots) known = known || s.name == t.name;
      TL_CHECK(known, "GGUF '", path, "': unexpected tensor '", t.name, "' for a Llama model");
    }
  }

  out.params.assign(size_t(layout.total()), 0.0f);  // padding stays zero
  for (const GgufSlot& s : slots) {
    if (tied && s.name == "output.weight") continue;
    const gguf::TensorInfo& t = *f.find_tensor(s.name);
    const auto bytes = f.data(t);
    const int64_t rows = s.shape.size() == 1 ? 1 : s.shape[0], cols = s.shape.back();
    const uint64_t rb = gguf::row_bytes(TensorType(t.type), cols);
    float* dst = out.params.data() + s.offset;
    for (int64_t r = 0; r < rows; ++r)
      decode_row(bytes.data() + uint64_t(r) * rb, cols, t.type,
                 dst + rope_source_row(r, rows, s.rope_heads) * cols);
    for (int64_t i = 0; i < rows * cols; ++i)
      TL_CHECK(std::isfinite(dst[i]), "GGUF '", path, "': tensor '", s.name,
               "' holds a non-finite value (row ", i / cols, ")");
  }
  if (tied) {
    const ParamInfo& embed = layout.get(ParamKind::Embed);
    std::copy_n(out.params.data() + embed.offset, embed.numel(),
                out.params.data() + layout.get(ParamKind::Head).offset);
  }
  return out;
}

}  // namespace tl
