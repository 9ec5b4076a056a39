// safetensors reader and writer, checked against files built byte by byte from the spec.
#include <cmath>

#include "checkpoint/safetensors.h"
#include "ckpt_test_util.h"

using namespace tl;
using ckpt_test::error_of;
using ckpt_test::has;

namespace {

// u64 little-endian header length, the header text, then the data bytes.
std::string st_file_bytes(const std::string& header, const std::string& data) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += char(uint64_t(header.size()) >> (8 * i) & 0xff);
  return out + header + data;
}

std::string st_bytes(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s += char(b);
  return s;
}

std::string st_write(const ckpt_test::TempDir& d, const std::string& header,
                     const std::string& data) {
  std::string path = d.file("t.safetensors");
  ckpt_test::write_bytes(path, st_file_bytes(header, data));
  return path;
}

}  // namespace

TEST(Safetensors, ReadsAFileBuiltFromTheSpec) {
  ckpt_test::TempDir d;
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("c":{"dtype":"F16","shape":[1,3],"data_offsets":[14,20]},)"
                             R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]}})";
  // a: 1.0f, -2.5f; b: bf16 1.0, -2.0, 0.15625; c: f16 1.0, -0.5, 65504.
  const std::string data = st_bytes({0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0,  //
                                     0x80, 0x3f, 0x00, 0xc0, 0x20, 0x3e,              //
                                     0x00, 0x3c, 0x00, 0xb8, 0xff, 0x7b});
  SafetensorsFile f(st_write(d, header, data));

  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "a");  // sorted by name
  EXPECT_EQ(f.tensors()[2].name, "c");
  EXPECT_EQ(f.metadata().value("format", ""), "pt");
  const StTensorInfo& c = f.get("c");
  EXPECT_EQ(c.dtype, DType::F16);
  EXPECT_EQ(c.shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(c.numel(), 3);

  float a[2], b[3], cv[3];
  f.read_f32(f.get("a"), a, 2);
  f.read_f32(f.get("b"), b, 3);
  f.read_f32(c, cv, 3);
  EXPECT_EQ(a[0], 1.0f);
  EXPECT_EQ(a[1], -2.5f);
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -2.0f);
  EXPECT_EQ(b[2], 0.15625f);
  EXPECT_EQ(cv[0], 1.0f);
  EXPECT_EQ(cv[1], -0.5f);
  EXPECT_EQ(cv[2], 65504.0f);

  auto raw = f.bytes(f.get("b"));
  ASSERT_EQ(raw.size(), 6u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()), data.substr(8, 6));
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_TRUE(has(error_of([&] { f.get("missing"); }), "missing"));
  EXPECT_TRUE(has(error_of([&] { f.read_f32(f.get("a"), a, 3); }), "'a'"));
}

TEST(Safetensors, WriterFollowsTheSpecAndRoundTrips) {
  ckpt_test::TempDir d;
  const std::string path = d.file("w.safetensors");
  std::vector<float> w = {0.1f, -1.5f, 3.25f, 1e-3f, 7.0f, -0.0f};
  std::vector<int32_t> ids = {5, -7, 1 << 30};
  write_safetensors(path,
                    {{"z.f32", DType::F32, {2, 3}, w.data(), DType::F32},
                     {"m.bf16", DType::BF16, {6}, w.data(), DType::F32},
                     {"b.f16", DType::F16, {3, 2}, w.data(), DType::F32},
                     {"ids", DType::I32, {3}, ids.data(), DType::I32},
                     {"empty", DType::F32, {0, 4}, nullptr, DType::F32}},
                    {{"format", "pt"}});

  // Layout per the spec, decoded here without the reader.
  std::string bytes = ckpt_test::read_bytes(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[size_t(i)])) << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u) << "data must start 8-byte aligned";
  std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  json h = json::parse(header);
  // Keys appear in the text in sorted order (nlohmann iterates sorted, so check the text).
  size_t prev = 0;
  for (const char* k : {"__metadata__", "b.f16", "empty", "ids", "m.bf16", "z.f32"}) {
    size_t pos = header.find(std::string("\"") + k + "\"");
    ASSERT_NE(pos, std::string::npos) << k;
    EXPECT_GT(pos + 1, prev) << k;
    prev = pos + 1;
  }
  EXPECT_EQ(h["b.f16"]["data_offsets"], json::array({0, 12}));  // data in name order
  EXPECT_EQ(h["ids"]["data_offsets"], json::array({12, 24}));
  EXPECT_EQ(h["m.bf16"]["data_offsets"], json::array({24, 36}));
  EXPECT_EQ(h["z.f32"]["data_offsets"], json::array({36, 60}));
  EXPECT_EQ(bytes.size(), 8 + n + 60);
  // m.bf16 starts with bf16(0.1f) = 0x3dcd (0x3dcccccd rounds up).
  EXPECT_EQ(uint8_t(bytes[8 + n + 24]), 0xcd);
  EXPECT_EQ(uint8_t(bytes[8 + n + 25]), 0x3d);

  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata()["format"], "pt");
  std::vector<float> back(6);
  f.read_f32(f.get("z.f32"), back.data(), 6);
  EXPECT_TRUE(ckpt_test::bit_equal(back, w));
  f.read_f32(f.get("m.bf16"), back.data(), 6);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(back[i], w[i], std::fabs(w[i]) / 256) << i;
  f.read_f32(f.get("b.f16"), back.data(), 6);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(back[i], w[i], std::fabs(w[i]) / 2048) << i;
  auto raw = f.bytes(f.get("ids"));
  std::vector<int32_t> ids_back(3);
  std::memcpy(ids_back.data(), raw.data(), 12);
  EXPECT_EQ(ids_back, ids);
  EXPECT_EQ(f.get("empty").numel(), 0);
  EXPECT_TRUE(has(error_of([&] { f.read_f32(f.get("ids"), back.data(), 3); }), "I32"));
  EXPECT_EQ(ckpt_test::list_dir(d.path()), std::vector<std::string>{"w.safetensors"});
}

