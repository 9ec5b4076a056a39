// GGUF: the container against the spec's byte layout, Q8_0 against its definition, export ->
// import round trips, the RoPE row order, and hostile files. llama.cpp itself reads our files
// in test_interop_llamacpp.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>

#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf.h"
#include "checkpoint/gguf_llama.h"
#include "ckpt_test_util.h"
#include "core/dtype.h"
#include "model/param_layout.h"

using namespace tl;
using ckpt_test::error_of;
using ckpt_test::has;

namespace {

template <class T>
T at(const std::string& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

// A BPE vocabulary of n pieces with Llama's special ids, as data/sp_model.h describes one.
SpModelInfo test_vocab(int n) {
  SpModelInfo v;
  v.model_type = 2;
  v.normalizer = "identity";
  v.remove_extra_whitespaces = false;
  v.byte_fallback = true;
  v.pieces.push_back({"<unk>", 0, PieceType::Unknown});
  v.pieces.push_back({"<s>", 0, PieceType::Control});
  v.pieces.push_back({"</s>", 0, PieceType::Control});
  for (int i = 3; i < n; ++i)
    v.pieces.push_back({"p" + std::to_string(i), -float(i), PieceType::Normal});
  return v;
}

std::vector<float> export_and_import(const ModelConfig& cfg, const std::vector<float>& p,
                                     gguf::TensorType t, const std::string& path) {
  GgufExportOptions o;
  o.type = t;
  export_gguf(path, cfg, p, test_vocab(cfg.vocab_size), o);
  GgufModel m = import_gguf(path);
  EXPECT_EQ(m.config.to_json(), [&] {
    ModelConfig c = cfg;
    c.preset = m.config.preset;
    return c.to_json();
  }());
  return m.params;
}

// A valid exported file of the small model, for the hostile cases to start from.
std::string small_gguf(const ckpt_test::TempDir& dir, ModelConfig cfg = ckpt_test::small_config()) {
  const std::string path = dir.file("small.gguf");
  export_gguf(path, cfg, ckpt_test::random_params(cfg, 3), test_vocab(cfg.vocab_size),
              {gguf::TensorType::F32});
  return path;
}

}  // namespace

// Bytes as docs/gguf.md lays them out: header, one key/value, one tensor info, padding to
// the alignment, the data.
TEST(Gguf, ContainerBytesFollowTheSpec) {
  ckpt_test::TempDir dir;
  gguf::Writer w;  // general.alignment = 32 is its first key
  w.set("a.k", gguf::Value::u32(7));
  const float data[6] = {1, 2, 3, 4, 5, 6};
  w.add_tensor("t", {3, 2}, gguf::TensorType::F32,
               [&](std::FILE* f, uint64_t bytes) { std::fwrite(data, 1, bytes, f); });
  w.write(dir.file("x.gguf"));
  const std::string b = ckpt_test::read_bytes(dir.file("x.gguf"));
  ASSERT_GE(b.size(), 24u);
  EXPECT_EQ(b.substr(0, 4), "GGUF");
  EXPECT_EQ(at<uint32_t>(b, 4), 3u);   // version
  EXPECT_EQ(at<uint64_t>(b, 8), 1u);   // tensors
  EXPECT_EQ(at<uint64_t>(b, 16), 2u);  // key/values
  size_t o = 24;
  EXPECT_EQ(at<uint64_t>(b, o), 17u);  // "general.alignment"
  EXPECT_EQ(b.substr(o + 8, 17), "general.alignment");
  o += 8 + 17;
  EXPECT_EQ(at<uint32_t>(b, o), 4u);  // u32
  EXPECT_EQ(at<uint32_t>(b, o + 4), 32u);
  o += 8;
  EXPECT_EQ(at<uint64_t>(b, o), 3u);
  EXPECT_EQ(b.substr(o + 8, 3), "a.k");
  o += 11;
  EXPECT_EQ(at<uint32_t>(b, o), 4u);
  EXPECT_EQ(at<uint32_t>(b, o + 4), 7u);
  o += 8;
  EXPECT_EQ(at<uint64_t>(b, o), 1u);  // tensor name "t"
  EXPECT_EQ(b[o + 8], 't');
  o += 9;
  EXPECT_EQ(at<uint32_t>(b, o), 2u);  // n_dims
  EXPECT_EQ(at<uint64_t>(b, o + 4), 3u);
  EXPECT_EQ(at<uint64_t>(b, o + 12), 2u);
  EXPECT_EQ(at<uint32_t>(b, o + 20), 0u);  // F32
  EXPECT_EQ(at<uint64_t>(b, o + 24), 0u);  // offset
  o += 32;
  const size_t data_at = (o + 31) / 32 * 32;
  for (size_t k = o; k < data_at; ++k) EXPECT_EQ(b[k], 0) << k;
  ASSERT_EQ(b.size(), data_at + 24);
  EXPECT_EQ(std::memcmp(b.data() + data_at, data, 24), 0);

  gguf::File f(dir.file("x.gguf"));
  EXPECT_EQ(f.get_uint("a.k"), 7u);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.tensors()[0].dims, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(std::memcmp(f.data(f.tensors()[0]).data(), data, 24), 0);
}

TEST(Gguf, MetadataOfEveryTypeRoundTrips) {
  ckpt_test::TempDir dir;
  gguf::Writer w(64);
  w.set("s", gguf::Value::str("h\xc3\xa9llo"));
  w.set("f", gguf::Value::f32(0.25f));
  w.set("i", gguf::Value::i32(-5));
  w.set("b", gguf::Value::boolean(true));
  w.set("as", gguf::Value::str_array({"a", "", "\xe2\x96\x81x"}));
  w.set("af", gguf::Value::num_array(gguf::ValueType::F32, {1.5, -2}));
  w.set("ai", gguf::Value::num_array(gguf::ValueType::I32, {3, -4}));
  w.write(dir.file("m.gguf"));
  gguf::File f(dir.file("m.gguf"));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_string("s"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_float("f"), 0.25);
  EXPECT_EQ(f.find("i")->i, -5);
  EXPECT_EQ(f.find("b")->type, gguf::ValueType::Bool);
  EXPECT_EQ(f.find("b")->u, 1u);
  EXPECT_EQ(f.find("as")->strs, (std::vector<std::string>{"a", "", "\xe2\x96\x81x"}));
  EXPECT_EQ(f.find("af")->nums, (std::vector<double>{1.5, -2}));
  EXPECT_EQ(f.find("ai")->elem, gguf::ValueType::I32);
  EXPECT_EQ(f.find("ai")->nums, (std::vector<double>{3, -4}));
  EXPECT_TRUE(has(error_of([&] { f.get_uint("s"); }), "'s' must be a non-negative integer"));
  EXPECT_TRUE(has(error_of([&] { f.get_string("nope"); }), "has no metadata 'nope'"));
}

// ggml's reference: d = max|x| / 127 (stored f16), q = round(x / d).
TEST(Gguf, Q8_0IsGgmlsDefinition) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = 0.5f * float(j) - 8.0f;  // max |x| = 8 at j = 0
  x[5] = 3.3f;
  uint8_t blk[34];
  quantize_q8_0(x, 32, blk);
  uint16_t dh;
  std::memcpy(&dh, blk, 2);
  EXPECT_EQ(dh, f32_to_f16(8.0f / 127.0f));
  for (int j = 0; j < 32; ++j)
    EXPECT_EQ(int8_t(blk[2 + j]), int8_t(std::lround(x[j] * (127.0f / 8.0f)))) << j;
  EXPECT_EQ(int8_t(blk[2]), -127);
  float y[32];
  dequantize_q8_0(blk, 32, y);
  for (int j = 0; j < 32; ++j) EXPECT_NEAR(y[j], x[j], 8.0 / 127 / 2 * 1.01) << j;
  float zeros[32] = {};
  quantize_q8_0(zeros, 32, blk);
  dequantize_q8_0(blk, 32, y);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(Gguf, ExportImportRoundTripsEveryType) {
  ckpt_test::TempDir dir;
  ModelConfig cfg = ckpt_test::small_config();
  cfg.ffn_dim = 64;  // Q8_0 rows must be multiples of 32
  const std::vector<float> p = ckpt_test::random_params(cfg, 11);
  EXPECT_TRUE(ckpt_test::bit_equal(
      export_and_import(cfg, p, gguf::TensorType::F32, dir.file("f32.gguf")), p));
  const ParamLayout layout(cfg);
  const auto f16 = export_and_import(cfg, p, gguf::TensorType::F16, dir.file("f16.gguf"));
  const auto bf16 = export_and_import(cfg, p, gguf::TensorType::BF16, dir.file("bf16.gguf"));
  const auto q8 = export_and_import(cfg, p, gguf::TensorType::Q8_0, dir.file("q8.gguf"));
  for (const ParamInfo& info : layout.params()) {
    const bool norm = info.shape.ndim == 1;  // norms stay f32 in every file
    for (int64_t i = 0; i < info.numel(); ++i) {
      const size_t k = size_t(info.offset + i);
      ASSERT_EQ(f16[k], norm ? p[k] : f16_to_f32(f32_to_f16(p[k]))) << info.name << " " << i;
      ASSERT_EQ(bf16[k], norm ? p[k] : bf16_to_f32(f32_to_bf16(p[k]))) << info.name << " " << i;
      if (norm) {
        ASSERT_EQ(q8[k], p[k]) << info.name;
      }
    }
    if (norm) continue;
    // Q8_0: within half a step of each block's scale (plus the scale's own f16 rounding).
    const int64_t cols = info.shape[info.shape.ndim - 1];
    for (int64_t b0 = 0; b0 < info.numel(); b0 += 32) {
      float amax = 0;
      for (int j = 0; j < 32; ++j)
        amax = std::max(amax, std::fabs(p[size_t(info.offset + b0 + j)]));
      for (int j = 0; j < 32; ++j) {
        const size_t k = size_t(info.offset + b0 + j);
        ASSERT_NEAR(q8[k], p[k], amax / 127 * 0.5 + amax * 1e-3)
            << info.name << " " << b0 + j << " cols " << cols;
      }
    }
  }
}

// llama.cpp rotates adjacent pairs: GGUF row 2j + s of a head is our row s * hd/2 + j.
TEST(Gguf, QueryAndKeyRowsAreInLlamaCppRopeOrder) {
  ckpt_test::TempDir dir;
  const ModelConfig cfg = ckpt_test::small_config();              // hd 8, 4 query heads, 2 KV heads
  const std::vector<float> p = ckpt_test::random_params(cfg, 3);  // what small_gguf exports
  const std::string path = small_gguf(dir, cfg);
  gguf::File f(path);
  const ParamLayout layout(cfg);
  const ParamInfo& wqkv = layout.get(ParamKind::Wqkv, 1);
  const int64_t C = cfg.dim, hd = cfg.head_dim(), H = cfg.n_heads, K = cfg.n_kv_heads;
  auto row = [&](const std::string& name, int64_t r) {
    const auto d = f.data(*f.find_tensor(name));
    return std::vector<float>(reinterpret_cast<const float*>(d.data()) + r * C,
                              reinterpret_cast<const float*>(d.data()) + (r + 1) * C);
  };
  auto ours = [&](int64_t r) {
    return std::vector<float>(p.begin() + wqkv.offset + r * C,
                              p.begin() + wqkv.offset + (r + 1) * C);
  };
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < hd / 2; ++j) {
      EXPECT_EQ(row("blk.1.attn_q.weight", h * hd + 2 * j), ours(h * hd + j));
      EXPECT_EQ(row("blk.1.attn_q.weight", h * hd + 2 * j + 1), ours(h * hd + hd / 2 + j));
    }
  for (int64_t h = 0; h < K; ++h)
    for (int64_t j = 0; j < hd / 2; ++j)
      EXPECT_EQ(row("blk.1.attn_k.weight", h * hd + 2 * j + 1), ours(H * hd + h * hd + hd / 2 + j));
  for (int64_t r = 0; r < K * hd; ++r)  // v is not rotated
    EXPECT_EQ(row("blk.1.attn_v.weight", r), ours((H + K) * hd + r));
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("llama.rope.dimension_count"), uint64_t(hd));
  EXPECT_EQ(f.get_uint("llama.attention.head_count_kv"), uint64_t(K));
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->strs.size(), size_t(cfg.vocab_size));
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->nums[1], 3.0);  // <s> is a control token
  EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->dims,
            (std::vector<int64_t>{cfg.ffn_dim, cfg.dim}));
}

