#include "data/parquet/snappy.h"

#include <cstring>

#include "core/error.h"

namespace tl {

namespace {

size_t read_varint(const uint8_t* src, size_t n, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    TL_CHECK(pos < n, "snappy: truncated length");
    const uint8_t b = src[pos++];
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return size_t(v);
  }
  fail("snappy: length varint too long");
}

uint32_t read_le(const uint8_t* p, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}

}  // namespace

size_t snappy_length(const uint8_t* src, size_t n) {
  size_t pos = 0;
  return read_varint(src, n, pos);
}

void snappy_decompress(const uint8_t* src, size_t n, size_t expected, std::string& out) {
  size_t pos = 0;
  const size_t total = read_varint(src, n, pos);
  TL_CHECK(total == expected, "snappy: ", total, " bytes, expected ", expected);
  // The densest element is a 3-byte copy of 64 bytes: n bytes never expand beyond 22 n.
  // Checked before the output is allocated, so a lying length costs no memory.
  TL_CHECK(total / 22 <= n - pos, "snappy: ", n, " compressed bytes announce ", total,
           " bytes, more than they can expand to");
  out.resize(total);
  char* dst = out.data();
  size_t written = 0;
  while (pos < n) {
    const uint8_t tag = src[pos++];
    if ((tag & 3) == 0) {  // literal: length-1 in the tag, or in 1..4 following bytes
      size_t len = tag >> 2;
      if (len >= 60) {
        const int bytes = int(len) - 59;
        TL_CHECK(pos + size_t(bytes) <= n, "snappy: truncated literal length");
        len = read_le(src + pos, bytes);
        pos += size_t(bytes);
      }
      len += 1;
      TL_CHECK(len <= n - pos, "snappy: literal runs past the input");
      TL_CHECK(len <= total - written, "snappy: literal runs past the announced length");
      std::memcpy(dst + written, src + pos, len);
      pos += len;
      written += len;
      continue;
    }
    // Back-references: (length, offset) from the tag and 1, 2 or 4 offset bytes.
    size_t len, offset;
    if ((tag & 3) == 1) {
      TL_CHECK(pos + 1 <= n, "snappy: truncated copy");
      len = 4 + ((tag >> 2) & 7);
      offset = (size_t(tag >> 5) << 8) | src[pos];
      pos += 1;
    } else {
      const int bytes = (tag & 3) == 2 ? 2 : 4;
      TL_CHECK(pos + size_t(bytes) <= n, "snappy: truncated copy");
      len = size_t(tag >> 2) + 1;
      offset = read_le(src + pos, bytes);
      pos += size_t(bytes);
    }
    TL_CHECK(offset > 0 && offset <= written, "snappy: copy offset ", offset, " outside the ",
             written, " bytes written");
    TL_CHECK(len <= total - written, "snappy: copy runs past the announced length");
    // Byte by byte: an offset shorter than the length repeats the last bytes.
    for (size_t i = 0; i < len; ++i) dst[written + i] = dst[written - offset + i];
    written += len;
  }
  TL_CHECK(written == total, "snappy: ", written, " bytes decoded, ", total, " announced");
}

}  // namespace tl
