// metrics.jsonl: one JSON object a line, flushed as written, so a crash loses nothing
// that was logged and tools can tail the file while the run goes on.
#pragma once
#include <cstdio>
#include <string>

#include "core/json_reader.h"

namespace tl {

class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);  // appends
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

// Makes metrics.jsonl agree with a run restarted at `step`: keeps the records of steps up to
// it and drops the rest (a torn last line from a crash included). Records must be in step
// order, as the trainer writes them. Returns the largest step the file held (the caller
// reports the steps redone), -1 when there was no file or no record.
int64_t rewind_metrics(const std::string& path, int64_t step);

// A record's number under key; NaN when the key is absent or holds no number (readers draw
// a gap there).
double metric_number(const json& record, const char* key);

// "1h02m", "3m05s", "42s"
std::string format_duration(double seconds);
// "12.3k", "1.20M"
std::string format_count(double n);

}  // namespace tl
