// Native checkpoints: bit-exact round trips, the on-disk layout of checkpoint.h, and
// clear errors for corruption, truncation and versions from the future.
#include <cmath>
#include <functional>
#include <limits>

#include "checkpoint/checkpoint.h"
#include "ckpt_test_util.h"
#include "core/hash.h"

using namespace tl;
using ckpt_test::error_of;
using ckpt_test::has;

namespace {

CheckpointData ck_sample(size_t n, bool with_optimizer) {
  CheckpointData d;
  d.meta = {{"model", {{"dim", 32}, {"preset", "custom"}}},
            {"step", 1234},
            {"rng", {1, 2, 18446744073709551615ull}},
            {"note", "h\u00e9llo"}};
  Rng rng(3);
  d.params.resize(n);
  for (auto& x : d.params) x = float(rng.normal());
  d.params[0] = -0.0f;
  d.params[1] = std::numeric_limits<float>::infinity();
  d.params[2] = std::numeric_limits<float>::denorm_min();
  uint32_t nan_bits = 0x7fc01234;  // a NaN with a payload must survive too
  std::memcpy(&d.params[3], &nan_bits, 4);
  if (with_optimizer) {
    d.adam_m.resize(n);
    d.adam_v.resize(n);
    for (auto& x : d.adam_m) x = float(rng.normal());
    for (auto& x : d.adam_v) x = float(rng.uniform());
  }
  return d;
}

// The header of a checkpoint file, decoded from the bytes as checkpoint.h describes it.
json ck_header(const std::string& bytes, uint64_t* header_len = nullptr) {
  uint64_t n;
  std::memcpy(&n, bytes.data() + 16, 8);
  if (header_len) *header_len = n;
  return json::parse(bytes.substr(24, n));
}

json ck_section(const json& header, const std::string& name) {
  for (const auto& s : header["sections"])
    if (s["name"] == name) return s;
  return json();
}

}  // namespace

TEST(Checkpoint, RoundTripIsBitExact) {
  ckpt_test::TempDir d;
  const std::string path = d.file("a.ckpt");
  CheckpointData in = ck_sample(1000, true);
  save_checkpoint(path, in);
  CheckpointData out = load_checkpoint(path);
  EXPECT_TRUE(ckpt_test::bit_equal(out.params, in.params));
  EXPECT_TRUE(ckpt_test::bit_equal(out.adam_m, in.adam_m));
  EXPECT_TRUE(ckpt_test::bit_equal(out.adam_v, in.adam_v));
  EXPECT_EQ(out.meta, in.meta);
  EXPECT_EQ(read_checkpoint_meta(path), in.meta);

  CheckpointData model_only = load_checkpoint(path, /*with_optimizer=*/false);
  EXPECT_TRUE(ckpt_test::bit_equal(model_only.params, in.params));
  EXPECT_TRUE(model_only.adam_m.empty() && model_only.adam_v.empty());
}

TEST(Checkpoint, ModelOnlyCheckpointHasNoOptimizerState) {
  ckpt_test::TempDir d;
  CheckpointData in = ck_sample(77, false);
  save_checkpoint(d.file("m.ckpt"), in);
  CheckpointData out = load_checkpoint(d.file("m.ckpt"));
  EXPECT_TRUE(ckpt_test::bit_equal(out.params, in.params));
  EXPECT_TRUE(out.adam_m.empty() && out.adam_v.empty());
  json h = ck_header(ckpt_test::read_bytes(d.file("m.ckpt")));
  EXPECT_EQ(h["sections"].size(), 1u);
}

