// Core utilities and model shape bookkeeping.
#include <gtest/gtest.h>

#include <cmath>

#include "core/dtype.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/json_reader.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/param_layout.h"

using namespace tl;

TEST(Core, Sha256KnownVectors) {
  // FIPS 180-4 examples.
  EXPECT_EQ(sha256_hex("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Core, Crc32KnownVector) { EXPECT_EQ(crc32_update(0, "123456789", 9), 0xCBF43926u); }

TEST(Core, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 and 1+2^-6: ties to even (1+2^-6).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(Core, F16RoundTrip) {
  for (float x : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.1f}) {
    float y = f16_to_f32(f32_to_f16(x));
    EXPECT_NEAR(y, x, std::fabs(x) * 1e-3 + 1e-12) << x;
  }
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
}

TEST(Core, RngIsDeterministicAndNormal) {
  Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  Rng r(7);
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    double x = r.normal();
    sum += x;
    sq += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sq / n, 1.0, 0.01);
}

TEST(Config, TinyLlamaParameterCountsMatchTheReleasedModel) {
  ModelConfig c = ModelConfig::from_preset("tinyllama-1.1b");
  EXPECT_EQ(c.num_params(), 1100048384);
  EXPECT_EQ(c.num_params_no_embedding(), 1034512384);
  EXPECT_NEAR(c.flops_per_token(2048) / 1e9, 7.314, 0.001);
  EXPECT_EQ(c.head_dim(), 64);
}

TEST(Config, RejectsImpossibleShapesAndUnknownKeys) {
  EXPECT_THROW(ModelConfig::from_json(json{{"preset", "tiny"}, {"n_heads", 5}}), Error);
  EXPECT_THROW(ModelConfig::from_json(json{{"preset", "tiny"}, {"n_kv_heads", 4}}), Error);
  EXPECT_THROW(ModelConfig::from_json(json{{"preset", "nope"}}), Error);
  try {
    ModelConfig::from_json(json{{"preset", "tiny"}, {"hiden", 5}});
    FAIL() << "unknown key accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.hiden"), std::string::npos) << e.what();
  }
  ModelConfig c = ModelConfig::from_json(json{{"preset", "tiny"}, {"n_layers", 2}});
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.preset, "custom");
}

TEST(Config, DottedSetParsesValues) {
  json j = json::object();
  json_set_dotted(j, "optim.lr", "3e-4");
  json_set_dotted(j, "model.preset", "tiny");
  json_set_dotted(j, "train.flag", "true");
  EXPECT_DOUBLE_EQ(j["optim"]["lr"].get<double>(), 3e-4);
  EXPECT_EQ(j["model"]["preset"], "tiny");
  EXPECT_EQ(j["train"]["flag"], true);
}

TEST(ParamLayout, CoversEveryParameterOnceAligned) {
  ModelConfig c = ModelConfig::from_preset("tiny");
  ParamLayout layout(c);
  int64_t sum = 0, prev_end = 0;
  for (const auto& p : layout.params()) {
    EXPECT_EQ(p.offset % kParamAlign, 0) << p.name;
    EXPECT_GE(p.offset, prev_end) << p.name;
    prev_end = p.offset + p.numel();
    sum += p.numel();
  }
  EXPECT_EQ(sum, c.num_params());
  EXPECT_GE(layout.total(), prev_end);
  EXPECT_EQ(layout.get(ParamKind::Wqkv, 1).shape, Shape({c.qkv_dim(), c.dim}));
  EXPECT_EQ(layout.layer_end(0), layout.layer_begin(1));
  EXPECT_NE(layout.find("layers.3.w_down"), nullptr);
  EXPECT_THROW(layout.get(ParamKind::Wo, c.n_layers), Error);
}

// Issue #18: the folder's fsync after an atomic rename ignored every error.
TEST(Fs, SyncDirReportsTheFolderItCannotSync) {
  const std::string missing = "/nonexistent_tl_folder/sub";
  std::string msg;
  try {
    sync_dir(missing);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("'" + missing + "'"), std::string::npos) << msg;
  EXPECT_NO_THROW(sync_dir("."));
}

// One rule for file names read from an index (meta.json, an HF weight index).
TEST(Fs, PlainFileNamesStayInTheirFolder) {
  for (const char* ok :
       {"shard_00000_of_00002.tlck", "model-00001.safetensors", "..x", "a.."})
    EXPECT_TRUE(is_plain_file_name(ok)) << ok;
  for (const std::string& bad :
       {std::string(""), std::string("."), std::string(".."), std::string("../x.tlck"),
        std::string("/etc/passwd"), std::string("sub/x"), std::string("x\0y", 3)})
    EXPECT_FALSE(is_plain_file_name(bad)) << bad;
}

// Integers read from JSON: floats that hold integers are taken, others and values beyond
// int64 are refused by name before any conversion (fuzz_hf_config found 1.1e141 converted
// to int64_t: undefined behaviour, reported by UBSan).
TEST(Core, JsonReaderRefusesIntegersOutOfRange) {
  const tl::json j = tl::json::parse(
      R"({"a": 1.099e141, "b": -1e19, "c": 18446744073709551615, "d": 1e6, "e": 2.5,
          "f": 9223372036854775807, "g": -9.223372036854775808e18})");
  tl::JsonReader r(j, "model");
  int64_t x = 0;
  for (const char* key : {"a", "b", "c"}) {
    try {
      r.get(key, x);
      ADD_FAILURE() << key << " was read as " << x;
    } catch (const tl::Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'model.") + key + "' is out of range"),
                std::string::npos)
          << e.what();
    }
  }
  r.get("d", x);
  EXPECT_EQ(x, 1000000);
  EXPECT_THROW(r.get("e", x), tl::Error);
  r.get("f", x);
  EXPECT_EQ(x, INT64_MAX);
  r.get("g", x);
  EXPECT_EQ(x, INT64_MIN);
  uint64_t u = 0;
  EXPECT_THROW(r.get("c", u), tl::Error);
}
