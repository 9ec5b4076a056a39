#include "data/packed.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/fs.h"

namespace tl {

namespace {

constexpr char kMagic[7] = {'L', 'I', 'T', 'P', 'K', 'D', 'S'};
constexpr uint64_t kVersion = 1;

// Bytes per token of a dtype code; 0 for codes that are not in the format.
size_t itemsize(int code) {
  switch (code) {
    case 1:
    case 2: return 1;  // u8, i8
    case 3:
    case 8: return 2;  // i16, u16
    case 4:
    case 6: return 4;  // i32, f32
    case 5:
    case 7: return 8;  // i64, f64
    default: return 0;
  }
}

bool is_integral(int code) { return code != 6 && code != 7 && itemsize(code) != 0; }

template <class T>
T load_le(const uint8_t* p) {  // little-endian hosts only (x86-64, aarch64)
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Converts n tokens of type T to i32; returns false if one is outside [0, INT32_MAX].
template <class T>
bool convert(const uint8_t* src, uint64_t n, int32_t* out) {
  bool ok = true;
  for (uint64_t i = 0; i < n; ++i) {
    T v = load_le<T>(src + i * sizeof(T));
    if constexpr (std::is_signed_v<T> || sizeof(T) > 4) ok &= (v >= 0 && int64_t(v) <= INT32_MAX);
    out[i] = int32_t(v);
  }
  return ok;
}

template <class T>
void store_tokens(std::vector<uint8_t>& body, const std::vector<int32_t>& tokens) {
  body.resize(tokens.size() * sizeof(T));
  for (size_t i = 0; i < tokens.size(); ++i) {
    T v = T(tokens[i]);
    std::memcpy(body.data() + i * sizeof(T), &v, sizeof(T));
  }
}

}  // namespace

const char* packed_dtype_name(int code) {
  static const char* names[] = {"?", "u8", "i8", "i16", "i32", "i64", "f32", "f64", "u16"};
  return code >= 1 && code <= 8 ? names[code] : "?";
}

int packed_dtype_for_vocab(int vocab_size) { return vocab_size <= 65536 ? 8 : 4; }

size_t packed_itemsize(int code) { return itemsize(code); }

int packed_dtype_code(const std::string& name) {
  for (int c = 1; c <= 8; ++c)
    if (name == packed_dtype_name(c)) return c;
  return 0;
}

PackedHeader read_packed_header(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TL_CHECK(fd >= 0, "shard '", path, "': cannot open: ", std::strerror(errno));
  uint8_t h[kPackedHeaderBytes];
  const ssize_t n = ::pread(fd, h, sizeof h, 0);
  const off_t size = ::lseek(fd, 0, SEEK_END);
  ::close(fd);
  TL_CHECK(n == ssize_t(sizeof h), "shard '", path, "': ", size, " bytes, too short for the ",
           kPackedHeaderBytes, "-byte header");
  TL_CHECK(std::memcmp(h, kMagic, 7) == 0, "shard '", path,
           "': bad magic (not a LITPKDS packed dataset file)");
  const uint64_t version = load_le<uint64_t>(h + 7);
  TL_CHECK(version == kVersion, "shard '", path, "': version ", version, ", expected 1");
  PackedHeader out{h[15], load_le<uint64_t>(h + 16)};
  TL_CHECK(is_integral(out.dtype_code), "shard '", path, "': dtype code ", out.dtype_code,
           " is not an integer token type");
  const uint64_t item = itemsize(out.dtype_code), body = uint64_t(size) - kPackedHeaderBytes;
  TL_CHECK(out.chunk_size <= body / item && body == out.chunk_size * item, "shard '", path,
           "': header says ", out.chunk_size, " tokens of ", item, " bytes but the body has ", body,
           " bytes (truncated or corrupt)");
  return out;
}

PackedShard::PackedShard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TL_CHECK(fd >= 0, "shard '", path, "': cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("shard '", path, "': cannot stat: ", std::strerror(err));
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < kPackedHeaderBytes) {
    ::close(fd);
    fail("shard '", path, "': ", size, " bytes, too short for the ", kPackedHeaderBytes,
         "-byte header");
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  TL_CHECK(p != MAP_FAILED, "shard '", path, "': cannot map: ", std::strerror(err));
  map_ = static_cast<const uint8_t*>(p);
  map_bytes_ = size;
  try {
    TL_CHECK(std::memcmp(map_, kMagic, 7) == 0, "shard '", path,
             "': bad magic (not a LITPKDS packed dataset file)");
    uint64_t version = load_le<uint64_t>(map_ + 7);
    TL_CHECK(version == kVersion, "shard '", path, "': version ", version, ", expected 1");
    dtype_code_ = map_[15];
    TL_CHECK(itemsize(dtype_code_) != 0, "shard '", path, "': unknown dtype code ", dtype_code_);
    TL_CHECK(is_integral(dtype_code_), "shard '", path, "': dtype code ", dtype_code_, " (",
             packed_dtype_name(dtype_code_), ") is not an integer token type");
    chunk_size_ = load_le<uint64_t>(map_ + 16);
    const uint64_t body = size - kPackedHeaderBytes, item = itemsize(dtype_code_);
    TL_CHECK(chunk_size_ <= body / item && body == chunk_size_ * item, "shard '", path,
             "': header says ", chunk_size_, " tokens of ", item, " bytes (", chunk_size_ * item,
             " bytes) but the body has ", body, " bytes (truncated or corrupt)");
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
    throw;
  }
}

PackedShard::~PackedShard() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
}

uint32_t PackedShard::token(uint64_t i) const {
  int32_t v;
  read(i, 1, &v);
  return uint32_t(v);
}

void PackedShard::read(uint64_t begin, uint64_t n, int32_t* out) const {
  TL_CHECK(begin <= chunk_size_ && n <= chunk_size_ - begin, "shard '", path_, "': read of [",
           begin, ", ", begin + n, ") past its ", chunk_size_, " tokens");
  const uint8_t* src = map_ + kPackedHeaderBytes + begin * itemsize(dtype_code_);
  bool ok = true;
  switch (dtype_code_) {
    case 1: ok = convert<uint8_t>(src, n, out); break;
    case 2: ok = convert<int8_t>(src, n, out); break;
    case 3: ok = convert<int16_t>(src, n, out); break;
    case 4: ok = convert<int32_t>(src, n, out); break;
    case 5: ok = convert<int64_t>(src, n, out); break;
    case 8: ok = convert<uint16_t>(src, n, out); break;
    default: TL_ASSERT(false);
  }
  TL_CHECK(ok, "shard '", path_, "': a token in [", begin, ", ", begin + n,
           ") is negative or above 2^31-1");
}

void write_packed_file(const std::string& path, const std::vector<int32_t>& tokens, int dtype_code,
                       uint64_t chunk_size) {
  TL_CHECK(is_integral(dtype_code), "write_packed_file '", path, "': dtype code ", dtype_code,
           " is not an integer token type");
  TL_CHECK(tokens.size() <= chunk_size, "write_packed_file '", path, "': ", tokens.size(),
           " tokens do not fit chunk_size ", chunk_size);
  // lit-gpt fills the unused part of a chunk with the separator token (BOS = 1).
  std::vector<int32_t> padded = tokens;
  padded.resize(chunk_size, 1);
  const int64_t lo[9] = {0, 0, INT8_MIN, INT16_MIN, INT32_MIN, INT64_MIN, 0, 0, 0};
  const int64_t hi[9] = {0, UINT8_MAX, INT8_MAX, INT16_MAX, INT32_MAX, INT64_MAX, 0, 0, UINT16_MAX};
  for (int32_t t : padded)
    TL_CHECK(t >= lo[dtype_code] && t <= hi[dtype_code], "write_packed_file '", path, "': token ",
             t, " does not fit ", packed_dtype_name(dtype_code));
  std::vector<uint8_t> body;
  switch (dtype_code) {
    case 1: store_tokens<uint8_t>(body, padded); break;
    case 2: store_tokens<int8_t>(body, padded); break;
    case 3: store_tokens<int16_t>(body, padded); break;
    case 4: store_tokens<int32_t>(body, padded); break;
    case 5: store_tokens<int64_t>(body, padded); break;
    case 8: store_tokens<uint16_t>(body, padded); break;
  }
  uint8_t header[kPackedHeaderBytes];
  std::memcpy(header, kMagic, 7);
  std::memcpy(header + 7, &kVersion, 8);
  header[15] = uint8_t(dtype_code);
  std::memcpy(header + 16, &chunk_size, 8);
  write_file_atomic(path, [&](std::FILE* f) {
    write_all(f, header, sizeof header, path);
    write_all(f, body.data(), body.size(), path);
  });
}

// ---- PackedWriter ----

PackedWriter::PackedWriter(std::string dir, std::string prefix, int vocab_size,
                           uint64_t chunk_tokens)
    : dir_(std::move(dir)),
      prefix_(std::move(prefix)),
      dtype_code_(packed_dtype_for_vocab(vocab_size)),
      chunk_tokens_(chunk_tokens),
      vocab_size_(vocab_size) {
  TL_CHECK(vocab_size > 0, "packed writer: vocab_size must be positive, got ", vocab_size);
  TL_CHECK(chunk_tokens > 0, "packed writer: chunk size must be positive");
  make_dirs(dir_);
}

PackedWriter::~PackedWriter() = default;

void PackedWriter::add(const int32_t* ids, size_t n) {
  TL_CHECK(!finished_, "packed writer: add() after finish()");
  for (size_t i = 0; i < n; ++i) {
    TL_CHECK(ids[i] >= 0 && ids[i] < vocab_size_, "packed writer: token id ", ids[i],
             " is outside the vocabulary [0, ", vocab_size_, ")");
    max_id_ = std::max(max_id_, ids[i]);
  }
  while (n > 0) {
    size_t take = std::min<uint64_t>(n, chunk_tokens_ - buf_.size());
    buf_.insert(buf_.end(), ids, ids + take);
    ids += take;
    n -= take;
    if (buf_.size() == chunk_tokens_) flush_chunk();
  }
}

void PackedWriter::finish() {
  if (finished_) return;
  if (!buf_.empty()) flush_chunk();
  finished_ = true;
}

void PackedWriter::flush_chunk() {
  char name[32];
  std::snprintf(name, sizeof name, "_%05zu.bin", files_.size());
  std::string path = dir_ + "/" + prefix_ + name;
  write_packed_file(path, buf_, dtype_code_, buf_.size());
  files_.push_back(path);
  total_ += buf_.size();
  buf_.clear();
}

}  // namespace tl
