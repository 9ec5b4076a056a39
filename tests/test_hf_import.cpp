// import_hf on folders built here tensor by tensor (names and shapes written out from the
// HF Llama naming, values that encode where they came from), plus the error cases.
#include <algorithm>
#include <map>

#include "checkpoint/hf.h"
#include "checkpoint/safetensors.h"
#include "ckpt_test_util.h"
#include "core/fs.h"

using namespace tl;
using ckpt_test::error_of;
using ckpt_test::has;

namespace {

struct HfiTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
  DType dtype = DType::F32;
};
using HfiFolder = std::map<std::string, HfiTensor>;

// Tensor k holds k * 4096 + element index: exact in f32, and it says where it belongs.
HfiFolder hfi_llama_tensors(const ModelConfig& c) {
  const int64_t C = c.dim, V = c.vocab_size, I = c.ffn_dim, hd = c.dim / c.n_heads;
  std::vector<std::pair<std::string, std::vector<int64_t>>> spec = {
      {"model.embed_tokens.weight", {V, C}},
      {"model.norm.weight", {C}},
      {"lm_head.weight", {V, C}}};
  for (int l = 0; l < c.n_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    spec.push_back({p + "input_layernorm.weight", {C}});
    spec.push_back({p + "post_attention_layernorm.weight", {C}});
    spec.push_back({p + "self_attn.q_proj.weight", {c.n_heads * hd, C}});
    spec.push_back({p + "self_attn.k_proj.weight", {c.n_kv_heads * hd, C}});
    spec.push_back({p + "self_attn.v_proj.weight", {c.n_kv_heads * hd, C}});
    spec.push_back({p + "self_attn.o_proj.weight", {C, C}});
    spec.push_back({p + "mlp.gate_proj.weight", {I, C}});
    spec.push_back({p + "mlp.up_proj.weight", {I, C}});
    spec.push_back({p + "mlp.down_proj.weight", {C, I}});
  }
  HfiFolder out;
  int k = 1;
  for (auto& [name, shape] : spec) {
    HfiTensor t{shape, {}};
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    for (int64_t i = 0; i < n; ++i) t.values.push_back(float(k * 4096 + i));
    out[name] = std::move(t);
    ++k;
  }
  return out;
}

void hfi_write(const std::string& dir, const json& config, const HfiFolder& tensors) {
  std::vector<StWriteItem> items;
  std::vector<std::vector<int32_t>> ints;  // keeps I32 copies alive
  ints.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    if (t.dtype == DType::I32) {
      ints.emplace_back(t.values.begin(), t.values.end());
      items.push_back({name, DType::I32, t.shape, ints.back().data(), DType::I32});
    } else {
      items.push_back({name, t.dtype, t.shape, t.values.data(), DType::F32});
    }
  }
  write_safetensors(dir + "/model.safetensors", items, {{"format", "pt"}});
  write_file_atomic(dir + "/config.json", config.dump(2));
}

std::string hfi_import_error(const ckpt_test::TempDir& d, const json& cfg, const HfiFolder& t) {
  hfi_write(d.path(), cfg, t);
  return error_of([&] { import_hf(d.path()); });
}

}  // namespace