TEST(Safetensors, WriterRejectsDuplicatesAndBadConversions) {
  ckpt_test::TempDir d;
  float x[2] = {1, 2};
  int32_t i[2] = {1, 2};
  EXPECT_TRUE(
      has(error_of([&] {
            write_safetensors(d.file("a"), {{"t", DType::F32, {2}, x}, {"t", DType::F32, {2}, x}});
          }),
          "twice"));
  EXPECT_TRUE(has(error_of([&] {
                    write_safetensors(d.file("b"), {{"t", DType::BF16, {2}, i, DType::I32}});
                  }),
                  "convert"));
  EXPECT_TRUE(ckpt_test::list_dir(d.path()).empty());
}

TEST(Safetensors, MalformedFilesAreRejectedNamingTheFile) {
  ckpt_test::TempDir d;
  const std::string f32x2 = std::string(8, '\0');
  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> expect;  // substrings of the message besides the path
  };
  const std::vector<Case> cases = {
      {"too short", "abc", {"too short"}},
      {"length past EOF", std::string("\xe8\x03\0\0\0\0\0\0", 8) + "{}", {"past the end"}},
      {"bad JSON", st_file_bytes(R"({"a": {"dtype": )", ""), {"not valid JSON"}},
      {"not an object", st_file_bytes("[1, 2]", ""), {"object"}},
      {"out of bounds",
       st_file_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", f32x2),
       {"'a'", "outside"}},
      {"overlap",
       st_file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     std::string(12, '\0')),
       {"'a'", "'b'", "overlap"}},
      {"wrong byte size",
       st_file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32x2),
       {"'a'", "needs 12"}},
      {"unknown dtype",
       st_file_bytes(R"({"q":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", f32x2),
       {"'q'", "F8_E4M3"}},
      {"missing key",
       st_file_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", f32x2),
       {"'a'", "data_offsets"}},
      {"negative dim",
       st_file_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x2),
       {"'a'", "non-negative"}},
      {"reversed offsets",
       st_file_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", f32x2),
       {"'a'"}},
  };
  for (const auto& c : cases) {
    const std::string path = d.file(std::string("bad_") + std::to_string(&c - cases.data()));
    ckpt_test::write_bytes(path, c.bytes);
    std::string msg = error_of([&] { SafetensorsFile f(path); });
    EXPECT_TRUE(has(msg, path)) << c.what << ": " << msg;
    for (const auto& e : c.expect) EXPECT_TRUE(has(msg, e)) << c.what << ": " << msg;
  }
  EXPECT_TRUE(has(error_of([&] { SafetensorsFile f(d.file("nope")); }), "nope"));
}

TEST(Safetensors, ShardedFolderFollowsTheIndex) {
  ckpt_test::TempDir d;
  float a[2] = {1, 2}, b[3] = {3, 4, 5};
  write_safetensors(d.file("model-00001-of-00002.safetensors"), {{"x.a", DType::F32, {2}, a}});
  write_safetensors(d.file("model-00002-of-00002.safetensors"), {{"x.b", DType::F32, {3}, b}});
  const std::string index = R"({"metadata": {"total_size": 20}, "weight_map": {
      "x.a": "model-00001-of-00002.safetensors", "x.b": "model-00002-of-00002.safetensors"}})";
  ckpt_test::write_bytes(d.file("model.safetensors.index.json"), index);
  {
    SafetensorsModel m(d.path());
    EXPECT_EQ(m.names(), (std::vector<std::string>{"x.a", "x.b"}));
    ASSERT_NE(m.find("x.b"), nullptr);
    float out[3];
    m.file_of("x.b").read_f32(*m.find("x.b"), out, 3);
    EXPECT_EQ(out[2], 5.0f);
    EXPECT_TRUE(has(m.file_of("x.b").path(), "model-00002-of-00002"));
    EXPECT_EQ(m.find("x.c"), nullptr);
  }
  // A tensor that the index maps to a shard which lacks it.
  ckpt_test::write_bytes(d.file("model.safetensors.index.json"),
                         R"({"weight_map": {"x.b": "model-00001-of-00002.safetensors"}})");
  std::string msg = error_of([&] { SafetensorsModel m(d.path()); });
  EXPECT_TRUE(has(msg, "'x.b'") && has(msg, "model-00001-of-00002")) << msg;
  // A missing shard.
  ckpt_test::write_bytes(d.file("model.safetensors.index.json"), index);
  std::filesystem::remove(d.file("model-00002-of-00002.safetensors"));
  msg = error_of([&] { SafetensorsModel m(d.path()); });
  EXPECT_TRUE(has(msg, "model-00002-of-00002.safetensors") && has(msg, "missing")) << msg;
  // No weights at all.
  std::filesystem::remove(d.file("model.safetensors.index.json"));
  msg = error_of([&] { SafetensorsModel m(d.path()); });
  EXPECT_TRUE(has(msg, "model.safetensors")) << msg;
}

TEST(Safetensors, IndexMayNotPointOutsideTheFolder) {
  ckpt_test::TempDir d;
  ckpt_test::write_bytes(d.file("model.safetensors.index.json"),
                         R"({"weight_map": {"w": "../elsewhere.safetensors"}})");
  std::string msg = error_of([&] { SafetensorsModel m(d.path()); });
  EXPECT_TRUE(has(msg, "bad file name")) << msg;
}
