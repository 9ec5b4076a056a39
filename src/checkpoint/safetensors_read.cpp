// safetensors reader: mmap, then validate the header completely before any access.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "checkpoint/safetensors.h"

namespace tl {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {
struct DTypeName {
  DType t;
  const char* name;
};
constexpr DTypeName kDTypes[] = {{DType::F32, "F32"}, {DType::BF16, "BF16"}, {DType::F16, "F16"},
                                 {DType::F64, "F64"}, {DType::I32, "I32"},   {DType::I64, "I64"},
                                 {DType::U16, "U16"}, {DType::U8, "U8"}};

// A JSON value that must be a non-negative integer; `what` names it for the message.
uint64_t json_uint(const json& v, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  TL_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, what,
           " must be a non-negative integer, got ", v.dump());
  return uint64_t(v.get<int64_t>());
}
}  // namespace

DType safetensors_dtype(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.t;
  fail("unsupported safetensors dtype '", name,
       "' (known: F32, BF16, F16, F64, I32, I64, U16, U8)");
}

const char* safetensors_dtype_name(DType t) {
  for (const auto& d : kDTypes)
    if (t == d.t) return d.name;
  return "?";
}

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TL_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("cannot stat '", path, "': ", std::strerror(err));
  }
  size_ = uint64_t(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail("'", path, "' is not a safetensors file: ", size_,
         " bytes, too short for the 8-byte header length");
  }
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  TL_CHECK(p != MAP_FAILED, "cannot map '", path, "': ", std::strerror(err));
  map_ = static_cast<const uint8_t*>(p);
  try {
    uint64_t header_len;
    std::memcpy(&header_len, map_, 8);
    parse_header(header_len);
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

void SafetensorsFile::parse_header(uint64_t header_len) {
  const std::string where = "'" + path_ + "'";
  TL_CHECK(header_len <= size_ - 8, where, ": header length ", header_len,
           " runs past the end of the file (", size_, " bytes)");
  const char* h = reinterpret_cast<const char*>(map_ + 8);
  json header;
  try {
    header = json::parse(h, h + header_len);
  } catch (const json::exception& e) {
    fail(where, ": header is not valid JSON: ", e.what());
  }
  TL_CHECK(header.is_object(), where, ": header must be a JSON object");
  data_ = map_ + 8 + header_len;
  const uint64_t data_size = size_ - 8 - header_len;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const json& v = it.value();
    if (it.key() == "__metadata__") {
      TL_CHECK(v.is_object(), where, ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m)
        TL_CHECK(m.value().is_string(), where, ": __metadata__ '", m.key(), "' must be a string");
      metadata_ = v;
      continue;
    }
    const std::string ctx = where + ": tensor '" + it.key() + "'";
    TL_CHECK(
        v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
        ctx, " needs dtype, shape and data_offsets, got ", v.dump());
    StTensorInfo t;
    t.name = it.key();
    TL_CHECK(v["dtype"].is_string(), ctx, ": dtype must be a string");
    try {
      t.dtype = safetensors_dtype(v["dtype"].get<std::string>());
    } catch (const Error& e) {
      fail(ctx, ": ", e.what());
    }
    TL_CHECK(v["shape"].is_array(), ctx, ": shape must be a list");
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      uint64_t n = json_uint(d, ctx + ": shape entry");
      TL_CHECK(n == 0 || numel <= (uint64_t(1) << 60) / n, ctx, ": shape is implausibly large");
      numel *= n;
      t.shape.push_back(int64_t(n));
    }
    const json& off = v["data_offsets"];
    TL_CHECK(off.is_array() && off.size() == 2, ctx, ": data_offsets must be [begin, end]");
    t.begin = json_uint(off[0], ctx + ": data_offsets[0]");
    t.end = json_uint(off[1], ctx + ": data_offsets[1]");
    TL_CHECK(t.begin <= t.end && t.end <= data_size, ctx, ": data_offsets [", t.begin, ", ", t.end,
             ") lie outside the data section (", data_size, " bytes)");
    uint64_t want = numel * dtype_size(t.dtype);
    TL_CHECK(t.end - t.begin == want, ctx, ": holds ", t.end - t.begin, " bytes but ",
             safetensors_dtype_name(t.dtype), t.shape_str(), " needs ", want);
    tensors_.push_back(std::move(t));
  }

  std::sort(tensors_.begin(), tensors_.end(), [](const StTensorInfo& a, const StTensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < tensors_.size(); ++i)
    TL_CHECK(tensors_[i].begin >= tensors_[i - 1].end, where, ": tensors '", tensors_[i - 1].name,
             "' and '", tensors_[i].name, "' overlap");
  std::sort(tensors_.begin(), tensors_.end(),
            [](const StTensorInfo& a, const StTensorInfo& b) { return a.name < b.name; });
}

const StTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it =
      std::lower_bound(tensors_.begin(), tensors_.end(), name,
                       [](const StTensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const StTensorInfo& SafetensorsFile::get(const std::string& name) const {
  const StTensorInfo* t = find(name);
  TL_CHECK(t, "'", path_, "' has no tensor '", name, "'");
  return *t;
}

std::span<const uint8_t> SafetensorsFile::bytes(const StTensorInfo& t) const {
  return {data_ + t.begin, size_t(t.end - t.begin)};
}

void SafetensorsFile::read_f32(const StTensorInfo& t, float* out, size_t n) const {
  TL_CHECK(uint64_t(t.numel()) == n, "'", path_, "': tensor '", t.name, "' has ", t.numel(),
           " elements, the caller expected ", n);
  const uint8_t* src = data_ + t.begin;  // only byte-aligned in general: memcpy each element
  const int64_t count = int64_t(n);
  switch (t.dtype) {
    case DType::F32: std::memcpy(out, src, n * 4); return;
    case DType::BF16: bf16_bytes_to_f32(src, count, out); return;
    case DType::F16: f16_bytes_to_f32(src, count, out); return;
    case DType::F64:
      for (int64_t i = 0; i < count; ++i) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        out[i] = float(d);
      }
      return;
    default:
      fail("'", path_, "': tensor '", t.name, "' has dtype ", safetensors_dtype_name(t.dtype),
           "; expected a float dtype (F32, BF16, F16)");
  }
}

}  // namespace tl
