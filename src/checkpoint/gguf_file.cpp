// The GGUF container: writer (streamed, atomic) and reader (mapped, validated on open).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "checkpoint/gguf.h"
#include "core/error.h"
#include "core/fs.h"

namespace tl::gguf {

static_assert(std::endian::native == std::endian::little, "GGUF is little-endian");

namespace {

size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::Bool: return 1;
    case ValueType::U16:
    case ValueType::I16: return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32: return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64: return 8;
    default: return 0;  // String, Array
  }
}

bool is_unsigned(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64 ||
         t == ValueType::Bool;
}
bool is_signed(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}

// ---- writing ----

struct Out {
  std::FILE* f;
  const std::string& path;
  uint64_t written = 0;
  void bytes(const void* p, size_t n) {
    write_all(f, p, n, path);
    written += n;
  }
  template <class T>
  void pod(T v) {
    bytes(&v, sizeof v);
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void zeros(uint64_t n) {
    static const char z[64] = {};
    while (n > 0) {
      const size_t k = size_t(std::min<uint64_t>(n, sizeof z));
      bytes(z, k);
      n -= k;
    }
  }
};

void write_scalar(Out& o, ValueType t, uint64_t u, int64_t i, double f) {
  switch (t) {
    case ValueType::U8:
    case ValueType::Bool: o.pod<uint8_t>(uint8_t(u)); break;
    case ValueType::I8: o.pod<int8_t>(int8_t(i)); break;
    case ValueType::U16: o.pod<uint16_t>(uint16_t(u)); break;
    case ValueType::I16: o.pod<int16_t>(int16_t(i)); break;
    case ValueType::U32: o.pod<uint32_t>(uint32_t(u)); break;
    case ValueType::I32: o.pod<int32_t>(int32_t(i)); break;
    case ValueType::F32: o.pod<float>(float(f)); break;
    case ValueType::U64: o.pod<uint64_t>(u); break;
    case ValueType::I64: o.pod<int64_t>(i); break;
    case ValueType::F64: o.pod<double>(f); break;
    default: TL_ASSERT(false);
  }
}

void write_value(Out& o, const Value& v) {
  o.pod<uint32_t>(uint32_t(v.type));
  if (v.type == ValueType::String) return o.str(v.s);
  if (v.type != ValueType::Array) return write_scalar(o, v.type, v.u, v.i, v.f);
  o.pod<uint32_t>(uint32_t(v.elem));
  if (v.elem == ValueType::String) {
    o.pod<uint64_t>(v.strs.size());
    for (const auto& s : v.strs) o.str(s);
    return;
  }
  o.pod<uint64_t>(v.nums.size());
  // Only the conversion the element type uses (a negative double cast to uint64 is undefined).
  const bool u = is_unsigned(v.elem), i = is_signed(v.elem);
  for (double d : v.nums) write_scalar(o, v.elem, u ? uint64_t(d) : 0, i ? int64_t(d) : 0, d);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// ---- reading ----

// A cursor over the mapped bytes that names the file and the item being read on any overrun.
class In {
 public:
  In(const uint8_t* p, uint64_t size, const std::string& path)
      : base_(p), size_(size), path_(path) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, const std::string& what) const {
    TL_CHECK(n <= left(), "GGUF '", path_, "' is truncated: ", what, " needs ", n,
             " bytes at offset ", pos_, ", only ", left(), " remain");
  }
  template <class T>
  T pod(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t n = pod<uint64_t>(what + " length");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), size_t(n));
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* base_;
  uint64_t size_, pos_ = 0;
  const std::string& path_;
};

ValueType read_type(In& in, const std::string& path, const std::string& what) {
  const uint32_t t = in.pod<uint32_t>(what);
  TL_CHECK(t <= uint32_t(ValueType::F64), "GGUF '", path, "': ", what, " has unknown value type ",
           t);
  return ValueType(t);
}

void read_scalar(In& in, ValueType t, uint64_t& u, int64_t& i, double& f, const std::string& what) {
  switch (t) {
    case ValueType::U8: u = in.pod<uint8_t>(what); break;
    case ValueType::Bool: u = in.pod<uint8_t>(what) != 0; break;
    case ValueType::I8: i = in.pod<int8_t>(what); break;
    case ValueType::U16: u = in.pod<uint16_t>(what); break;
    case ValueType::I16: i = in.pod<int16_t>(what); break;
    case ValueType::U32: u = in.pod<uint32_t>(what); break;
    case ValueType::I32: i = in.pod<int32_t>(what); break;
    case ValueType::F32: f = in.pod<float>(what); break;
    case ValueType::U64: u = in.pod<uint64_t>(what); break;
    case ValueType::I64: i = in.pod<int64_t>(what); break;
    case ValueType::F64: f = in.pod<double>(what); break;
    default: TL_ASSERT(false);
  }
}

