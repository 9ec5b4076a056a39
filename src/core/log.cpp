#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace tl {

namespace {
std::atomic<int> g_level{int(LogLevel::Info)};
std::mutex g_mutex;
}  // namespace

void set_log_level(LogLevel level) { g_level = int(level); }
LogLevel log_level() { return LogLevel(g_level.load()); }

void log_write(LogLevel level, const std::string& msg) {
  static const char* tags[] = {"debug", "info", "warning", "error"};
  std::lock_guard<std::mutex> lock(g_mutex);
  if (level == LogLevel::Info)
    std::fprintf(stderr, "%s\n", msg.c_str());
  else
    std::fprintf(stderr, "%s: %s\n", tags[int(level)], msg.c_str());
  std::fflush(stderr);
}

}  // namespace tl