TEST(Gguf, TiedHeadIsLeftOutAndRestored) {
  ckpt_test::TempDir dir;
  const ModelConfig cfg = ckpt_test::small_config();
  std::vector<float> p = ckpt_test::random_params(cfg, 8);
  const ParamLayout layout(cfg);
  const ParamInfo& e = layout.get(ParamKind::Embed);
  std::copy_n(p.begin() + e.offset, e.numel(), p.begin() + layout.get(ParamKind::Head).offset);
  export_gguf(dir.file("t.gguf"), cfg, p, test_vocab(cfg.vocab_size), {gguf::TensorType::F32});
  gguf::File f(dir.file("t.gguf"));
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  EXPECT_NE(f.find_tensor("token_embd.weight"), nullptr);
  EXPECT_TRUE(ckpt_test::bit_equal(import_gguf(dir.file("t.gguf")).params, p));
}

TEST(Gguf, ExportRefusesWhatGgufCannotHoldAndWritesNothing) {
  ckpt_test::TempDir dir;
  const ModelConfig cfg = ckpt_test::small_config();  // ffn_dim 40
  std::vector<float> p = ckpt_test::random_params(cfg, 2);
  const std::string out = dir.file("sub/x.gguf");
  auto err = [&](const SpModelInfo& v, gguf::TensorType t) {
    return error_of([&] { export_gguf(out, cfg, p, v, {t}); });
  };
  std::string msg = err(test_vocab(47), gguf::TensorType::F32);
  EXPECT_TRUE(has(msg, "47 pieces") && has(msg, "vocab_size is 48")) << msg;
  SpModelInfo unigram = test_vocab(48);
  unigram.model_type = 1;
  EXPECT_TRUE(has(err(unigram, gguf::TensorType::F32), "not BPE"));
  SpModelInfo nfkc = test_vocab(48);
  nfkc.normalizer = "nmt_nfkc";
  EXPECT_TRUE(has(err(nfkc, gguf::TensorType::F32), "'nmt_nfkc'"));
  msg = err(test_vocab(48), gguf::TensorType::Q8_0);
  EXPECT_TRUE(has(msg, "ffn_down") && has(msg, "40 values")) << msg;
  p[size_t(ParamLayout(cfg).get(ParamKind::Wo, 1).offset + 3)] = NAN;
  msg = err(test_vocab(48), gguf::TensorType::F32);
  EXPECT_TRUE(has(msg, "blk.1.attn_output.weight") && has(msg, "non-finite")) << msg;
  p[size_t(ParamLayout(cfg).get(ParamKind::Wo, 1).offset + 3)] = 70000.0f;
  EXPECT_TRUE(has(err(test_vocab(48), gguf::TensorType::F16), "beyond f16's range"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("sub")))
      << "nothing may be created before the checks pass";
}