TEST(Checkpoint, FileLayoutMatchesTheSpec) {
  ckpt_test::TempDir d;
  const std::string path = d.file("l.ckpt");
  CheckpointData in = ck_sample(333, true);
  save_checkpoint(path, in);
  const std::string bytes = ckpt_test::read_bytes(path);
  ASSERT_GE(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("TLCKPT\0\0", 8));
  uint32_t version, header_crc;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&header_crc, bytes.data() + 12, 4);
  EXPECT_EQ(version, 2u);
  uint64_t header_len = 0;
  json h = ck_header(bytes, &header_len);
  EXPECT_EQ(header_crc, crc32_update(0, bytes.data() + 24, header_len));
  EXPECT_EQ(h["meta"], in.meta);
  const std::vector<std::pair<const char*, const std::vector<float>*>> want = {
      {"params", &in.params}, {"adam_m", &in.adam_m}, {"adam_v", &in.adam_v}};
  ASSERT_EQ(h["sections"].size(), want.size());
  for (const auto& [name, vec] : want) {
    json s = ck_section(h, name);
    ASSERT_TRUE(s.is_object()) << name;
    EXPECT_EQ(s["dtype"], "f32");
    EXPECT_EQ(s["numel"], vec->size());
    EXPECT_EQ(s["bytes"], vec->size() * 4);
    uint64_t off = s["offset"];
    EXPECT_EQ(off % 64, 0u) << name;
    EXPECT_GE(off, 24 + header_len);
    ASSERT_LE(off + vec->size() * 4, bytes.size());
    EXPECT_EQ(std::memcmp(bytes.data() + off, vec->data(), vec->size() * 4), 0) << name;
    EXPECT_EQ(s["crc32"], crc32_update(0, vec->data(), vec->size() * 4)) << name;
  }
}

TEST(Checkpoint, CorruptSectionFailsItsCrcNamingIt) {
  ckpt_test::TempDir d;
  const std::string path = d.file("c.ckpt");
  save_checkpoint(path, ck_sample(500, true));
  const std::string good = ckpt_test::read_bytes(path);
  json h = ck_header(good);
  for (const char* name : {"params", "adam_m", "adam_v"}) {
    std::string bad = good;
    uint64_t off = ck_section(h, name)["offset"];
    bad[off + 777] ^= 0x10;
    ckpt_test::write_bytes(path, bad);
    std::string msg = error_of([&] { load_checkpoint(path); });
    EXPECT_TRUE(has(msg, std::string("'") + name + "'") && has(msg, "CRC") && has(msg, path))
        << msg;
  }
  // Without the optimizer the m/v sections are never read, so a corrupt adam_v still loads.
  EXPECT_NO_THROW(load_checkpoint(path, false));
}

TEST(Checkpoint, TruncatedFilesAreRejected) {
  ckpt_test::TempDir d;
  const std::string path = d.file("t.ckpt");
  save_checkpoint(path, ck_sample(400, true));
  const std::string good = ckpt_test::read_bytes(path);
  for (size_t keep : {size_t(0), size_t(10), size_t(40), good.size() / 2, good.size() - 1}) {
    ckpt_test::write_bytes(path, good.substr(0, keep));
    std::string msg = error_of([&] { load_checkpoint(path); });
    EXPECT_TRUE(has(msg, path) && has(msg, "truncated")) << keep << ": " << msg;
  }
}

TEST(Checkpoint, VersionFromTheFutureAndBadMagicAreRejected) {
  ckpt_test::TempDir d;
  const std::string path = d.file("v.ckpt");
  save_checkpoint(path, ck_sample(10, false));
  std::string bytes = ckpt_test::read_bytes(path);
  bytes[8] = 3;
  ckpt_test::write_bytes(path, bytes);
  std::string msg = error_of([&] { load_checkpoint(path); });
  EXPECT_TRUE(has(msg, "newer tinyllama") && has(msg, path)) << msg;
  EXPECT_TRUE(has(error_of([&] { read_checkpoint_meta(path); }), "newer tinyllama"));

  bytes[8] = 2;
  bytes[0] = 'X';
  ckpt_test::write_bytes(path, bytes);
  msg = error_of([&] { load_checkpoint(path); });
  EXPECT_TRUE(has(msg, "magic") && has(msg, path)) << msg;
}

TEST(Checkpoint, DamagedHeaderFailsItsCrc) {
  // A digit changed inside the meta still parses as JSON: only the header CRC can tell.
  ckpt_test::TempDir d;
  const std::string path = d.file("h.ckpt");
  save_checkpoint(path, ck_sample(100, true));
  std::string bytes = ckpt_test::read_bytes(path);
  const size_t at = bytes.find("\"step\":1234");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 10] = '5';
  ckpt_test::write_bytes(path, bytes);
  for (const std::string& msg :
       {error_of([&] { load_checkpoint(path); }), error_of([&] { read_checkpoint_meta(path); })})
    EXPECT_TRUE(has(msg, "header") && has(msg, "CRC") && has(msg, path)) << msg;
}

