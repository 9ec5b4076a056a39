#include "train/metrics.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/fs.h"

namespace tl {

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

int64_t rewind_metrics(const std::string& path, int64_t step) {
  if (!file_exists(path)) return -1;
  std::string text = read_file(path), kept;
  int64_t newest = -1;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) break;  // no newline: a line the crash cut short
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
    const int64_t s = j["step"].get<int64_t>();
    newest = std::max(newest, s);
    if (s <= step) kept += line + "\n";
  }
  write_file_atomic(path, kept);
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