TEST(HfImport, MapsEveryTensorIntoTheFlatLayout) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  const HfiFolder t = hfi_llama_tensors(cfg);
  hfi_write(d.path(), hf_config_from_model(cfg), t);
  HfModel m = import_hf(d.path());
  EXPECT_EQ(m.config.to_json(), cfg.to_json());

  ParamLayout layout(cfg);
  ASSERT_EQ(m.params.size(), size_t(layout.total()));
  auto at = [&](ParamKind k, int l, int64_t i) {
    return m.params[size_t(layout.get(k, l).offset + i)];
  };
  const int64_t C = 32, I = 40, q = 32, kv = 16;
  auto hf = [&](const std::string& name, int64_t i) { return t.at(name).values[size_t(i)]; };
  const std::string L1 = "model.layers.1.";
  for (int64_t i : {int64_t(0), int64_t(5), C * 3 + 7}) {
    EXPECT_EQ(at(ParamKind::Wqkv, 1, i), hf(L1 + "self_attn.q_proj.weight", i));
    EXPECT_EQ(at(ParamKind::Wqkv, 1, q * C + i), hf(L1 + "self_attn.k_proj.weight", i));
    EXPECT_EQ(at(ParamKind::Wqkv, 1, (q + kv) * C + i), hf(L1 + "self_attn.v_proj.weight", i));
    EXPECT_EQ(at(ParamKind::WGateUp, 1, i), hf(L1 + "mlp.gate_proj.weight", i));
    EXPECT_EQ(at(ParamKind::WGateUp, 1, I * C + i), hf(L1 + "mlp.up_proj.weight", i));
    EXPECT_EQ(at(ParamKind::WDown, 0, i), hf("model.layers.0.mlp.down_proj.weight", i));
    EXPECT_EQ(at(ParamKind::Wo, 0, i), hf("model.layers.0.self_attn.o_proj.weight", i));
    EXPECT_EQ(at(ParamKind::Embed, -1, i), hf("model.embed_tokens.weight", i));
    EXPECT_EQ(at(ParamKind::Head, -1, i), hf("lm_head.weight", i));
  }
  EXPECT_EQ(at(ParamKind::Wqkv, 1, (q + 2 * kv) * C - 1),
            t.at(L1 + "self_attn.v_proj.weight").values.back());
  EXPECT_EQ(at(ParamKind::AttnNorm, 0, 31), hf("model.layers.0.input_layernorm.weight", 31));
  EXPECT_EQ(at(ParamKind::MlpNorm, 1, 0), hf(L1 + "post_attention_layernorm.weight", 0));
  EXPECT_EQ(at(ParamKind::FinalNorm, -1, 2), hf("model.norm.weight", 2));
  // Every padding element is zero: the nonzero count is exactly the parameter count.
  int64_t nonzero = 0;
  for (float x : m.params) nonzero += x != 0;
  EXPECT_EQ(nonzero, cfg.num_params());
}

TEST(HfImport, TiedOrMissingHeadCopiesTheEmbedding) {
  const ModelConfig cfg = ckpt_test::small_config();
  ParamLayout layout(cfg);
  const size_t n = size_t(48 * 32);
  auto head_is_embed = [&](const HfModel& m) {
    return std::equal(m.params.begin() + layout.get(ParamKind::Embed).offset,
                      m.params.begin() + layout.get(ParamKind::Embed).offset + int64_t(n),
                      m.params.begin() + layout.get(ParamKind::Head).offset);
  };
  HfiFolder t = hfi_llama_tensors(cfg);
  json tied = hf_config_from_model(cfg);
  tied["tie_word_embeddings"] = true;
  {
    ckpt_test::TempDir d;  // tied, lm_head present with other values: HF ignores it
    hfi_write(d.path(), tied, t);
    EXPECT_TRUE(head_is_embed(import_hf(d.path())));
  }
  t.erase("lm_head.weight");
  {
    ckpt_test::TempDir d;  // tied, no lm_head (what save_pretrained writes)
    hfi_write(d.path(), tied, t);
    HfModel m = import_hf(d.path());
    EXPECT_TRUE(head_is_embed(m));
    EXPECT_EQ(m.params[size_t(layout.get(ParamKind::Head).offset + 100)], float(1 * 4096 + 100));
  }
  {
    ckpt_test::TempDir d;  // untied but no lm_head
    hfi_write(d.path(), hf_config_from_model(cfg), t);
    EXPECT_TRUE(head_is_embed(import_hf(d.path())));
  }
  {
    ckpt_test::TempDir d;  // not tied: the head keeps its own values
    hfi_write(d.path(), hf_config_from_model(cfg), hfi_llama_tensors(cfg));
    EXPECT_FALSE(head_is_embed(import_hf(d.path())));
  }
}

