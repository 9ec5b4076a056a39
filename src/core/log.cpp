#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>

namespace tl {

namespace {
std::atomic<int> g_level{int(LogLevel::Info)};
std::mutex g_mutex;
std::string g_status;  // shown under the log; guarded by g_mutex
}  // namespace

bool stderr_is_terminal() {
  static const bool tty = ::isatty(STDERR_FILENO) == 1;
  return tty;
}

void log_status(const std::string& line) {
  if (!stderr_is_terminal()) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_status = line;
  std::fprintf(stderr, "\r\033[K%s", g_status.c_str());
  std::fflush(stderr);
}

void log_status_clear() {
  if (!stderr_is_terminal()) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_status.empty()) std::fprintf(stderr, "\r\033[K");
  g_status.clear();
  std::fflush(stderr);
}

void set_log_level(LogLevel level) { g_level = int(level); }
LogLevel log_level() { return LogLevel(g_level.load()); }

void log_write(LogLevel level, const std::string& msg) {
  static const char* tags[] = {"debug", "info", "warning", "error"};
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_status.empty()) std::fprintf(stderr, "\r\033[K");
  if (level == LogLevel::Info)
    std::fprintf(stderr, "%s\n", msg.c_str());
  else
    std::fprintf(stderr, "%s: %s\n", tags[int(level)], msg.c_str());
  if (!g_status.empty()) std::fprintf(stderr, "%s", g_status.c_str());
  std::fflush(stderr);
}

}  // namespace tl