TEST(Checkpoint, MetaIsReadWithoutTouchingTheSections) {
  ckpt_test::TempDir d;
  const std::string path = d.file("m.ckpt");
  CheckpointData in = ck_sample(300, false);
  save_checkpoint(path, in);
  std::string bytes = ckpt_test::read_bytes(path);
  bytes[bytes.size() - 100] ^= 1;  // section data damaged, header intact
  ckpt_test::write_bytes(path, bytes);
  EXPECT_EQ(read_checkpoint_meta(path), in.meta);
  EXPECT_TRUE(has(error_of([&] { load_checkpoint(path); }), "CRC"));
}

TEST(Checkpoint, SaveIsAtomicAndLeavesNoTempFiles) {
  ckpt_test::TempDir d;
  const std::string path = d.file("s.ckpt");
  save_checkpoint(path, ck_sample(100, true));
  save_checkpoint(path, ck_sample(50, false));  // overwrite
  EXPECT_EQ(ckpt_test::list_dir(d.path()), std::vector<std::string>{"s.ckpt"});
  EXPECT_EQ(load_checkpoint(path).params.size(), 50u);

  CheckpointData bad = ck_sample(100, true);
  bad.adam_v.pop_back();
  std::string msg = error_of([&] { save_checkpoint(d.file("bad.ckpt"), bad); });
  EXPECT_TRUE(has(msg, "adam_v")) << msg;
  EXPECT_TRUE(
      has(error_of([&] { save_checkpoint(d.file("e.ckpt"), CheckpointData{}); }), "no parameters"));
  EXPECT_EQ(ckpt_test::list_dir(d.path()), std::vector<std::string>{"s.ckpt"});
  EXPECT_TRUE(has(error_of([&] { load_checkpoint(d.file("missing.ckpt")); }), "missing.ckpt"));
}

TEST(Checkpoint, HeaderSizeMismatchBetweenSectionsIsRejected) {
  // A crafted header whose adam_m is shorter than params, with valid CRCs.
  ckpt_test::TempDir d;
  const std::string path = d.file("h.ckpt");
  std::vector<float> p(16, 1.0f), m(8, 2.0f);
  json sections = json::array();
  std::string data;
  uint64_t base = 1024;
  for (auto [name, vec] :
       {std::pair{"params", &p}, std::pair{"adam_m", &m}, std::pair{"adam_v", &m}}) {
    uint64_t off = base + data.size();
    sections.push_back({{"name", name},
                        {"dtype", "f32"},
                        {"numel", vec->size()},
                        {"offset", off},
                        {"bytes", vec->size() * 4},
                        {"crc32", crc32_update(0, vec->data(), vec->size() * 4)}});
    data.append(reinterpret_cast<const char*>(vec->data()), vec->size() * 4);
    data.resize((data.size() + 63) / 64 * 64, '\0');
  }
  std::string header = json{{"meta", json::object()}, {"sections", sections}}.dump();
  std::string bytes("TLCKPT\0\0", 8);
  uint32_t version = 2, header_crc = crc32_update(0, header.data(), header.size());
  uint64_t len = header.size();
  bytes.append(reinterpret_cast<const char*>(&version), 4);
  bytes.append(reinterpret_cast<const char*>(&header_crc), 4);
  bytes.append(reinterpret_cast<const char*>(&len), 8);
  bytes += header;
  ASSERT_LE(bytes.size(), base);
  bytes.resize(base, '\0');
  bytes += data;
  ckpt_test::write_bytes(path, bytes);
  std::string msg = error_of([&] { load_checkpoint(path); });
  EXPECT_TRUE(has(msg, "do not match params")) << msg;
}

// Issue #18: version-1 files (no header CRC) were read with the header unchecked.
TEST(Checkpoint, VersionOneFilesAreRefusedNamingTheVersion) {
  ckpt_test::TempDir d;
  const std::string path = d.file("v1.ckpt");
  save_checkpoint(path, ck_sample(100, true));
  std::string bytes = ckpt_test::read_bytes(path);
  bytes[8] = 1;  // as version 1 wrote it: version 1, 0 where the header CRC is now
  std::memset(bytes.data() + 12, 0, 4);
  ckpt_test::write_bytes(path, bytes);
  for (const std::string& msg :
       {error_of([&] { load_checkpoint(path); }), error_of([&] { read_checkpoint_meta(path); })})
    EXPECT_TRUE(has(msg, path) && has(msg, "format version 1") && has(msg, "no CRC-32")) << msg;
}