// Every prefix of a valid file, and files with one field made hostile: a named tl::Error each,
// never a crash or an allocation the file cannot back.
TEST(Gguf, HostileFilesGetNamedErrors) {
  ckpt_test::TempDir dir;
  const std::string good = ckpt_test::read_bytes(small_gguf(dir));
  const std::string bad = dir.file("bad.gguf");
  for (size_t n = 0; n < good.size(); n += (n < 2048 ? 1 : 997)) {
    ckpt_test::write_bytes(bad, good.substr(0, n));
    const std::string msg = error_of([&] { import_gguf(bad); });
    ASSERT_TRUE(has(msg, bad)) << "prefix " << n << ": " << msg;
  }
  auto patched = [&](size_t off, const void* v, size_t len) {
    std::string b = good;
    std::memcpy(b.data() + off, v, len);
    ckpt_test::write_bytes(bad, b);
    return error_of([&] { import_gguf(bad); });
  };
  const uint64_t huge = 1ull << 60;
  EXPECT_TRUE(has(patched(8, &huge, 8), "tensor count")) << patched(8, &huge, 8);
  EXPECT_TRUE(has(patched(16, &huge, 8), "metadata count"));
  const uint32_t v1 = 1;
  EXPECT_TRUE(has(patched(4, &v1, 4), "version 1"));
  EXPECT_TRUE(has(patched(0, "GGML", 4), "not a GGUF file"));
  EXPECT_TRUE(has(patched(24, &huge, 8), "truncated"));  // the first key's length

  // Structured attacks: rewrite a valid file with one thing changed.
  const ModelConfig cfg = ckpt_test::small_config();
  gguf::File src(dir.file("small.gguf"));
  auto rewrite = [&](const std::function<void(gguf::Writer&)>& meta_edit,
                     const std::string& skip_tensor, const std::string& extra_tensor,
                     float poison) {
    gguf::Writer w;
    for (const auto& [k, v] : src.metadata()) w.set(k, v);
    meta_edit(w);
    for (const auto& t : src.tensors()) {
      if (t.name == skip_tensor) continue;
      const auto d = src.data(t);
      const bool poisoned = poison != 0 && t.name == "blk.1.ffn_up.weight";
      w.add_tensor(t.name, t.dims, gguf::TensorType(t.type),
                   [d, poisoned, poison](std::FILE* f, uint64_t) {
                     std::string b(reinterpret_cast<const char*>(d.data()), d.size());
                     if (poisoned) std::memcpy(b.data() + 4 * 7, &poison, 4);
                     std::fwrite(b.data(), 1, b.size(), f);
                   });
    }
    if (!extra_tensor.empty())
      w.add_tensor(extra_tensor, {4}, gguf::TensorType::F32, [](std::FILE* f, uint64_t n) {
        const std::string z(n, '\0');
        std::fwrite(z.data(), 1, n, f);
      });
    w.write(bad);
    return error_of([&] { import_gguf(bad); });
  };
  auto none = [](gguf::Writer&) {};
  EXPECT_EQ(rewrite(none, "", "", 0), "<no tl::Error thrown>");  // the rewrite itself is faithful
  std::string msg = rewrite(
      [](gguf::Writer& w) { w.set("general.architecture", gguf::Value::str("gpt2")); }, "", "", 0);
  EXPECT_TRUE(has(msg, "'gpt2'")) << msg;
  msg = rewrite(none, "blk.1.attn_v.weight", "", 0);
  EXPECT_TRUE(has(msg, "missing tensor 'blk.1.attn_v.weight'")) << msg;
  msg = rewrite(none, "", "rope_freqs.weight", 0);
  EXPECT_TRUE(has(msg, "unexpected tensor 'rope_freqs.weight'")) << msg;
  msg = rewrite(none, "", "", NAN);
  EXPECT_TRUE(has(msg, "blk.1.ffn_up.weight") && has(msg, "non-finite")) << msg;
  msg = rewrite([](gguf::Writer& w) { w.set("llama.feed_forward_length", gguf::Value::u32(41)); },
                "", "", 0);
  EXPECT_TRUE(has(msg, "blk.0.ffn_gate.weight") && has(msg, "dims")) << msg;
  msg = rewrite([](gguf::Writer& w) { w.set("llama.block_count", gguf::Value::u32(1000000)); }, "",
                "", 0);
  EXPECT_TRUE(has(msg, "block_count")) << msg;
  msg = rewrite([](gguf::Writer& w) { w.set("llama.block_count", gguf::Value::u32(4000)); }, "", "",
                0);
  EXPECT_TRUE(has(msg, "4000 blocks need")) << msg;
  msg = rewrite([](gguf::Writer& w) { w.set("llama.embedding_length", gguf::Value::str("32")); },
                "", "", 0);
  EXPECT_TRUE(has(msg, "llama.embedding_length") && has(msg, "string")) << msg;
  msg = rewrite([](gguf::Writer& w) { w.set("llama.rope.dimension_count", gguf::Value::u32(4)); },
                "", "", 0);
  EXPECT_TRUE(has(msg, "partial rotary")) << msg;
  (void)cfg;
}

