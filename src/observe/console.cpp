#include "observe/console.h"

#include <algorithm>
#include <cstdio>

#include "observe/metrics.h"

namespace tl {

std::string step_line(const StepFigures& f) {
  char buf[512];
  int n =
      std::snprintf(buf, sizeof buf, "step %lld/%lld | loss %.4f | lr %.3e | grad %.3f | %s tok/s",
                    (long long)f.step, (long long)f.steps, f.loss, f.lr, f.grad_norm,
                    format_count(f.tokens_per_s).c_str());
  std::string s(buf, size_t(std::max(n, 0)));
  if (f.mfu > 0) {
    std::snprintf(buf, sizeof buf, " | MFU %.1f%%", 100 * f.mfu);
    s += buf;
  }
  if (f.mem_bytes > 0) {
    std::snprintf(buf, sizeof buf, " | mem %.1f/%.1f GiB", double(f.mem_bytes) / (1 << 30),
                  double(f.mem_peak) / (1 << 30));
    s += buf;
  }
  s += " | eta " + format_duration(f.eta_seconds);
  if (f.skipped) s += " | update skipped: non-finite loss or gradient";
  if (f.spike) s += " | loss spike";
  return s;
}

std::string progress_bar(const StepFigures& f, int width) {
  const double frac = f.steps > 0 ? std::clamp(double(f.step) / double(f.steps), 0.0, 1.0) : 0;
  const int filled = int(frac * width + 0.5);
  std::string bar(size_t(width) + 2, '-');
  bar.front() = '[';
  bar.back() = ']';
  std::fill_n(bar.begin() + 1, filled, '#');
  char buf[256];
  std::snprintf(buf, sizeof buf, " %5.1f%% %lld/%lld | loss %.4f | %s tok/s | eta %s", 100 * frac,
                (long long)f.step, (long long)f.steps, f.loss, format_count(f.tokens_per_s).c_str(),
                format_duration(f.eta_seconds).c_str());
  return bar + buf;
}

}  // namespace tl