TEST(HfImport, Bf16WeightsConvert) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  HfiFolder t = hfi_llama_tensors(cfg);
  for (auto& [name, x] : t) {
    x.dtype = DType::BF16;
    for (auto& v : x.values) v = float(v) / 65536.0f;  // 8-bit mantissas would lose the index
  }
  hfi_write(d.path(), hf_config_from_model(cfg), t);
  HfModel m = import_hf(d.path());
  ParamLayout layout(cfg);
  const auto& up = t.at("model.layers.0.mlp.up_proj.weight").values;
  const int64_t off = layout.get(ParamKind::WGateUp, 0).offset + 40 * 32;
  for (size_t i = 0; i < up.size(); i += 97)
    EXPECT_EQ(m.params[size_t(off) + i], bf16_to_f32(f32_to_bf16(up[i]))) << i;
}

TEST(HfImport, WrongShapeIsNamed) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  HfiFolder t = hfi_llama_tensors(cfg);
  t["model.layers.1.self_attn.k_proj.weight"].shape = {32, 16};  // transposed
  std::string msg = hfi_import_error(d, hf_config_from_model(cfg), t);
  EXPECT_TRUE(has(msg, "model.layers.1.self_attn.k_proj.weight") && has(msg, "[32, 16]") &&
              has(msg, "[16, 32]") && has(msg, "model.safetensors"))
      << msg;
}

TEST(HfImport, WrongDtypeIsNamed) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  HfiFolder t = hfi_llama_tensors(cfg);
  t["model.norm.weight"].dtype = DType::I32;
  std::string msg = hfi_import_error(d, hf_config_from_model(cfg), t);
  EXPECT_TRUE(has(msg, "model.norm.weight") && has(msg, "I32") && has(msg, "model.safetensors"))
      << msg;
}

TEST(HfImport, MissingTensorIsNamed) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  HfiFolder t = hfi_llama_tensors(cfg);
  t.erase("model.layers.0.mlp.gate_proj.weight");
  std::string msg = hfi_import_error(d, hf_config_from_model(cfg), t);
  EXPECT_TRUE(has(msg, "model.layers.0.mlp.gate_proj.weight") && has(msg, "missing") &&
              has(msg, "model.safetensors"))
      << msg;
}

TEST(HfImport, UnexpectedTensorsAreNamedButRopeBuffersIgnored) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  HfiFolder t = hfi_llama_tensors(cfg);
  t["model.layers.0.self_attn.rotary_emb.inv_freq"] = {{4}, {1, 2, 3, 4}};
  t["model.rotary_emb.inv_freq"] = {{4}, {1, 2, 3, 4}};
  hfi_write(d.path(), hf_config_from_model(cfg), t);
  EXPECT_NO_THROW(import_hf(d.path()));

  t["model.layers.0.self_attn.q_proj.bias"] = {{32}, std::vector<float>(32, 1.0f)};
  std::string msg = hfi_import_error(d, hf_config_from_model(cfg), t);
  EXPECT_TRUE(has(msg, "unexpected") && has(msg, "model.layers.0.self_attn.q_proj.bias")) << msg;

  t.erase("model.layers.0.self_attn.q_proj.bias");
  t["model.layers.2.input_layernorm.weight"] = {{32}, std::vector<float>(32, 1.0f)};  // 3 layers?
  msg = hfi_import_error(d, hf_config_from_model(cfg), t);
  EXPECT_TRUE(has(msg, "model.layers.2.input_layernorm.weight")) << msg;
}

TEST(HfImport, BadFolderOrConfigIsNamed) {
  ckpt_test::TempDir d;
  std::string msg = error_of([&] { import_hf(d.path()); });
  EXPECT_TRUE(has(msg, "config.json")) << msg;

  const ModelConfig cfg = ckpt_test::small_config();
  json bad = hf_config_from_model(cfg);
  bad["model_type"] = "gpt2";
  msg = hfi_import_error(d, bad, hfi_llama_tensors(cfg));
  EXPECT_TRUE(has(msg, d.path() + "/config.json") && has(msg, "gpt2")) << msg;

  write_file_atomic(d.path() + "/config.json", hf_config_from_model(cfg).dump());
  std::filesystem::remove(d.path() + "/model.safetensors");
  msg = error_of([&] { import_hf(d.path()); });
  EXPECT_TRUE(has(msg, "model.safetensors")) << msg;
}

