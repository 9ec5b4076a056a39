// Packed shards: files built byte by byte from the format description, writer round trips
// and corrupt files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "data/packed.h"
#include "data_test_util.h"

using namespace tl;

namespace {

// "LITPKDS" | u64 version | u8 dtype code | u64 chunk_size | tokens, all little-endian,
// written here by hand (not with our writer).
std::string dt_shard_bytes(uint64_t version, uint8_t code, uint64_t chunk_size,
                           const std::vector<int64_t>& tokens, int itemsize) {
  std::string b = "LITPKDS";
  for (int i = 0; i < 8; ++i) b += char((version >> (8 * i)) & 0xff);
  b += char(code);
  for (int i = 0; i < 8; ++i) b += char((chunk_size >> (8 * i)) & 0xff);
  for (int64_t t : tokens)
    for (int i = 0; i < itemsize; ++i) b += char((uint64_t(t) >> (8 * i)) & 0xff);
  return b;
}

std::vector<int32_t> dt_read_all(const PackedShard& s) {
  std::vector<int32_t> out(s.num_tokens());
  s.read(0, s.num_tokens(), out.data());
  return out;
}

}  // namespace

TEST(DataPacked, ReadsHandBuiltFilesOfEveryIntegerType) {
  dt::TempDir tmp;
  struct Case {
    uint8_t code;
    int itemsize;
    std::vector<int64_t> tokens;
  };
  const std::vector<Case> cases = {
      {1, 1, {0, 1, 200, 255}},              // u8
      {2, 1, {0, 1, 100, 127}},              // i8
      {3, 2, {0, 2, 300, 32767}},            // i16
      {4, 4, {0, 2, 70000, 2147483647}},     // i32
      {5, 8, {0, 2, 31999, 1000000}},        // i64
      {8, 2, {0, 1, 2, 258, 31999, 65535}},  // u16, what Llama shards use
  };
  for (const auto& c : cases) {
    std::string path = tmp / ("code" + std::to_string(c.code) + ".bin");
    dt::write_text(path, dt_shard_bytes(1, c.code, c.tokens.size(), c.tokens, c.itemsize));
    PackedShard s(path);
    EXPECT_EQ(s.dtype_code(), c.code);
    EXPECT_EQ(s.chunk_size(), c.tokens.size());
    std::vector<int32_t> want(c.tokens.begin(), c.tokens.end());
    EXPECT_EQ(dt_read_all(s), want) << "code " << int(c.code);
    EXPECT_EQ(s.token(2), uint32_t(c.tokens[2]));
    std::vector<int32_t> mid(2);
    s.read(1, 2, mid.data());
    EXPECT_EQ(mid, std::vector<int32_t>(want.begin() + 1, want.begin() + 3));
    EXPECT_THROW(s.read(3, c.tokens.size(), mid.data()), Error);
  }
}

TEST(DataPacked, NegativeTokensAreRejectedOnRead) {
  dt::TempDir tmp;
  dt::write_text(tmp / "neg.bin", dt_shard_bytes(1, 3, 3, {5, -1, 7}, 2));
  PackedShard s(tmp / "neg.bin");
  std::vector<int32_t> out(3);
  DT_EXPECT_THROW_WITH(s.read(0, 3, out.data()), "neg.bin", "negative");
}

TEST(DataPacked, CorruptFilesNameTheProblem) {
  dt::TempDir tmp;
  auto expect_error = [&](const std::string& name, const std::string& bytes, const char* what) {
    dt::write_text(tmp / name, bytes);
    DT_EXPECT_THROW_WITH(PackedShard(tmp / name), name.c_str(), what);
  };
  std::string good = dt_shard_bytes(1, 8, 4, {1, 2, 3, 4}, 2);
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  expect_error("magic.bin", bad_magic, "magic");
  expect_error("version.bin", dt_shard_bytes(2, 8, 4, {1, 2, 3, 4}, 2), "version 2");
  expect_error("truncated.bin", good.substr(0, good.size() - 2), "truncated");
  expect_error("long.bin", good + "xx", "body has 10 bytes");
  expect_error("float.bin", dt_shard_bytes(1, 6, 1, {0}, 4), "not an integer");
  expect_error("code9.bin", dt_shard_bytes(1, 9, 1, {0}, 2), "unknown dtype code 9");
  expect_error("short.bin", "LITPKDS", "too short");
  DT_EXPECT_THROW_WITH(PackedShard(tmp / "absent.bin"), "absent.bin", "cannot open");
}

