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

// Streamed, frame by frame: a frame header's content size, when it has one, is a claim too
// (checked against out_size, never allocated on its word).
void inflate_zstd(const uint8_t* src, size_t n, size_t out_size, std::string& out) {
  const unsigned long long known = ZSTD_getFrameContentSize(src, n);
  TL_CHECK(known != ZSTD_CONTENTSIZE_ERROR, "zstd: corrupt data (no frame)");
  TL_CHECK(known == ZSTD_CONTENTSIZE_UNKNOWN || known <= out_size, "zstd: frame of ", known,
           " bytes, expected ", out_size);
  ZSTD_DCtx* z = ZSTD_createDCtx();
  TL_CHECK(z, "zstd: cannot start a decompression context");
  out.resize(std::min<size_t>(out_size, std::max<size_t>(n, 1 << 16)));
  ZSTD_inBuffer in{src, n, 0};
  size_t produced = 0, rc = 0;
  for (;;) {
    if (produced == out.size() && out.size() < out_size)
      out.resize(std::min(out_size, out.size() * 2));
    ZSTD_outBuffer ob{out.data(), out.size(), produced};
    const size_t in_before = in.pos, out_before = produced;
    rc = ZSTD_decompressStream(z, &ob, &in);
    produced = ob.pos;
    if (ZSTD_isError(rc) || (rc == 0 && in.pos == in.size)) break;  // an error, or all frames done
    // No progress: the input ends inside a frame, or the output is full at out_size.
    if (in.pos == in_before && produced == out_before) break;
  }
  ZSTD_freeDCtx(z);
  TL_CHECK(!ZSTD_isError(rc), "zstd: ", ZSTD_getErrorName(rc));
  TL_CHECK(rc == 0, "zstd: truncated, or longer than ", out_size, " bytes (", produced,
           " decoded)");
  TL_CHECK(produced == out_size, "zstd: ", produced, " bytes, expected ", out_size);
}

}  // namespace

// A page header's uncompressed size is only a claim: no codec allocates it up front. None
// must match the bytes there are, snappy's length is checked against the most its input can
// expand to, and gzip and zstd grow their output as it comes, so a lying header costs no
// more memory than the data really decodes to (twice that at most, 64 KiB at least for zstd).
void decompress(Codec c, const uint8_t* src, size_t n, size_t out_size, std::string& out) {
  switch (c) {
    case Codec::None:
      TL_CHECK(n == out_size, "uncompressed page of ", n, " bytes, header says ", out_size);
      out.assign(reinterpret_cast<const char*>(src), n);
      return;
    case Codec::Snappy: snappy_decompress(src, n, out_size, out); return;
    case Codec::Gzip: inflate_gzip(src, n, out_size, out); return;
    case Codec::Zstd: inflate_zstd(src, n, out_size, out); return;
    default:
      fail("compression ", codec_name(c), " is not supported (none, snappy, gzip, zstd are)");
  }
}

}  // namespace tl::parquet
