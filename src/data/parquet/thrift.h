// Reader of the Thrift compact protocol, the encoding of parquet's metadata: just enough
// to walk structs field by field, read scalars, strings and lists, and skip the rest.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tl::parquet {

// Compact-protocol type codes of a field or list element.
enum ThriftType : uint8_t {
  kStop = 0,
  kTrue = 1,
  kFalse = 2,
  kByte = 3,
  kI16 = 4,
  kI32 = 5,
  kI64 = 6,
  kDouble = 7,
  kBinary = 8,
  kList = 9,
  kSet = 10,
  kMap = 11,
  kStruct = 12,
};

// Thrown when the bytes end inside a value: the caller may retry with more bytes.
struct ThriftTruncated {};

class ThriftReader {
 public:
  ThriftReader(const uint8_t* data, size_t size) : p_(data), begin_(data), end_(data + size) {}
  size_t position() const { return size_t(p_ - begin_); }

  // Calls on_field(id, type) for each field of the struct at the cursor; on_field must
  // consume the value (read_* or skip(type)). Stops after the struct's STOP byte.
  template <class F>
  void read_struct(F&& on_field) {
    enter();
    int16_t last = 0;
    for (;;) {
      const uint8_t h = byte();
      if (h == kStop) break;
      const uint8_t type = h & 0x0f, delta = h >> 4;
      const int16_t id = delta ? int16_t(last + delta) : int16_t(zigzag(varint()));
      last = id;
      field_type_ = type;
      on_field(id, type);
    }
    --depth_;
  }
  // A list header: element count and element type; the elements follow.
  size_t read_list_header(uint8_t& elem_type);

  bool read_bool();  // a bool field's value (carried in its type code)
  int32_t read_i32() { return int32_t(zigzag(varint())); }
  int64_t read_i64() { return zigzag(varint()); }
  std::string_view read_binary();
  std::string read_string() { return std::string(read_binary()); }
  void skip(uint8_t type);

 private:
  uint8_t byte();
  uint64_t varint();
  static int64_t zigzag(uint64_t v) { return int64_t(v >> 1) ^ -int64_t(v & 1); }
  void enter();
  const uint8_t *p_, *begin_, *end_;
  uint8_t field_type_ = 0;
  int depth_ = 0;
};

}  // namespace tl::parquet
