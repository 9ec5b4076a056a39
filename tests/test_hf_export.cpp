// export_hf -> import_hf round trips in every dtype, sharded or not, and the tensor
// layout of the exported files checked against the flat layout row by row.
#include <cmath>
#include <filesystem>
#include <set>

#include "checkpoint/hf.h"
#include "checkpoint/safetensors.h"
#include "ckpt_test_util.h"

using namespace tl;
using ckpt_test::error_of;
using ckpt_test::has;

namespace {

HfExportOptions hfe_opts(DType t, uint64_t max_shard = 5ull << 30) {
  HfExportOptions o;
  o.dtype = t;
  o.max_shard_bytes = max_shard;
  return o;
}

bool hfe_has_temp_files(const std::string& dir) {
  for (const auto& n : ckpt_test::list_dir(dir))
    if (has(n, ".tmp.")) return true;
  return false;
}

}  // namespace

TEST(HfExport, F32RoundTripIsBitExact) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  const std::vector<float> params = ckpt_test::random_params(cfg, 11);
  export_hf(d.path(), cfg, params, hfe_opts(DType::F32));
  EXPECT_EQ(
      ckpt_test::list_dir(d.path()),
      (std::vector<std::string>{"config.json", "generation_config.json", "model.safetensors"}));

  HfModel m = import_hf(d.path());
  EXPECT_TRUE(ckpt_test::bit_equal(m.params, params));
  EXPECT_EQ(m.config.to_json(), cfg.to_json());
  EXPECT_EQ(m.hf_config["torch_dtype"], "float32");
  json gen = read_json_file(d.file("generation_config.json"));
  EXPECT_EQ(gen["bos_token_id"], 1);
  EXPECT_EQ(gen["eos_token_id"], 2);
  EXPECT_EQ(SafetensorsFile(d.file("model.safetensors")).metadata()["format"], "pt");
}

TEST(HfExport, TensorsAreSlicesOfTheFlatLayout) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  const std::vector<float> params = ckpt_test::random_params(cfg, 12);
  export_hf(d.path(), cfg, params, hfe_opts(DType::F32));
  SafetensorsFile f(d.file("model.safetensors"));
  EXPECT_EQ(f.tensors().size(), 3u + 9u * 2u);  // embed, norm, head + 9 per layer

  ParamLayout layout(cfg);
  const int64_t C = 32, I = 40, hd = 8, Hq = 4 * hd, Hkv = 2 * hd;
  // (HF name, our parameter, first row in it, rows, cols)
  struct Ref {
    std::string name;
    ParamKind kind;
    int layer;
    int64_t row0, rows, cols;
  };
  const std::vector<Ref> refs = {
      {"model.embed_tokens.weight", ParamKind::Embed, -1, 0, 48, C},
      {"model.layers.1.input_layernorm.weight", ParamKind::AttnNorm, 1, 0, 1, C},
      {"model.layers.1.self_attn.q_proj.weight", ParamKind::Wqkv, 1, 0, Hq, C},
      {"model.layers.1.self_attn.k_proj.weight", ParamKind::Wqkv, 1, Hq, Hkv, C},
      {"model.layers.1.self_attn.v_proj.weight", ParamKind::Wqkv, 1, Hq + Hkv, Hkv, C},
      {"model.layers.1.self_attn.o_proj.weight", ParamKind::Wo, 1, 0, C, C},
      {"model.layers.1.post_attention_layernorm.weight", ParamKind::MlpNorm, 1, 0, 1, C},
      {"model.layers.1.mlp.gate_proj.weight", ParamKind::WGateUp, 1, 0, I, C},
      {"model.layers.1.mlp.up_proj.weight", ParamKind::WGateUp, 1, I, I, C},
      {"model.layers.1.mlp.down_proj.weight", ParamKind::WDown, 1, 0, C, I},
      {"model.norm.weight", ParamKind::FinalNorm, -1, 0, 1, C},
      {"lm_head.weight", ParamKind::Head, -1, 0, 48, C},
  };
  for (const auto& r : refs) {
    const StTensorInfo& t = f.get(r.name);
    EXPECT_EQ(t.dtype, DType::F32) << r.name;
    std::vector<float> got(size_t(t.numel()));
    f.read_f32(t, got.data(), got.size());
    ASSERT_EQ(int64_t(got.size()), r.rows * r.cols) << r.name;
    const float* want = params.data() + layout.get(r.kind, r.layer).offset + r.row0 * r.cols;
    EXPECT_EQ(std::memcmp(got.data(), want, got.size() * 4), 0) << r.name;
  }
  EXPECT_EQ(f.get("model.layers.0.mlp.down_proj.weight").shape, (std::vector<int64_t>{C, I}));
  EXPECT_EQ(f.get("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{Hkv, C}));
}

TEST(HfExport, Bf16AndF16RoundTripWithinRounding) {
  const ModelConfig cfg = ckpt_test::small_config();
  const std::vector<float> params = ckpt_test::random_params(cfg, 13);
  for (DType t : {DType::BF16, DType::F16}) {
    ckpt_test::TempDir d;
    export_hf(d.path(), cfg, params, hfe_opts(t));
    EXPECT_EQ(SafetensorsFile(d.file("model.safetensors")).get("model.norm.weight").dtype, t);
    json hf = read_json_file(d.file("config.json"));
    EXPECT_EQ(hf["torch_dtype"], t == DType::BF16 ? "bfloat16" : "float16");
    HfModel m = import_hf(d.path());
    ASSERT_EQ(m.params.size(), params.size());
    // Relative precision: 8 significant bits for bf16, 11 for f16 (+ f16 subnormal spacing).
    const double rel = t == DType::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    size_t bad = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      double err = std::fabs(double(m.params[i]) - params[i]);
      if (err > rel * std::fabs(params[i]) + std::ldexp(1.0, -25)) ++bad;
      if (t == DType::BF16) {
        uint32_t u;
        std::memcpy(&u, &m.params[i], 4);
        if (u & 0xffff) ++bad;  // a bf16 value has no low mantissa bits
        if (m.params[i] != bf16_to_f32(f32_to_bf16(params[i]))) ++bad;
      }
      if (params[i] == 0 && m.params[i] != 0) ++bad;  // padding stays zero
    }
    EXPECT_EQ(bad, 0u) << dtype_name(t);
  }
}

