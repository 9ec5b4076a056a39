// bench/litpkds.py (the PyTorch reference trainer's reader) against the C++ loader: the same
// micro-batches in the same order over a mixture that crosses windows and epochs, and the same
// validation blocks. The Python side is an independent implementation of the order.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "data/loader.h"
#include "data/packed.h"
#include "data_test_util.h"

using namespace tl;

namespace {

bool have_python() { return std::system("python3 -c 'import json' >/dev/null 2>&1") == 0; }

// Shard k of a source holds ids base + k*1000 + j (mod 2^15 for u16 shards).
std::string lp_make_source(const dt::TempDir& tmp, const std::string& name, int base,
                           const std::vector<int>& sizes, int code) {
  const std::string dir = tmp / name;
  dt::write_text(dir + "/.keep", "");
  for (size_t k = 0; k < sizes.size(); ++k) {
    std::vector<int32_t> t(static_cast<size_t>(sizes[k]));
    for (size_t j = 0; j < t.size(); ++j) t[j] = int32_t((base + int(k) * 1000 + int(j)) % 32768);
    char file[32];
    std::snprintf(file, sizeof file, "/part_%02zu.bin", k);
    write_packed_file(dir + file, t, code, t.size());
  }
  return dir;
}

std::vector<std::vector<int32_t>> lp_python_rows(const std::string& args, const dt::TempDir& tmp) {
  const auto r = dt::run_command("python3 " TL_SOURCE_DIR "/bench/litpkds.py " + args, tmp.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  if (r.exit_code != 0) return {};
  return json::parse(r.out).get<std::vector<std::vector<int32_t>>>();
}

}  // namespace

TEST(LoaderPython, TheReferenceReaderYieldsTheTrainLoadersBatchesInOrder) {
  if (!have_python()) GTEST_SKIP() << "python3 not found: bench/litpkds.py cannot be checked";
  dt::TempDir tmp;
  // Odd shard sizes (tails unused, one shard without a whole block), windows of 2 shards,
  // 80 batches of 3 rows: several epochs of the small source, two of the large one.
  const std::string a = lp_make_source(tmp, "prose", 0, {61, 45, 9, 70, 33}, 4);
  const std::string b = lp_make_source(tmp, "code", 20000, {50, 50, 27}, 8);
  const int T = 7, B = 3, batches = 80;
  TrainLoaderOptions o;
  o.sources = {{"prose", {a}, 0.7}, {"code", {b}, 0.3}};
  o.seq_len = T;
  o.micro_batch = B;
  o.seed = 3407;
  o.shuffle_window = 2;
  TrainLoader loader(o);
  const auto rows =
      lp_python_rows("train --source prose=0.7:" + a + " --source code=0.3:" + b +
                         " --seq-len 7 --micro-batch 3 --seed 3407 --window 2 --batches 80",
                     tmp);
  ASSERT_EQ(rows.size(), size_t(B * batches));
  std::vector<int32_t> tokens(B * T), targets(B * T);
  int from_code = 0;
  for (int i = 0; i < batches; ++i) {
    loader.next(tokens.data(), targets.data());
    for (int r = 0; r < B; ++r) {
      const auto& row = rows[size_t(i * B + r)];
      ASSERT_EQ(row.size(), size_t(T + 1));
      from_code += row[0] >= 20000;
      for (int t = 0; t < T; ++t) {
        ASSERT_EQ(row[size_t(t)], tokens[size_t(r * T + t)]) << "batch " << i << " row " << r;
        ASSERT_EQ(row[size_t(t) + 1], targets[size_t(r * T + t)]) << "batch " << i << " row " << r;
      }
    }
  }
  EXPECT_GT(from_code, 30);  // the mixture really mixed
  EXPECT_LT(from_code, 120);
}

TEST(LoaderPython, TheReferenceReaderYieldsTheValidationBlocksInOrder) {
  if (!have_python()) GTEST_SKIP() << "python3 not found: bench/litpkds.py cannot be checked";
  dt::TempDir tmp;
  const std::string v = lp_make_source(tmp, "val", 5, {30, 4, 25}, 8);
  SequentialBlocks blocks({v}, 7);
  const auto rows = lp_python_rows("val --path " + v + " --seq-len 7 --blocks 100", tmp);
  ASSERT_EQ(int64_t(rows.size()), blocks.num_blocks());
  std::vector<int32_t> tokens(7), targets(7);
  for (int64_t i = 0; i < blocks.num_blocks(); ++i) {
    blocks.read(i, tokens.data(), targets.data());
    for (int t = 0; t < 7; ++t)
      ASSERT_EQ(rows[size_t(i)][size_t(t)], tokens[size_t(t)]) << "block " << i;
    ASSERT_EQ(rows[size_t(i)][7], targets[6]);
  }
}

TEST(LoaderPython, TheReferenceReaderRefusesAFileThatIsNotAShard) {
  if (!have_python()) GTEST_SKIP() << "python3 not found: bench/litpkds.py cannot be checked";
  dt::TempDir tmp;
  dt::write_text(tmp / "bad/x.bin", "not a shard at all, long enough to have a header");
  const auto r = dt::run_command("python3 " TL_SOURCE_DIR "/bench/litpkds.py val --path " +
                                     (tmp / "bad") + " --seq-len 3 --blocks 1",
                                 tmp.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("x.bin: not a LITPKDS shard"), std::string::npos) << r.err;
}
