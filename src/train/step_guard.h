// The trainer's guard against bad steps.
// - Non-finite: a step whose loss or gradient norm is NaN or infinite applies no update
//   (the optimizer skips it); it is counted, and `max_bad_steps` of them in a row stop the
//   run (something is broken beyond one bad batch: a diverged model, a corrupt shard).
// - Spike: a finite loss above `spike_threshold` times the running mean (an exponential
//   moving average, after a few steps of warm-up) is flagged; it is only logged.
// Its state goes into checkpoints, so a resumed run flags exactly what an uninterrupted
// one would.
#pragma once
#include <cstdint>

#include "core/json_reader.h"

namespace tl {

struct StepVerdict {
  bool bad = false;    // non-finite: no update was applied
  bool spike = false;  // finite, but above threshold x running mean
  bool stop = false;   // max_bad_steps in a row: the caller stops the run
  double mean = 0;     // running mean before this step (0 until there is one)
};

class StepGuard {
 public:
  StepGuard(int max_bad_steps, double spike_threshold)
      : max_bad_(max_bad_steps), threshold_(spike_threshold) {}
  StepVerdict observe(double loss, bool update_applied);

  int64_t bad_total() const { return bad_total_; }
  int64_t bad_in_row() const { return bad_in_row_; }
  int64_t spikes() const { return spikes_; }
  json state() const;
  void restore(const json& state);  // tolerates checkpoints written before this existed

 private:
  static constexpr int kWarmup = 10;      // steps before spikes are judged
  static constexpr double kDecay = 0.98;  // EMA memory of ~50 steps
  int max_bad_;
  double threshold_;
  int64_t bad_total_ = 0, bad_in_row_ = 0, spikes_ = 0, seen_ = 0;
  double ema_ = 0;
};

}  // namespace tl