// What checkpoint.h promises and no more: a load verifies the sections it reads. A byte
// flipped in adam_m is found by a load with the optimizer state, not by one without it.
TEST(Checkpoint, SectionsAreVerifiedWhenTheyAreRead) {
  ckpt_test::TempDir d;
  const std::string path = d.file("m.ckpt");
  CheckpointData in = ck_sample(300, true);
  save_checkpoint(path, in);
  std::string bytes = ckpt_test::read_bytes(path);
  const uint64_t off = ck_section(ck_header(bytes), "adam_m")["offset"].get<uint64_t>();
  bytes[off + 17] = char(bytes[off + 17] ^ 0x10);
  ckpt_test::write_bytes(path, bytes);
  CheckpointData model = load_checkpoint(path, /*with_optimizer=*/false);
  EXPECT_TRUE(ckpt_test::bit_equal(model.params, in.params));
  const std::string msg = error_of([&] { load_checkpoint(path, true); });
  EXPECT_TRUE(has(msg, path) && has(msg, "section 'adam_m'") && has(msg, "CRC-32")) << msg;
}

// ---- Partial reads (a rank resuming from a set saved under another sharding) ----

namespace {
constexpr uint64_t kBlock = 1 << 20;  // checkpoint.h: block_bytes of a file written today

// Rewrites path's header through edit (same length: padded with spaces, new CRC).
void edit_header(const std::string& path, const std::function<void(json&)>& edit) {
  std::string bytes = ckpt_test::read_bytes(path);
  uint64_t len = 0;
  json h = ck_header(bytes, &len);
  edit(h);
  std::string text = h.dump();
  ASSERT_LE(text.size(), len);
  text.resize(len, ' ');
  const uint32_t crc = crc32_update(0, text.data(), text.size());
  std::memcpy(bytes.data() + 12, &crc, 4);
  bytes.replace(24, len, text);
  ckpt_test::write_bytes(path, bytes);
}
}  // namespace

TEST(Checkpoint, SectionsCarryACrcPerMegabyteBlock) {
  ckpt_test::TempDir d;
  const std::string path = d.file("b.ckpt");
  CheckpointData in = ck_sample(700000, true);  // 2.8 MB a section: 3 blocks, the last short
  save_checkpoint(path, in);
  const json h = ck_header(ckpt_test::read_bytes(path));
  for (const auto& [name, vec] : {std::pair{"params", &in.params}, std::pair{"adam_m", &in.adam_m},
                                  std::pair{"adam_v", &in.adam_v}}) {
    const json s = ck_section(h, name);
    EXPECT_EQ(s["block_bytes"], kBlock) << name;
    ASSERT_EQ(s["block_crc32"].size(), 3u) << name;
    const auto* p = reinterpret_cast<const uint8_t*>(vec->data());
    for (uint64_t b = 0; b < 3; ++b) {
      const uint64_t len = std::min<uint64_t>(kBlock, vec->size() * 4 - b * kBlock);
      EXPECT_EQ(s["block_crc32"][b], crc32_update(0, p + b * kBlock, len)) << name << " " << b;
    }
    // The whole-section CRC (combined from the blocks) is still the CRC of the section.
    EXPECT_EQ(s["crc32"], crc32_update(0, p, vec->size() * 4)) << name;
  }
}

