// Helpers of the report tests (test_report*.cpp): a PNG reader that checks every chunk and
// inflates the pixels, and a hand-written run folder.
#pragma once
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <string>

#include "core/fs.h"
#include "core/hash.h"
#include "core/json_reader.h"
#include "observe/plot_png.h"
#include "text_test_util.h"
#include "train_test_util.h"

namespace tl::report_test {

inline uint32_t be32(const std::string& s, size_t at) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + at);
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

struct Png {
  uint32_t width = 0, height = 0;
  uint8_t depth = 0, color_type = 0, interlace = 0;
  std::string raw;  // the inflated IDAT data: a filter byte, then the row, for every row
  Rgb at(int x, int y) const {  // 8-bit RGB, filter 0 rows only (what our writer makes)
    const size_t at = size_t(y) * (1 + 3 * width) + 1 + 3 * x;
    const auto* p = reinterpret_cast<const uint8_t*>(raw.data() + at);
    return {p[0], p[1], p[2]};
  }
};

// Signature, IHDR first, every chunk's CRC, IEND last, and IDAT data that inflates to the
// size IHDR promises.
inline void expect_valid_png(const std::string& path, Png* out = nullptr) {
  SCOPED_TRACE(path);
  const std::string b = train_test::read_text(path);
  ASSERT_GT(b.size(), 8u + 25u + 12u);
  EXPECT_EQ(b.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(be32(b, 8), 13u);  // IHDR comes first and holds 13 bytes
  EXPECT_EQ(b.substr(12, 4), "IHDR");
  Png png;
  png.width = be32(b, 16), png.height = be32(b, 20);
  png.depth = uint8_t(b[24]), png.color_type = uint8_t(b[25]), png.interlace = uint8_t(b[28]);
  EXPECT_GE(png.width, 200u);
  EXPECT_GE(png.height, 100u);
  std::string idat;
  size_t at = 8, chunks = 0;
  bool iend = false;
  while (!iend) {
    ASSERT_LE(at + 12, b.size()) << "chunk " << chunks << " runs past the end";
    const uint32_t len = be32(b, at);
    ASSERT_LE(at + 12 + len, b.size()) << "chunk " << chunks << " runs past the end";
    const std::string type = b.substr(at + 4, 4);
    EXPECT_EQ(be32(b, at + 8 + len), crc32_update(0, b.data() + at + 4, 4 + len)) << type;
    if (type == "IDAT") idat += b.substr(at + 8, len);
    iend = type == "IEND";
    at += 12 + len, chunks++;
  }
  EXPECT_EQ(at, b.size()) << "bytes after IEND";
  ASSERT_FALSE(idat.empty()) << "no IDAT";
  const int channels[] = {1, 0, 3, 1, 2, 0, 4};  // by colour type
  ASSERT_LE(png.color_type, 6);
  const size_t row = (size_t(png.width) * channels[png.color_type] * png.depth + 7) / 8 + 1;
  ASSERT_EQ(png.interlace, 0);  // neither gnuplot nor we interlace
  const size_t want = png.height * row;
  png.raw.resize(want + 1);  // room for one byte more than promised, to see it
  uLongf got = png.raw.size();
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(png.raw.data()), &got,
                       reinterpret_cast<const Bytef*>(idat.data()), idat.size()),
            Z_OK);
  png.raw.resize(got);
  EXPECT_EQ(got, want);
  if (out) *out = png;
}

inline bool gnuplot_installed() { return std::system("command -v gnuplot > /dev/null 2>&1") == 0; }

using ::text_test::has;

// Colours the report tests draw with (and look for in the pictures).
inline const Rgb kBlue{0, 94, 184}, kRed{214, 64, 24};

// Decodes a built-in plotter's picture: 8-bit RGB, filter 0 on every row.
inline Png read_builtin_png(const std::string& path) {
  Png png;
  expect_valid_png(path, &png);
  EXPECT_EQ(png.depth, 8);
  EXPECT_EQ(png.color_type, 2);
  if (png.raw.size() != png.height * (1 + 3 * size_t(png.width))) return {};
  for (uint32_t y = 0; y < png.height; ++y) EXPECT_EQ(png.raw[y * (1 + 3 * png.width)], 0) << y;
  return png;
}

inline size_t count(const Png& png, Rgb colour) {
  size_t n = 0;
  for (uint32_t y = 0; y < png.height; ++y)
    for (uint32_t x = 0; x < png.width; ++x) n += png.at(int(x), int(y)) == colour;
  return n;
}

// A run folder with a hand-written metrics.jsonl: steps 1..n, some values missing.
inline std::string write_run(const std::string& dir, int n) {
  make_dirs(dir);
  std::ofstream m(dir + "/metrics.jsonl");
  for (int i = 1; i <= n; ++i) {
    json j = {{"step", i},
              {"loss", 4.0 - 0.1 * i},
              {"lr", 1e-3},
              {"grad_norm", 2.0 / i},
              {"tokens_per_s", 1000 + 10 * i},
              {"mfu", 0.3},
              {"tokens", 64 * i},
              {"elapsed_seconds", 0.5 * i}};
    if (i == 3) j["loss"] = nullptr;   // a skipped step
    if (i == 4) j["grad_norm"] = 0.0;  // nothing to show on a log axis
    if (i == 5) j.erase("tokens_per_s");
    m << j.dump() << "\n";
    if (i % 4 == 0) m << json{{"step", i}, {"val_loss", 3.9 - 0.1 * i}}.dump() << "\n";
  }
  return dir;
}

}  // namespace tl::report_test
