#include "observe/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/fs.h"

namespace tl {

double metric_number(const json& record, const char* key) {
  return record.contains(key) && record[key].is_number() ? record[key].get<double>() : NAN;
}

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "ab");
  TL_CHECK(f_, "cannot open '", path, "' for writing: ", std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(const json& record) {
  std::string line = record.dump() + "\n";
  write_all(f_, line.data(), line.size(), path_);
  TL_CHECK(std::fflush(f_) == 0, "cannot write '", path_, "': ", std::strerror(errno));
}

namespace {

// A file's lines from the last to the first, read in 64 KiB pieces from the end.
class ReverseLines {
 public:
  ReverseLines(std::FILE* f, uint64_t size, const std::string& path)
      : f_(f), pos_(size), path_(path) {}
  // The previous line, '\n' included when it has one, and the offset where it begins.
  bool prev(std::string& line, uint64_t& begin) {
    for (;;) {
      const size_t nl = buf_.size() >= 2 ? buf_.rfind('\n', buf_.size() - 2) : std::string::npos;
      if (nl == std::string::npos && pos_ > 0) {  // the line starts in an earlier piece
        const uint64_t n = std::min<uint64_t>(pos_, 1 << 16);
        pos_ -= n;
        std::string piece(n, '\0');
        TL_CHECK(
            ::fseeko(f_, off_t(pos_), SEEK_SET) == 0 && std::fread(piece.data(), 1, n, f_) == n,
            "cannot read '", path_, "'");
        buf_ = piece + buf_;
        continue;
      }
      if (buf_.empty()) return false;
      const size_t start = nl == std::string::npos ? 0 : nl + 1;
      line = buf_.substr(start);
      begin = pos_ + start;
      buf_.resize(start);
      return true;
    }
  }

 private:
  std::FILE* f_;
  uint64_t pos_;     // file offset of buf_[0]
  std::string buf_;  // the bytes not yet returned, up to the end of the file
  std::string path_;
};

}  // namespace

int64_t rewind_metrics(const std::string& path, int64_t step) {
  if (!file_exists(path)) return -1;
  // Records are in step order, so only the tail can lie past `step`: read from the end (a
  // 90-day run's file holds millions of lines) and cut after the last line at or before it.
  // truncate() is one metadata change: a crash leaves the old length or the new one.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  TL_CHECK(f, "cannot open '", path, "': ", std::strerror(errno));
  ReverseLines lines(f, file_size(path), path);
  int64_t newest = -1;
  uint64_t keep = 0, begin = 0;
  std::string line;
  try {
    while (lines.prev(line, begin)) {
      if (line.back() != '\n') continue;  // cut short by a crash
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
      const int64_t s = j["step"].get<int64_t>();
      newest = std::max(newest, s);
      if (s <= step) {
        keep = begin + line.size();
        break;
      }
    }
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::fclose(f);
  TL_CHECK(::truncate(path.c_str(), off_t(keep)) == 0, "cannot truncate '", path,
           "': ", std::strerror(errno));
  return newest;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

std::string format_count(double n) {
  char buf[32];
  if (n >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", n / 1e9);
  else if (n >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", n / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", n);
  return buf;
}

}  // namespace tl