TEST(HfExport, ShardedExportImports) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  const std::vector<float> params = ckpt_test::random_params(cfg, 14);
  const uint64_t max_shard = 8192;  // embed and head are 6144 bytes each in f32
  export_hf(d.path(), cfg, params, hfe_opts(DType::F32, max_shard));

  json index = read_json_file(d.file("model.safetensors.index.json"));
  const json& wm = index["weight_map"];
  EXPECT_EQ(wm.size(), 21u);
  std::set<std::string> shards;
  for (auto it = wm.begin(); it != wm.end(); ++it) shards.insert(it.value().get<std::string>());
  ASSERT_GT(shards.size(), 2u);
  const std::string last = cat("-of-", std::string(5 - std::to_string(shards.size()).size(), '0'),
                               shards.size(), ".safetensors");
  uint64_t total = 0;
  for (const auto& s : shards) {
    EXPECT_EQ(s.rfind("model-", 0), 0u) << s;
    EXPECT_TRUE(has(s, last)) << s << " vs " << last;
    SafetensorsFile f(d.file(s));
    uint64_t bytes = 0;
    for (const auto& t : f.tensors()) bytes += t.end - t.begin;
    EXPECT_LE(bytes, max_shard) << s;
    total += bytes;
  }
  EXPECT_TRUE(shards.count("model-00001-of-" + last.substr(4)));
  EXPECT_EQ(index["metadata"]["total_size"], total);
  EXPECT_EQ(total, uint64_t(cfg.num_params()) * 4);
  EXPECT_FALSE(ckpt_test::list_dir(d.path()).empty() || hfe_has_temp_files(d.path()));
  EXPECT_TRUE(ckpt_test::bit_equal(import_hf(d.path()).params, params));

  // Re-exporting unsharded into the same folder drops the old shards and index.
  export_hf(d.path(), cfg, params, hfe_opts(DType::F32));
  EXPECT_EQ(
      ckpt_test::list_dir(d.path()),
      (std::vector<std::string>{"config.json", "generation_config.json", "model.safetensors"}));
  EXPECT_TRUE(ckpt_test::bit_equal(import_hf(d.path()).params, params));
}

TEST(HfExport, MissingShardIsNamed) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  export_hf(d.path(), cfg, ckpt_test::random_params(cfg, 15), hfe_opts(DType::BF16, 4096));
  json index = read_json_file(d.file("model.safetensors.index.json"));
  const std::string victim = index["weight_map"]["model.layers.1.mlp.up_proj.weight"];
  std::filesystem::remove(d.file(victim));
  std::string msg = error_of([&] { import_hf(d.path()); });
  EXPECT_TRUE(has(msg, victim) && has(msg, "missing")) << msg;
}

// A minimal SentencePiece ModelProto, encoded by hand: pieces <unk> <s> </s> ▁ a ▁a (types
// unknown, control, control, normal...), a BPE trainer spec with byte fallback, identity
// normalization without whitespace removal.
std::string tiny_sp_model() {
  auto field = [](int num, const std::string& payload) {
    std::string s(1, char(num << 3 | 2));
    s += char(payload.size());
    return s + payload;
  };
  auto piece = [&](const std::string& text, float score, int type) {
    std::string p = field(1, text);
    p += char(2 << 3 | 5);
    p.append(reinterpret_cast<const char*>(&score), 4);
    p += char(3 << 3);
    p += char(type);
    return field(1, p);
  };
  std::string m = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3) +
                  piece("\xe2\x96\x81", -1, 1) + piece("a", -2, 1) +
                  piece(
                      "\xe2\x96\x81"
                      "a",
                      -3, 1);
  m += field(2, std::string{char(3 << 3), 2, char(0x98), 2,
                            1});  // model_type = BPE, byte_fallback (35) = 1
  m += field(3,
             field(1, "identity") + std::string{char(4 << 3), 0});  // remove_extra_whitespaces = 0
  return m;
}

