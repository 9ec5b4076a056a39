#include "data/parquet/thrift.h"

#include "core/error.h"

namespace tl::parquet {

namespace {
constexpr int kMaxStructDepth = 64;  // nesting bound: corrupt input cannot recurse without end
}

uint8_t ThriftReader::byte() {
  if (p_ == end_) throw ThriftTruncated{};
  return *p_++;
}

uint64_t ThriftReader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const uint8_t b = byte();
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  fail("thrift: varint longer than 10 bytes");
}

void ThriftReader::enter() {
  TL_CHECK(++depth_ <= kMaxStructDepth, "thrift: structs nested deeper than ", kMaxStructDepth);
}

size_t ThriftReader::read_list_header(uint8_t& elem_type) {
  const uint8_t h = byte();
  elem_type = h & 0x0f;
  const uint64_t n = (h >> 4) == 15 ? varint() : uint64_t(h >> 4);
  // Every element takes at least a byte (bools too), so a count beyond the bytes left is corrupt.
  if (n > uint64_t(end_ - p_)) throw ThriftTruncated{};
  return size_t(n);
}

bool ThriftReader::read_bool() {
  TL_CHECK(field_type_ == kTrue || field_type_ == kFalse, "thrift: expected a bool, found type ",
           int(field_type_));
  return field_type_ == kTrue;
}

std::string_view ThriftReader::read_binary() {
  const uint64_t n = varint();
  if (n > uint64_t(end_ - p_)) throw ThriftTruncated{};
  std::string_view s(reinterpret_cast<const char*>(p_), size_t(n));
  p_ += n;
  return s;
}

void ThriftReader::skip(uint8_t type) {
  switch (type) {
    case kTrue:
    case kFalse: return;  // the value is in the type code (as a list element: one byte, below)
    case kByte: byte(); return;
    case kI16:
    case kI32:
    case kI64: varint(); return;
    case kDouble:
      for (int i = 0; i < 8; ++i) byte();
      return;
    case kBinary: read_binary(); return;
    case kList:
    case kSet: {
      uint8_t et;
      size_t n = read_list_header(et);
      enter();
      for (size_t i = 0; i < n; ++i) (et == kTrue || et == kFalse) ? void(byte()) : skip(et);
      --depth_;
      return;
    }
    case kMap: {
      const uint64_t n = varint();
      if (n == 0) return;
      const uint8_t kv = byte();
      if (n > uint64_t(end_ - p_)) throw ThriftTruncated{};
      enter();
      for (uint64_t i = 0; i < n; ++i)
        for (uint8_t t : {uint8_t(kv >> 4), uint8_t(kv & 0x0f)})
          (t == kTrue || t == kFalse) ? void(byte()) : skip(t);
      --depth_;
      return;
    }
    case kStruct: read_struct([&](int16_t, uint8_t t) { skip(t); }); return;
    default: fail("thrift: unknown type code ", int(type));
  }
}

}  // namespace tl::parquet
