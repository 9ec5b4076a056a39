// Shared by the parquet readers (string columns, leaf columns): the file read with pread,
// the bounds every page claim is checked against, and the level/value bit decoders.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"

namespace tl::parquet {

// An open file read with pread.
class File {
 public:
  explicit File(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    TL_CHECK(fd_ >= 0, "parquet '", path, "': cannot open: ", std::strerror(errno));
    off_t end = ::lseek(fd_, 0, SEEK_END);
    if (end < 0) {
      ::close(fd_);
      fail("parquet '", path, "': cannot seek: ", std::strerror(errno));
    }
    size_ = int64_t(end);
  }
  ~File() { ::close(fd_); }
  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }
  void read(int64_t offset, size_t n, std::string& out) const {
    TL_CHECK(offset >= 0 && uint64_t(offset) + n <= uint64_t(size_), "parquet '", path_,
             "': corrupt: read of ", n, " bytes at ", offset, " past the end (", size_, " bytes)");
    out.resize(n);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, out.data() + done, n - done, off_t(offset + int64_t(done)));
      if (r < 0 && errno == EINTR) continue;
      TL_CHECK(r > 0, "parquet '", path_,
               "': read error: ", r < 0 ? std::strerror(errno) : "short read");
      done += size_t(r);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

// Bounds on what a page header may claim, checked before any memory is taken for it.
constexpr int32_t kMaxPageValues = 1 << 26;
constexpr int64_t kMaxPageBytes = int64_t(1) << 30;  // uncompressed
// Values a page may hold beyond 8 a byte: RLE runs can be denser than a bit a value, but
// a writer's page of a few bytes does not hold millions of rows.
constexpr int64_t kFreePageValues = 1 << 20;
// DELTA_BYTE_ARRAY rebuilds each value from the previous one: values 1..n, each the last
// plus a byte, are O(n^2) bytes from O(n). A page may expand to this, or 64 times its size.
constexpr uint64_t kMaxDeltaExpansion = uint64_t(64) << 20;

inline const uint8_t* bytes(const std::string& s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}
uint32_t load_u32(const uint8_t* p);
// Values packed LSB-first at `width` bits each (width <= 32).
uint32_t unpack(const uint8_t* p, uint64_t i, int width);
uint64_t varint(const uint8_t*& p, const uint8_t* end);
// The RLE / bit-packing hybrid: n values of `width` bits into out.
const uint8_t* decode_hybrid(const uint8_t* p, const uint8_t* end, int width, size_t n,
                             std::vector<uint32_t>& out);
// DELTA_BINARY_PACKED: at most max_count values into out; returns the end of the data.
const uint8_t* decode_delta(const uint8_t* p, const uint8_t* end, uint64_t max_count,
                            std::vector<int64_t>& out);

}  // namespace tl::parquet
