#include "data/parquet/codec.h"
#include "data/parquet/snappy.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace tl::parquet {

bool codec_supported(Codec c) {
  return c == Codec::None || c == Codec::Snappy || c == Codec::Gzip || c == Codec::Zstd;
}

namespace {

// Grows the output as it comes, so a lying header costs no more memory than the data.
void inflate_gzip(const uint8_t* src, size_t n, size_t out_size, std::string& out) {
  z_stream z{};
  TL_CHECK(inflateInit2(&z, 15 + 32) == Z_OK,
           "gzip: cannot start zlib");  // +32: gzip or zlib header
  z.next_in = const_cast<Bytef*>(src);
  z.avail_in = uInt(n);
  out.resize(std::min<size_t>(out_size, 1 << 20));
  size_t produced = 0;
  int rc = Z_OK;
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    z.avail_out = uInt(out.size() - produced);
    rc = inflate(&z, Z_NO_FLUSH);
    produced = out.size() - z.avail_out;
    if (rc == Z_STREAM_END && z.avail_in > 0) {  // another gzip member follows
      inflateReset(&z);
      continue;
    }
    if (rc != Z_OK) break;
    if (z.avail_out == 0) {
      if (out.size() == out_size) break;  // full, yet more data: too long
      out.resize(std::min(out_size, out.size() * 2));
    } else if (z.avail_in == 0) {
      break;  // input ends without a stream end
    }
  }
  inflateEnd(&z);
  TL_CHECK(rc == Z_STREAM_END, "gzip: corrupt, truncated or longer than ", out_size,
           " bytes (zlib code ", rc, ")");
  TL_CHECK(produced == out_size, "gzip: ", produced, " bytes, expected ", out_size);
}

}  // namespace

void decompress(Codec c, const uint8_t* src, size_t n, size_t out_size, std::string& out) {
  // Sizes are checked against what the compressed data says before memory is taken, so
  // a corrupt page header cannot make us allocate gigabytes.
  switch (c) {
    case Codec::None:
      TL_CHECK(n == out_size, "uncompressed page of ", n, " bytes, header says ", out_size);
      out.assign(reinterpret_cast<const char*>(src), n);
      return;
    case Codec::Snappy:
      snappy_decompress(src, n, out_size, out);
      return;
    case Codec::Gzip:
      inflate_gzip(src, n, out_size, out);
      return;
    case Codec::Zstd: {
      const unsigned long long known = ZSTD_getFrameContentSize(src, n);
      TL_CHECK(known != ZSTD_CONTENTSIZE_ERROR, "zstd: corrupt data (no frame)");
      TL_CHECK(known == ZSTD_CONTENTSIZE_UNKNOWN || known <= out_size, "zstd: frame of ", known,
               " bytes, expected ", out_size);
      out.resize(out_size);
      size_t r = ZSTD_decompress(out.data(), out_size, src, n);
      TL_CHECK(!ZSTD_isError(r), "zstd: ", ZSTD_getErrorName(r));
      TL_CHECK(r == out_size, "zstd: ", r, " bytes, expected ", out_size);
      return;
    }
    default:
      fail("compression ", codec_name(c), " is not supported (none, snappy, gzip, zstd are)");
  }
}

}  // namespace tl::parquet
