// Minimal leveled logging to stderr; the trainer's metrics go to files, not here.
#pragma once
#include <string>

#include "core/error.h"

namespace tl {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_write(LogLevel level, const std::string& msg);

// A transient status line (the trainer's progress bar) kept under the log on a terminal:
// log lines print above it. Both do nothing when stderr is not a terminal, so files and
// pipes get plain lines only.
bool stderr_is_terminal();
void log_status(const std::string& line);
void log_status_clear();

template <class... Args>
void log_info(const Args&... args) {
  if (log_level() <= LogLevel::Info) log_write(LogLevel::Info, cat(args...));
}
template <class... Args>
void log_warn(const Args&... args) {
  if (log_level() <= LogLevel::Warn) log_write(LogLevel::Warn, cat(args...));
}
template <class... Args>
void log_debug(const Args&... args) {
  if (log_level() <= LogLevel::Debug) log_write(LogLevel::Debug, cat(args...));
}

}  // namespace tl