// The fixture that tools/fixtures/make_golden.py writes on the GPU machine (skipped until it
// exists).
TEST(HfImport, GoldenFixtureFromTransformers) {
  const std::string dir = std::string(TL_SOURCE_DIR) + "/tests/fixtures/hf_golden";
  if (!std::filesystem::exists(dir + "/config.json")) GTEST_SKIP() << "no " << dir;
  HfModel f32 = import_hf(dir);
  EXPECT_EQ(f32.config.vocab_size, 256);
  EXPECT_EQ(f32.config.dim, 64);
  EXPECT_EQ(f32.config.ffn_dim, 176);
  EXPECT_EQ(f32.config.n_layers, 2);
  EXPECT_EQ(f32.config.n_heads, 4);
  EXPECT_EQ(f32.config.n_kv_heads, 2);
  EXPECT_EQ(f32.config.rope_theta, 10000.0f);
  EXPECT_EQ(f32.config.norm_eps, 1e-5f);
  SafetensorsFile weights(dir + "/model.safetensors");
  const StTensorInfo& k = weights.get("model.layers.1.self_attn.k_proj.weight");
  std::vector<float> kv(size_t(k.numel()));
  weights.read_f32(k, kv.data(), kv.size());
  ParamLayout layout(f32.config);
  const float* got = f32.params.data() + layout.get(ParamKind::Wqkv, 1).offset + 64 * 64;
  EXPECT_EQ(std::memcmp(got, kv.data(), kv.size() * 4), 0);

  HfModel bf16 = import_hf(dir + "/bf16");  // the same weights saved in bf16 by torch
  ASSERT_EQ(bf16.params.size(), f32.params.size());
  size_t bad = 0;
  for (size_t i = 0; i < f32.params.size(); ++i)
    bad += bf16.params[i] != bf16_to_f32(f32_to_bf16(f32.params[i]));
  EXPECT_EQ(bad, 0u);
}

// Issue #18: config.json sizes are bounded and the message names the field and the file
// (no parameter vector is allocated for them; the huge cases run in HfCli under a memory cap).
TEST(HfImport, ConfigSizesOutOfRangeNameTheField) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  struct Case {
    const char* key;
    int64_t value;
  };
  for (const Case& c :
       {Case{"num_hidden_layers", 2000}, Case{"max_position_embeddings", 1 << 30},
        Case{"intermediate_size", 1 << 23}, Case{"num_hidden_layers", 0}, Case{"vocab_size", -5}}) {
    json bad = hf_config_from_model(cfg);
    bad[c.key] = c.value;
    std::string msg = hfi_import_error(d, bad, hfi_llama_tensors(cfg));
    EXPECT_TRUE(has(msg, d.path() + "/config.json") && has(msg, c.key) &&
                has(msg, std::to_string(c.value)))
        << c.key << " = " << c.value << ": " << msg;
  }
}

// Issue #18: a NaN or Inf weight is refused, naming the tensor and the first bad element.
TEST(HfImport, NonFiniteWeightsAreNamed) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  HfiFolder t = hfi_llama_tensors(cfg);
  t["model.layers.1.mlp.up_proj.weight"].values[45] = NAN;
  t["model.layers.1.mlp.up_proj.weight"].values[50] = INFINITY;
  std::string msg = hfi_import_error(d, hf_config_from_model(cfg), t);
  EXPECT_TRUE(has(msg, "model.layers.1.mlp.up_proj.weight") && has(msg, "element 45") &&
              has(msg, "[1, 13]") && has(msg, "nan") && has(msg, "model.safetensors"))
      << msg;

  t = hfi_llama_tensors(cfg);  // bf16 inf in the embedding (which a tied head would copy)
  for (auto& [name, x] : t) {
    x.dtype = DType::BF16;
    for (auto& v : x.values) v = 0.5f;
  }
  t["model.embed_tokens.weight"].values[33] = -INFINITY;
  msg = hfi_import_error(d, hf_config_from_model(cfg), t);
  EXPECT_TRUE(has(msg, "model.embed_tokens.weight") && has(msg, "element 33") &&
              has(msg, "[1, 1]") && has(msg, "-inf"))
      << msg;
}