TEST(Checkpoint, RangedReadsReadAndVerifyOnlyTheirBlocks) {
  ckpt_test::TempDir d;
  const std::string path = d.file("r.ckpt");
  const size_t n = 2 * 1000 * 1000;  // 8 MB a section: 8 blocks
  CheckpointData in = ck_sample(n, true);
  save_checkpoint(path, in);
  // Two ranges: one inside block 0, one across blocks 3 and 4; out-of-order on purpose.
  const std::vector<ValueRange> ranges = {{3 * 262144 + 1000, 100, 300000}, {10, 0, 100}};
  auto read = [&](uint64_t* bytes) {
    CheckpointData out;
    out.params.assign(300100, 0.0f);
    out.adam_m = out.adam_v = out.params;
    *bytes = read_checkpoint_ranges(path, ranges, out);
    return out;
  };
  uint64_t bytes = 0;
  CheckpointData out = read(&bytes);
  for (const ValueRange& r : ranges)
    for (uint64_t i = 0; i < r.len; ++i) {
      ASSERT_EQ(std::memcmp(&out.params[r.dst + i], &in.params[r.src + i], 4), 0) << i;
      ASSERT_EQ(out.adam_m[r.dst + i], in.adam_m[r.src + i]) << i;
      ASSERT_EQ(out.adam_v[r.dst + i], in.adam_v[r.src + i]) << i;
    }
  EXPECT_EQ(out.meta, in.meta);
  // Blocks 0, 3 and 4 of each section and the header: not the 24 MB of the file.
  uint64_t header_len = 0;
  ck_header(ckpt_test::read_bytes(path), &header_len);
  EXPECT_EQ(bytes, 24 + header_len + 3 * 3 * kBlock);

  // Damage in a block no range touches goes unseen; damage in a block read is an error
  // naming the file, the section and the block.
  const std::string good = ckpt_test::read_bytes(path);
  const uint64_t off = ck_section(ck_header(good), "adam_v")["offset"];
  std::string bad = good;
  bad[off + 6 * kBlock + 5] ^= 0x01;
  ckpt_test::write_bytes(path, bad);
  EXPECT_NO_THROW(read(&bytes));
  bad = good;
  bad[off + 4 * kBlock + 5] ^= 0x01;
  ckpt_test::write_bytes(path, bad);
  const std::string msg = error_of([&] { read(&bytes); });
  EXPECT_TRUE(has(msg, path) && has(msg, "'adam_v'") && has(msg, "block 4")) << msg;

  // A range past the section is refused before anything is read.
  ckpt_test::write_bytes(path, good);
  CheckpointData small;
  small.params.assign(10, 0.0f);
  small.adam_m = small.adam_v = small.params;
  EXPECT_TRUE(has(error_of([&] {
                    read_checkpoint_ranges(path, {{n - 5, 0, 10}}, small);
                  }),
                  "asked of a section of"));
}

TEST(Checkpoint, FilesWithoutBlockCrcsAreReadWholeSectionAtATime) {
  ckpt_test::TempDir d;
  const std::string path = d.file("old.ckpt");
  const size_t n = 600000;
  CheckpointData in = ck_sample(n, true);
  save_checkpoint(path, in);
  edit_header(path, [](json& h) {  // as written before 2026-12-05
    for (json& s : h["sections"]) s.erase("block_bytes"), s.erase("block_crc32");
  });
  CheckpointData out;
  out.params.assign(10, 0.0f);
  out.adam_m = out.adam_v = out.params;
  const uint64_t bytes = read_checkpoint_ranges(path, {{5, 0, 10}}, out);
  EXPECT_GE(bytes, 3 * n * 4);  // every section whole: its CRC is all there is to check
  for (int i = 0; i < 10; ++i) EXPECT_EQ(out.adam_v[size_t(i)], in.adam_v[size_t(5 + i)]);
  const CheckpointData whole = load_checkpoint(path);  // the plain load is unchanged
  EXPECT_TRUE(ckpt_test::bit_equal(whole.params, in.params));
  EXPECT_TRUE(ckpt_test::bit_equal(whole.adam_v, in.adam_v));
}

TEST(Checkpoint, BlockCrcListsAreChecked) {
  ckpt_test::TempDir d;
  const std::string path = d.file("bl.ckpt");
  save_checkpoint(path, ck_sample(300000, true));  // 1.2 MB: 2 blocks a section
  const std::string good = ckpt_test::read_bytes(path);
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& s) { s["block_crc32"].erase(1); }, "one CRC-32 per block"},
      {[](json& s) { s["block_bytes"] = 1000; }, "block_bytes 1000"},
      {[](json& s) { s["block_crc32"][0] = -1; }, "not a CRC-32"},
      {[](json& s) { s.erase("block_bytes"); }, "block_bytes"},
  };
  for (const auto& c : cases) {
    ckpt_test::write_bytes(path, good);
    edit_header(path, [&](json& h) { c.first(h["sections"][1]); });
    const std::string msg = error_of([&] { load_checkpoint(path); });
    EXPECT_TRUE(has(msg, path) && has(msg, "'adam_m'") && has(msg, c.second)) << msg;
  }
}