// The commands: export -> import closes the loop bit for bit (f32); bad input gets one named
// error and leaves no file under the final name.
TEST(GgufCli, ExportImportRoundTripAndBadInput) {
  const char* env = std::getenv("TL_SHARED_DIR");
  const std::string tok =
      std::string(env && *env ? env : TL_SOURCE_DIR "/../shared") + "/data/llama2-tokenizer.model";
  if (!std::filesystem::exists(tok))
    GTEST_SKIP() << "../shared/data (the Llama 2 tokenizer) is absent";
  ckpt_test::TempDir dir;
  const std::string bin = TL_BINARY, ck = dir.file("m.tlck");
  auto run = [&](const std::string& args) { return ckpt_test::run_cmd(bin + " " + args); };
  auto r = run("init --preset tiny --set vocab_size=32000 --seed 4 --out " + ck);
  ASSERT_EQ(r.rc, 0) << r.output;
  r = run("export --checkpoint " + ck + " --format gguf --dtype f32 --tokenizer " + tok +
          " --out " + dir.file("m.gguf"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(has(r.output, "GGUF v3")) << r.output;
  r = run("import --gguf " + dir.file("m.gguf") + " --out " + dir.file("back.tlck"));
  ASSERT_EQ(r.rc, 0) << r.output;
  const CheckpointData a = load_checkpoint(ck, false),
                       b = load_checkpoint(dir.file("back.tlck"), false);
  EXPECT_TRUE(ckpt_test::bit_equal(a.params, b.params));
  EXPECT_EQ(ModelConfig::from_json(b.meta["model"]).to_json()["dim"], 192);

  auto refused = [&](const std::string& args, const std::string& what, const std::string& out) {
    const auto res = run(args);
    EXPECT_NE(res.rc, 0) << args;
    EXPECT_TRUE(has(res.output, what)) << args << "\n" << res.output;
    EXPECT_FALSE(std::filesystem::exists(out)) << out;
  };
  refused("export --checkpoint " + ck + " --format gguf --out " + dir.file("no-tok.gguf"),
          "needs the tokenizer", dir.file("no-tok.gguf"));
  refused("export --checkpoint " + ck + " --format hf --dtype q8_0 --out " + dir.file("hfq"),
          "for --format gguf", dir.file("hfq"));
  refused("export --checkpoint " + ck + " --format gguf --dtype q4_0 --tokenizer " + tok +
              " --out " + dir.file("q4.gguf"),
          "q4_0", dir.file("q4.gguf"));
  ASSERT_EQ(run("init --preset tiny --out " + dir.file("v4096.tlck")).rc, 0);
  refused("export --checkpoint " + dir.file("v4096.tlck") + " --format gguf --tokenizer " + tok +
              " --out " + dir.file("mismatch.gguf"),
          "32000 pieces but the model's vocab_size is 4096", dir.file("mismatch.gguf"));
  const std::string bytes = ckpt_test::read_bytes(dir.file("m.gguf"));
  ckpt_test::write_bytes(dir.file("cut.gguf"), bytes.substr(0, bytes.size() / 2));
  refused("import --gguf " + dir.file("cut.gguf") + " --out " + dir.file("cut.tlck"), "cut.gguf",
          dir.file("cut.tlck"));
  ckpt_test::write_bytes(dir.file("junk.gguf"), std::string(100, 'x'));
  refused("import --gguf " + dir.file("junk.gguf") + " --out " + dir.file("junk.tlck"),
          "not a GGUF file", dir.file("junk.tlck"));
}