TEST(HfExport, TokenizerFilesAreWritten) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  const std::string tok = d.file("src.model");
  ckpt_test::write_bytes(tok, tiny_sp_model());
  HfExportOptions o = hfe_opts(DType::BF16);
  o.tokenizer_model = tok;
  const std::string out = d.file("hf");
  export_hf(out, cfg, ckpt_test::random_params(cfg, 16), o);
  EXPECT_EQ(ckpt_test::read_bytes(out + "/tokenizer.model"), ckpt_test::read_bytes(tok));
  json tc = read_json_file(out + "/tokenizer_config.json");
  // tokenizer.json is written, so the class that runs it verbatim (not transformers 5's
  // LlamaTokenizer, which swaps in its own pre-tokenizer).
  EXPECT_EQ(tc["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_EQ(tc["bos_token"], "<s>");
  EXPECT_EQ(tc["eos_token"], "</s>");
  EXPECT_EQ(tc["unk_token"], "<unk>");
  EXPECT_EQ(tc["add_bos_token"], true);
  EXPECT_EQ(tc["add_eos_token"], false);
  json sm = read_json_file(out + "/special_tokens_map.json");
  EXPECT_EQ(sm["bos_token"], "<s>");
  EXPECT_EQ(sm["eos_token"], "</s>");
  // tokenizer.json: the pieces as a BPE vocabulary, the merge the pieces imply, byte fallback.
  json tj = read_json_file(out + "/tokenizer.json");
  EXPECT_EQ(tj["model"]["type"], "BPE");
  EXPECT_EQ(tj["model"]["vocab"]["\xe2\x96\x81"
                                 "a"],
            5);
  EXPECT_EQ(tj["model"]["merges"], json::parse(R"([["\u2581", "a"]])"));
  EXPECT_EQ(tj["model"]["byte_fallback"], true);
  EXPECT_EQ(tj["added_tokens"].size(), 3u);
  EXPECT_EQ(tj["post_processor"]["special_tokens"]["<s>"]["ids"], json::array({1}));
  EXPECT_FALSE(hfe_has_temp_files(out));
  // A file that is not a SentencePiece model is refused before anything is written.
  ckpt_test::write_bytes(tok, std::string("\x0a\x01\x02 not a real model", 20));
  const std::string bad = ckpt_test::error_of(
      [&] { export_hf(d.file("hf2"), cfg, ckpt_test::random_params(cfg, 16), o); });
  EXPECT_TRUE(ckpt_test::has(bad, tok)) << bad;
  EXPECT_FALSE(std::filesystem::exists(d.file("hf2")));

  o.tokenizer_model = d.file("absent.model");
  std::string msg =
      error_of([&] { export_hf(d.file("hf2"), cfg, ckpt_test::random_params(cfg, 1), o); });
  EXPECT_TRUE(has(msg, "absent.model")) << msg;
}

TEST(HfExport, BadArgumentsAreRefused) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  std::vector<float> params = ckpt_test::random_params(cfg, 17);
  params.pop_back();
  EXPECT_TRUE(
      has(error_of([&] { export_hf(d.path(), cfg, params, hfe_opts(DType::F32)); }), "parameters"));
  params.push_back(0);
  EXPECT_TRUE(
      has(error_of([&] { export_hf(d.path(), cfg, params, hfe_opts(DType::I32)); }), "dtype"));
  EXPECT_TRUE(ckpt_test::list_dir(d.path()).empty());
}

// Weights that a dtype represents exactly (a model trained in or imported from bf16/f16)
// survive export -> import bit for bit, sharded or not.
TEST(HfExport, RepresentableWeightsRoundTripBitExactInEveryDtype) {
  const ModelConfig cfg = ckpt_test::small_config();
  for (DType t : {DType::BF16, DType::F16, DType::F32}) {
    for (uint64_t shard : {uint64_t(5) << 30, uint64_t(3000)}) {
      SCOPED_TRACE(cat(dtype_name(t), " shard ", shard));
      std::vector<float> params = ckpt_test::random_params(cfg, 18);
      for (float& x : params)
        x = t == DType::BF16  ? bf16_to_f32(f32_to_bf16(x))
            : t == DType::F16 ? f16_to_f32(f32_to_f16(x))
                              : x;
      ckpt_test::TempDir d;
      export_hf(d.path(), cfg, params, hfe_opts(t, shard));
      EXPECT_EQ(std::filesystem::exists(d.file("model.safetensors.index.json")), shard < 5000);
      EXPECT_TRUE(ckpt_test::bit_equal(import_hf(d.path()).params, params));
    }
  }
}