Value read_value(In& in, const std::string& path, const std::string& key) {
  Value v;
  const std::string what = "metadata '" + key + "'";
  v.type = read_type(in, path, what + " type");
  if (v.type == ValueType::String) {
    v.s = in.str(what);
    return v;
  }
  if (v.type != ValueType::Array) {
    read_scalar(in, v.type, v.u, v.i, v.f, what);
    return v;
  }
  v.elem = read_type(in, path, what + " element type");
  TL_CHECK(v.elem != ValueType::Array, "GGUF '", path, "': ", what,
           " is an array of arrays (not used by llama models; not supported)");
  const uint64_t n = in.pod<uint64_t>(what + " count");
  // Each element takes at least its scalar size (a string at least its 8-byte length).
  const uint64_t min_each = v.elem == ValueType::String ? 8 : scalar_size(v.elem);
  TL_CHECK(n <= in.left() / min_each, "GGUF '", path, "': ", what, " claims ", n,
           " elements, more than the ", in.left(), " bytes left can hold");
  if (v.elem == ValueType::String) {
    v.strs.reserve(size_t(n));
    for (uint64_t k = 0; k < n; ++k)
      v.strs.push_back(in.str(what + " element " + std::to_string(k)));
  } else {
    v.nums.reserve(size_t(n));
    for (uint64_t k = 0; k < n; ++k) {
      uint64_t u = 0;
      int64_t i = 0;
      double f = 0;
      read_scalar(in, v.elem, u, i, f, what);
      v.nums.push_back(is_unsigned(v.elem) ? double(u) : is_signed(v.elem) ? double(i) : f);
    }
  }
  return v;
}

}  // namespace

const char* value_type_name(ValueType t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) <= uint32_t(ValueType::F64) ? names[uint32_t(t)] : "?";
}

bool known_tensor_type(uint32_t t) {
  return t == uint32_t(TensorType::F32) || t == uint32_t(TensorType::F16) ||
         t == uint32_t(TensorType::Q8_0) || t == uint32_t(TensorType::BF16);
}

const char* tensor_type_name(uint32_t t) {
  switch (t) {
    case 0: return "F32";
    case 1: return "F16";
    case 8: return "Q8_0";
    case 30: return "BF16";
    default: return "an unsupported ggml type";
  }
}

uint64_t row_bytes(TensorType t, int64_t ne0) {
  switch (t) {
    case TensorType::F32: return uint64_t(ne0) * 4;
    case TensorType::F16:
    case TensorType::BF16: return uint64_t(ne0) * 2;
    case TensorType::Q8_0: return uint64_t(ne0 / kQ8BlockSize) * kQ8BlockBytes;
  }
  return 0;
}

Value Value::str_array(std::vector<std::string> v) {
  Value x;
  x.type = ValueType::Array;
  x.elem = ValueType::String;
  x.strs = std::move(v);
  return x;
}

Value Value::num_array(ValueType elem, std::vector<double> v) {
  TL_ASSERT(scalar_size(elem) > 0);
  for (double d : v)
    TL_CHECK(!(is_unsigned(elem) || is_signed(elem)) ||
                 (d == std::floor(d) && d >= (is_unsigned(elem) ? 0.0 : -9.2e18) && d <= 1.8e19),
             "GGUF array of ", value_type_name(elem), " cannot hold ", d);
  Value x;
  x.type = ValueType::Array;
  x.elem = elem;
  x.nums = std::move(v);
  return x;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

// ---- Writer ----

Writer::Writer(uint32_t alignment) : alignment_(alignment) {
  TL_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, "GGUF alignment ", alignment,
           " must be a power of two");
  set("general.alignment", Value::u32(alignment));
}

void Writer::set(const std::string& key, Value v) {
  for (auto& kv : meta_)
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  meta_.emplace_back(key, std::move(v));
}

