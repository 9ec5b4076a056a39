// Page decompression (data/parquet/codec.cpp, snappy.cpp) in memory. Input: byte 0 picks
// the codec (none, snappy, gzip, zstd), bytes 1-4 the expected size (u32 LE, as a page
// header's uncompressed_page_size), the rest is the compressed page.
#include <string>

#include "data/parquet/codec.h"
#include "data/parquet/snappy.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  static const tl::parquet::Codec codecs[] = {tl::parquet::Codec::None, tl::parquet::Codec::Snappy,
                                              tl::parquet::Codec::Gzip, tl::parquet::Codec::Zstd};
  const tl::parquet::Codec c = codecs[data[0] % 4];
  const uint32_t expected = uint32_t(data[1]) | uint32_t(data[2]) << 8 | uint32_t(data[3]) << 16 |
                            uint32_t(data[4]) << 24;
  std::string out;
  tlfuzz::run([&] {
    tl::parquet::decompress(c, data + 5, size - 5, expected, out);
    if (out.size() != expected) __builtin_trap();  // success means exactly the announced size
  });
  tlfuzz::run([&] { (void)tl::snappy_length(data + 5, size - 5); });
  return 0;
}
