#include "data/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tl {

Progress::Progress(std::string label, uint64_t disk_total, std::function<uint64_t()> disk_done,
                   const ProgressCounters& counters, double period_seconds, bool enabled)
    : label_(std::move(label)),
      total_(disk_total),
      done_(std::move(disk_done)),
      c_(counters),
      period_(period_seconds),
      tty_(::isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()) {
  if (enabled) thread_ = std::thread([this] { run(); });
}

Progress::~Progress() { stop(); }

void Progress::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    if (tty_) std::fputc('\n', stderr);  // keep the last state of the bar on screen
  }
}

void Progress::run() {
  // A terminal redraws often; a log gets a line per period.
  const auto step = std::chrono::duration<double>(tty_ ? 0.25 : period_);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const bool stopping = cv_.wait_for(lock, step, [&] { return stop_; });
    if (stopping && !tty_) return;
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    winsize ws{};
    width_ = ::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 120;
    std::string text = line(s);
    if (tty_) {
      if (text.size() >= width_) text.resize(width_ - 1);
      std::fprintf(stderr, "\r%s\033[K", text.c_str());
    } else {
      std::fprintf(stderr, "%s\n", text.c_str());
    }
    std::fflush(stderr);
    if (stopping) return;
  }
}

std::string Progress::line(double s) const {
  const double done = double(done_()), total = double(std::max<uint64_t>(total_, 1));
  const double frac = std::min(1.0, done / total), t = std::max(s, 1e-9);
  const double text = double(c_.text_bytes.load()), docs = double(c_.documents.load());
  const double toks = double(c_.tokens.load());
  const std::string eta = done > 0 && frac < 1 ? duration(s * (total - done) / done) : "-";
  char pct[16], rates[128];
  std::snprintf(pct, sizeof pct, "%.1f%%", 100 * frac);
  std::snprintf(rates, sizeof rates, "%.1f MB/s, %s docs/s, %s tok/s, ETA %s", text / 1e6 / t,
                count(docs / t).c_str(), count(toks / t).c_str(), eta.c_str());
  if (!tty_)
    return label_ + ": " + pct + " of " + bytes(total) + " read in " + duration(s) + ", " +
           count(docs) + " docs, " + count(toks) + " tokens: " + rates;
  std::string tail = std::string(pct) + " " + bytes(done) + "/" + bytes(total) + " " + rates;
  const int width = 20, fill = int(std::lround(frac * width));
  std::string bar =
      " [" + std::string(size_t(fill), '#') + std::string(size_t(width - fill), '.') + "]";
  // The bar goes first when the terminal is too narrow for everything.
  return label_ + (label_.size() + bar.size() + tail.size() + 2 <= width_ ? bar : "") + " " + tail;
}

std::string Progress::bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", b, units[u]);
  return buf;
}

std::string Progress::count(double n) {
  const char* units[] = {"", "k", "M", "G", "T"};
  int u = 0;
  while (n >= 1000 && u < 4) n /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.3g%s" : "%.0f%s", n, units[u]);
  return buf;
}

std::string Progress::duration(double s) {
  char buf[32];
  const long v = long(std::lround(std::max(0.0, s)));
  if (v < 60)
    std::snprintf(buf, sizeof buf, "%lds", v);
  else if (v < 3600)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", v / 60, v % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", v / 3600, (v / 60) % 60);
  return buf;
}

}  // namespace tl