void Writer::add_tensor(const std::string& name, std::vector<int64_t> dims, TensorType type,
                        DataFn data) {
  TL_CHECK(!dims.empty() && dims.size() <= 4, "GGUF tensor '", name, "': ", dims.size(),
           " dimensions (1 to 4)");
  for (int64_t d : dims)
    TL_CHECK(d > 0, "GGUF tensor '", name, "': dimension ", d, " is not positive");
  TL_CHECK(type != TensorType::Q8_0 || dims[0] % kQ8BlockSize == 0, "GGUF tensor '", name,
           "': rows of ", dims[0], " values cannot be stored as Q8_0 (blocks of ", kQ8BlockSize,
           ")");
  for (const auto& t : tensors_) TL_CHECK(t.name != name, "GGUF tensor '", name, "' added twice");
  TensorInfo t;
  t.name = name;
  t.dims = std::move(dims);
  t.type = uint32_t(type);
  t.bytes = row_bytes(type, t.dims[0]);
  for (size_t k = 1; k < t.dims.size(); ++k) t.bytes *= uint64_t(t.dims[k]);
  t.offset =
      tensors_.empty() ? 0 : align_up(tensors_.back().offset + tensors_.back().bytes, alignment_);
  tensors_.push_back(std::move(t));
  data_.push_back(std::move(data));
}

void Writer::write(const std::string& path) const {
  write_file_atomic(path, [&](std::FILE* f) {
    Out o{f, path};
    o.bytes("GGUF", 4);
    o.pod<uint32_t>(kVersion);
    o.pod<uint64_t>(tensors_.size());
    o.pod<uint64_t>(meta_.size());
    for (const auto& [key, v] : meta_) {
      o.str(key);
      write_value(o, v);
    }
    for (const auto& t : tensors_) {
      o.str(t.name);
      o.pod<uint32_t>(uint32_t(t.dims.size()));
      for (int64_t d : t.dims) o.pod<uint64_t>(uint64_t(d));
      o.pod<uint32_t>(t.type);
      o.pod<uint64_t>(t.offset);
    }
    o.zeros(align_up(o.written, alignment_) - o.written);
    const uint64_t data_start = o.written;
    for (size_t k = 0; k < tensors_.size(); ++k) {
      const TensorInfo& t = tensors_[k];
      o.zeros(data_start + t.offset - o.written);
      const long before = std::ftell(f);
      data_[k](f, t.bytes);
      TL_ASSERT(std::ftell(f) - before == long(t.bytes));
      o.written += t.bytes;
    }
  });
}

// ---- File ----

