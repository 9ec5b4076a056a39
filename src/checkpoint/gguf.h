// GGUF v3, the file format of llama.cpp and ollama (ggml's docs/gguf.md), little-endian:
//   "GGUF" | u32 version | u64 tensor count | u64 metadata count
//   | metadata: (string key, u32 value type, value)...
//   | tensor infos: (string name, u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type,
//                    u64 offset into the data section)...
//   | zero padding to general.alignment (default 32) | data section (each tensor aligned)
// A string is u64 length + bytes (no terminator); an array is u32 element type + u64 count +
// elements. The writer streams tensors through a callback, so a model never needs a second
// copy in memory; the reader maps the file and bounds every count and size by the bytes
// that are really there before it allocates anything.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace tl::gguf {

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
const char* value_type_name(ValueType t);

// ggml tensor types this project writes and reads (ggml.h numbers them; others are refused).
enum class TensorType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };
bool known_tensor_type(uint32_t t);
const char* tensor_type_name(uint32_t t);
constexpr int64_t kQ8BlockSize = 32;   // values per Q8_0 block
constexpr int64_t kQ8BlockBytes = 34;  // f16 scale + 32 x i8
// Bytes of a row of ne0 values (ne0 must be a multiple of 32 for Q8_0).
uint64_t row_bytes(TensorType t, int64_t ne0);

constexpr uint32_t kVersion = 3;
constexpr uint32_t kDefaultAlignment = 32;

// A metadata value. Scalars use the field of their kind; arrays hold strings or numbers
// (every number type of a GGUF array fits a double exactly except 64-bit integers above 2^53).
struct Value {
  ValueType type = ValueType::U32;
  ValueType elem = ValueType::U32;  // element type of an Array
  uint64_t u = 0;                   // U8/U16/U32/U64, Bool (0/1)
  int64_t i = 0;                    // I8/I16/I32/I64
  double f = 0;                     // F32/F64
  std::string s;                    // String
  std::vector<std::string> strs;    // Array of String
  std::vector<double> nums;         // Array of numbers/bools

  static Value u32(uint32_t v) {
    Value x;
    x.type = ValueType::U32;
    x.u = v;
    return x;
  }
  static Value i32(int32_t v) {
    Value x;
    x.type = ValueType::I32;
    x.i = v;
    return x;
  }
  static Value f32(float v) {
    Value x;
    x.type = ValueType::F32;
    x.f = v;
    return x;
  }
  static Value boolean(bool v) {
    Value x;
    x.type = ValueType::Bool;
    x.u = v;
    return x;
  }
  static Value str(std::string v) {
    Value x;
    x.type = ValueType::String;
    x.s = std::move(v);
    return x;
  }
  static Value str_array(std::vector<std::string> v);
  static Value num_array(ValueType elem, std::vector<double> v);  // F32, I32, U32, ...
  size_t size() const {
    return type == ValueType::String ? 0 : elem == ValueType::String ? strs.size() : nums.size();
  }
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // innermost first: a [rows, cols] matrix is {cols, rows}
  uint32_t type = 0;          // ggml type number
  uint64_t offset = 0;        // into the data section
  uint64_t bytes = 0;         // derived from dims and type
  int64_t numel() const;
};

// Writing: metadata in insertion order, then tensors in the order added.
class Writer {
 public:
  explicit Writer(uint32_t alignment = kDefaultAlignment);
  void set(const std::string& key, Value v);  // replaces an earlier value of the key
  // `write_data(f, bytes)` must write exactly `bytes` bytes (the size dims and type give).
  using DataFn = std::function<void(std::FILE*, uint64_t bytes)>;
  void add_tensor(const std::string& name, std::vector<int64_t> dims, TensorType type, DataFn data);
  // Atomic (core/fs.h): the final name holds either nothing new or the complete file.
  void write(const std::string& path) const;

 private:
  uint32_t alignment_;
  std::vector<std::pair<std::string, Value>> meta_;
  std::vector<TensorInfo> tensors_;
  std::vector<DataFn> data_;
};

// Reading: a read-only memory map, validated as a whole on open.
class File {
 public:
  explicit File(const std::string& path);  // throws naming the file and what is wrong
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return meta_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const Value* find(const std::string& key) const;
  const TensorInfo* find_tensor(const std::string& name) const;
  std::span<const uint8_t> data(const TensorInfo& t) const;

  // Typed metadata access; each throws naming the file and key when it is absent or of
  // another type (any unsigned/signed integer type converts when the value fits).
  uint64_t get_uint(const std::string& key) const;
  double get_float(const std::string& key) const;
  std::string get_string(const std::string& key) const;

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0, alignment_ = kDefaultAlignment;
  uint64_t data_start_ = 0;
  std::vector<std::pair<std::string, Value>> meta_;
  std::map<std::string, size_t> meta_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace tl::gguf
