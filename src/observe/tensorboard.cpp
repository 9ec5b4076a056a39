#include "observe/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"

namespace tl {

namespace tfevents {

namespace {

// Protobuf wire format: a key is (field << 3) | wire type; 0 varint, 1 fixed64,
// 2 length-delimited, 5 fixed32.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}
template <class T>
void put_fixed(std::string& out, T v) {  // little-endian hosts only (x86-64, aarch64)
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_varint(out, uint64_t(field) << 3 | 2);
  put_varint(out, bytes.size());
  out += bytes;
}

std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_varint(e, 1 << 3 | 1);
  put_fixed(e, wall_time);
  put_varint(e, 2 << 3 | 0);
  put_varint(e, uint64_t(step));
  return e;
}

}  // namespace

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c_update(0, data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string record(const std::string& payload) {
  std::string out;
  const uint64_t len = payload.size();
  put_fixed(out, len);
  put_fixed(out, masked_crc32c(out.data(), 8));
  out += payload;
  put_fixed(out, masked_crc32c(payload.data(), payload.size()));
  return out;
}

std::string file_version_event(double wall_time) {
  std::string e;
  put_varint(e, 1 << 3 | 1);
  put_fixed(e, wall_time);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string scalars_event(double wall_time, int64_t step,
                          const std::vector<std::pair<std::string, float>>& values) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_varint(value, 2 << 3 | 5);
    put_fixed(value, v);
    put_bytes(summary, 1, value);
  }
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string session_start_event(double wall_time, int64_t step) {
  std::string log;
  put_varint(log, 1 << 3 | 0);
  put_varint(log, 1);  // SessionLog.START
  std::string e = event_head(wall_time, step);
  put_bytes(e, 6, log);
  return e;
}

}  // namespace tfevents

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The <time> field of the newest "events.out.tfevents.<time>..." file in dir, or 0.
long long newest_event_time(const std::string& dir) {
  long long newest = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    long long t = 0;
    if (std::sscanf(e.path().filename().string().c_str(), "events.out.tfevents.%lld", &t) == 1)
      newest = std::max(newest, t);
  }
  return newest;
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  make_dirs(dir);
  const long long t = std::max((long long)now_seconds(), newest_event_time(dir) + 1);
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  char name[512];
  std::snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%d", t, host, int(::getpid()));
  path_ = dir + "/" + name;
  f_ = std::fopen(path_.c_str(), "wb");
  TL_CHECK(f_, "cannot create '", path_, "': ", std::strerror(errno));
  write(tfevents::file_version_event(now_seconds()));
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_) std::fclose(f_);
}

void TensorBoardWriter::session_start(int64_t step) {
  write(tfevents::session_start_event(now_seconds(), step));
}

void TensorBoardWriter::scalars(int64_t step,
                                const std::vector<std::pair<std::string, float>>& values) {
  if (!values.empty()) write(tfevents::scalars_event(now_seconds(), step, values));
}

void TensorBoardWriter::write(const std::string& event) {
  const std::string r = tfevents::record(event);
  write_all(f_, r.data(), r.size(), path_);
  TL_CHECK(std::fflush(f_) == 0, "cannot write '", path_, "': ", std::strerror(errno));
}

}  // namespace tl