File::File(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TL_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'", path, "' is not a regular file");
  }
  size_ = uint64_t(st.st_size);
  if (size_ < 24) {
    ::close(fd);
    fail("'", path, "' is not a GGUF file: ", size_, " bytes, shorter than the 24-byte header");
  }
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  TL_CHECK(p != MAP_FAILED, "cannot map '", path, "': ", std::strerror(err));
  map_ = static_cast<const uint8_t*>(p);
  try {
    In in(map_, size_, path_);
    TL_CHECK(std::memcmp(map_, "GGUF", 4) == 0, "'", path,
             "' is not a GGUF file (magic is not \"GGUF\")");
    in.pod<uint32_t>("magic");
    version_ = in.pod<uint32_t>("version");
    TL_CHECK(version_ == 2 || version_ == 3, "GGUF '", path, "': version ", version_,
             " is not supported (2 and 3 are)");
    const uint64_t n_tensors = in.pod<uint64_t>("tensor count");
    const uint64_t n_meta = in.pod<uint64_t>("metadata count");
    // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
    // 8 + 4 + 8 + 4 + 8: bound the counts by the file before reserving anything.
    TL_CHECK(n_meta <= in.left() / 13, "GGUF '", path, "': metadata count ", n_meta,
             " is impossible for a ", size_, "-byte file");
    TL_CHECK(n_tensors <= in.left() / 32, "GGUF '", path, "': tensor count ", n_tensors,
             " is impossible for a ", size_, "-byte file");
    for (uint64_t k = 0; k < n_meta; ++k) {
      std::string key = in.str("metadata key " + std::to_string(k));
      TL_CHECK(!meta_index_.count(key), "GGUF '", path, "': metadata key '", key,
               "' appears twice");
      Value v = read_value(in, path, key);
      meta_index_[key] = meta_.size();
      meta_.emplace_back(std::move(key), std::move(v));
    }
    if (const Value* a = find("general.alignment")) {
      TL_CHECK(a->type == ValueType::U32 && a->u > 0 && (a->u & (a->u - 1)) == 0, "GGUF '", path,
               "': general.alignment must be a u32 power of two");
      alignment_ = uint32_t(a->u);
    }
    for (uint64_t k = 0; k < n_tensors; ++k) {
      TensorInfo t;
      t.name = in.str("tensor name " + std::to_string(k));
      const std::string what = "tensor '" + t.name + "'";
      TL_CHECK(!tensor_index_.count(t.name), "GGUF '", path, "': ", what, " appears twice");
      const uint32_t nd = in.pod<uint32_t>(what + " dimension count");
      TL_CHECK(nd >= 1 && nd <= 4, "GGUF '", path, "': ", what, " has ", nd,
               " dimensions (1 to 4)");
      for (uint32_t d = 0; d < nd; ++d) {
        const uint64_t n = in.pod<uint64_t>(what + " dimensions");
        TL_CHECK(n >= 1 && n <= (1ull << 40), "GGUF '", path, "': ", what, " dimension ", d, " is ",
                 n);
        t.dims.push_back(int64_t(n));
      }
      t.type = in.pod<uint32_t>(what + " type");
      t.offset = in.pod<uint64_t>(what + " offset");
      TL_CHECK(t.offset % alignment_ == 0, "GGUF '", path, "': ", what, " offset ", t.offset,
               " is not a multiple of the alignment ", alignment_);
      if (known_tensor_type(t.type)) {
        TL_CHECK(TensorType(t.type) != TensorType::Q8_0 || t.dims[0] % kQ8BlockSize == 0, "GGUF '",
                 path, "': ", what, " is Q8_0 with rows of ", t.dims[0],
                 " values (not a multiple of 32)");
        // Each dimension is below 2^40 and the product is checked step by step.
        unsigned __int128 bytes = row_bytes(TensorType(t.type), t.dims[0]);
        for (size_t d = 1; d < t.dims.size(); ++d) {
          bytes *= uint64_t(t.dims[d]);
          TL_CHECK(bytes <= size_, "GGUF '", path, "': ", what, " is larger than the file");
        }
        t.bytes = uint64_t(bytes);
      }
      tensor_index_[t.name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }
    data_start_ = align_up(in.pos(), alignment_);
    TL_CHECK(data_start_ <= size_, "GGUF '", path, "' is truncated before its data section");
    const uint64_t data_size = size_ - data_start_;
    for (const auto& t : tensors_)
      TL_CHECK(t.offset <= data_size && t.bytes <= data_size - t.offset, "GGUF '", path,
               "': tensor '", t.name, "' (", t.bytes, " bytes at offset ", t.offset,
               ") runs past the end of the file (data section of ", data_size, " bytes)");
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), size_);
    throw;
  }
}

File::~File() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

const Value* File::find(const std::string& key) const {
  auto it = meta_index_.find(key);
  return it == meta_index_.end() ? nullptr : &meta_[it->second].second;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> File::data(const TensorInfo& t) const {
  TL_CHECK(known_tensor_type(t.type), "GGUF '", path_, "': tensor '", t.name, "' has ggml type ",
           t.type, " (", tensor_type_name(t.type), "; F32, F16, BF16 and Q8_0 are read)");
  return {map_ + data_start_ + t.offset, size_t(t.bytes)};
}

uint64_t File::get_uint(const std::string& key) const {
  const Value* v = find(key);
  TL_CHECK(v, "GGUF '", path_, "' has no metadata '", key, "'");
  if (is_unsigned(v->type)) return v->u;
  TL_CHECK(is_signed(v->type) && v->i >= 0, "GGUF '", path_, "': metadata '", key,
           "' must be a non-negative integer, it is a ", value_type_name(v->type));
  return uint64_t(v->i);
}

double File::get_float(const std::string& key) const {
  const Value* v = find(key);
  TL_CHECK(v, "GGUF '", path_, "' has no metadata '", key, "'");
  TL_CHECK(v->type == ValueType::F32 || v->type == ValueType::F64, "GGUF '", path_, "': metadata '",
           key, "' must be a float, it is a ", value_type_name(v->type));
  return v->f;
}

std::string File::get_string(const std::string& key) const {
  const Value* v = find(key);
  TL_CHECK(v, "GGUF '", path_, "' has no metadata '", key, "'");
  TL_CHECK(v->type == ValueType::String, "GGUF '", path_, "': metadata '", key,
           "' must be a string, it is a ", value_type_name(v->type));
  return v->s;
}

}  // namespace tl::gguf