TEST(DataPacked, WriterRoundTripKeepsTheLastPartialChunk) {
  dt::TempDir tmp;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 25; ++i) tokens.push_back((i * 7919) % 32000);
  PackedWriter w(tmp / "out", "src", 32000, 10);
  w.add(tokens.data(), 3);  // odd pieces cross chunk boundaries
  w.add(tokens.data() + 3, 15);
  w.add(tokens.data() + 18, 7);
  w.finish();
  ASSERT_EQ(w.files().size(), 3u);
  EXPECT_EQ(w.tokens_written(), 25u);
  const uint64_t sizes[] = {10, 10, 5};
  std::vector<int32_t> all;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(std::filesystem::path(w.files()[i]).filename().string(),
              "src_0000" + std::to_string(i) + ".bin");
    PackedShard s(w.files()[i]);
    EXPECT_EQ(s.dtype_code(), 8);  // u16 for a 32000 vocabulary
    EXPECT_EQ(s.chunk_size(), sizes[i]);
    EXPECT_EQ(std::filesystem::file_size(w.files()[i]), 24 + 2 * sizes[i]);
    auto t = dt_read_all(s);
    all.insert(all.end(), t.begin(), t.end());
  }
  EXPECT_EQ(all, tokens);
}

TEST(DataPacked, WriterUsesI32ForLargeVocabulariesAndChecksIds) {
  dt::TempDir tmp;
  std::vector<int32_t> tokens = {0, 65535, 65536, 99999};
  PackedWriter w(tmp.path(), "big", 100000, 100);
  w.add(tokens.data(), tokens.size());
  int32_t bad[] = {100000};
  DT_EXPECT_THROW_WITH(w.add(bad, 1), "100000", "vocabulary");
  int32_t neg[] = {-3};
  EXPECT_THROW(w.add(neg, 1), Error);
  w.finish();
  ASSERT_EQ(w.files().size(), 1u);
  PackedShard s(w.files()[0]);
  EXPECT_EQ(s.dtype_code(), 4);
  EXPECT_EQ(dt_read_all(s), tokens);
  // A vocabulary of exactly 65536 still fits u16.
  PackedWriter w16(tmp.path(), "edge", 65536, 4);
  int32_t top[] = {65535};
  w16.add(top, 1);
  w16.finish();
  EXPECT_EQ(PackedShard(w16.files()[0]).dtype_code(), 8);
}

TEST(DataPacked, EmptyWriterWritesNothingAndUnfinishedLeavesNoPartialShard) {
  dt::TempDir tmp;
  {
    PackedWriter w(tmp.path(), "none", 32000, 8);
    w.finish();
    EXPECT_TRUE(w.files().empty());
  }
  {
    PackedWriter w(tmp.path(), "part", 32000, 8);
    int32_t t[3] = {1, 2, 3};
    w.add(t, 3);
  }  // destroyed without finish()
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

TEST(DataPacked, WritePackedFilePadsWithBosAndChecksRange) {
  dt::TempDir tmp;
  write_packed_file(tmp / "p.bin", {7, 8, 9}, 1, 5);
  std::string bytes = dt::read_text(tmp / "p.bin");
  EXPECT_EQ(bytes, dt_shard_bytes(1, 1, 5, {7, 8, 9, 1, 1}, 1));
  DT_EXPECT_THROW_WITH(write_packed_file(tmp / "q.bin", {300}, 1, 1), "300", "u8");
  DT_EXPECT_THROW_WITH(write_packed_file(tmp / "q.bin", {1}, 6, 1), "not an integer");
  DT_EXPECT_THROW_WITH(write_packed_file(tmp / "q.bin", {1, 2}, 8, 1), "do not fit");
  EXPECT_FALSE(std::filesystem::exists(tmp / "q.bin"));
}
