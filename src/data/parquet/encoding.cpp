#include "data/parquet/encoding.h"

#include <algorithm>

namespace tl::parquet {

uint32_t load_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Values packed LSB-first at `width` bits each (width <= 32).
uint32_t unpack(const uint8_t* p, uint64_t i, int width) {
  uint64_t bit = i * uint64_t(width), v = 0;
  const uint8_t* q = p + bit / 8;
  for (int k = 0, need = int(bit % 8) + width; k * 8 < need; ++k) v |= uint64_t(q[k]) << (8 * k);
  return uint32_t((v >> (bit % 8)) & ((uint64_t(1) << width) - 1));
}

uint64_t varint(const uint8_t*& p, const uint8_t* end) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    TL_CHECK(p < end, "varint runs past the end of the page");
    const uint8_t b = *p++;
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  fail("varint longer than 10 bytes");
}

// The RLE / bit-packing hybrid: n values of `width` bits into out.
const uint8_t* decode_hybrid(const uint8_t* p, const uint8_t* end, int width, size_t n,
                             std::vector<uint32_t>& out) {
  TL_CHECK(width >= 0 && width <= 32, "bit width ", width, " above 32");
  out.clear();
  while (out.size() < n) {
    const uint64_t h = varint(p, end);
    if (h & 1) {  // bit-packed: (h >> 1) groups of 8 values
      const uint64_t count = (h >> 1) * 8, take = std::min<uint64_t>(count, n - out.size());
      const uint64_t run_bytes = (h >> 1) * uint64_t(width);
      const uint64_t need = (take * uint64_t(width) + 7) / 8;
      TL_CHECK(need <= uint64_t(end - p), "bit-packed run past the end of the page");
      for (uint64_t i = 0; i < take; ++i) out.push_back(width ? unpack(p, i, width) : 0);
      p += std::min<uint64_t>(run_bytes, uint64_t(end - p));
    } else {  // repeated: one value in ceil(width / 8) bytes
      const uint64_t count = h >> 1;
      const int nb = (width + 7) / 8;
      TL_CHECK(nb <= end - p, "RLE run past the end of the page");
      uint32_t v = 0;
      for (int k = 0; k < nb; ++k) v |= uint32_t(p[k]) << (8 * k);
      p += nb;
      TL_CHECK(count > 0, "empty RLE run");
      out.insert(out.end(), std::min<uint64_t>(count, n - out.size()), v);
    }
  }
  return p;
}

// DELTA_BINARY_PACKED: n values into out; returns the end of the encoded data.
const uint8_t* decode_delta(const uint8_t* p, const uint8_t* end, uint64_t max_count,
                            std::vector<int64_t>& out) {
  const uint64_t block = varint(p, end), miniblocks = varint(p, end), total = varint(p, end);
  const uint64_t z = varint(p, end);
  int64_t v = int64_t(z >> 1) ^ -int64_t(z & 1);
  // Block sizes beyond 2^31 would overflow the miniblock size below (writers use 128-1024).
  TL_CHECK(miniblocks > 0 && block % 128 == 0 && block > 0 && block <= (uint64_t(1) << 31) &&
               miniblocks <= block && (block / miniblocks) % 32 == 0,
           "bad DELTA_BINARY_PACKED header (block ", block, ", miniblocks ", miniblocks, ")");
  TL_CHECK(total <= max_count, "DELTA_BINARY_PACKED holds ", total, " values, the page ",
           max_count);
  out.clear();
  if (total == 0) return p;
  out.push_back(v);
  const uint64_t per_mini = block / miniblocks;
  while (out.size() < total) {
    const uint64_t zd = varint(p, end);
    const int64_t min_delta = int64_t(zd >> 1) ^ -int64_t(zd & 1);
    TL_CHECK(uint64_t(end - p) >= miniblocks, "DELTA_BINARY_PACKED block past the end of the page");
    const uint8_t* widths = p;
    p += miniblocks;
    for (uint64_t m = 0; m < miniblocks && out.size() < total; ++m) {
      const int w = widths[m];
      TL_CHECK(w <= 64, "DELTA_BINARY_PACKED bit width ", w);
      const uint64_t mb_bytes = per_mini * uint64_t(w) / 8;
      TL_CHECK(mb_bytes <= uint64_t(end - p),
               "DELTA_BINARY_PACKED miniblock past the end of the page");
      const uint64_t take = std::min<uint64_t>(per_mini, total - out.size());
      for (uint64_t i = 0; i < take; ++i) {
        uint64_t d = 0;  // widths above 32 in two halves
        if (w <= 32)
          d = w ? unpack(p, i, w) : 0;
        else
          for (int b = 0; b < w; ++b)
            d |= uint64_t((p[(i * w + b) / 8] >> ((i * w + b) % 8)) & 1) << b;
        v = int64_t(uint64_t(v) + uint64_t(min_delta) + d);
        out.push_back(v);
      }
      p += mb_bytes;
    }
  }
  return p;
}

}  // namespace tl::parquet
