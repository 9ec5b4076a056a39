#include "train/step_guard.h"

#include <cmath>

namespace tl {

StepVerdict StepGuard::observe(double loss, bool update_applied) {
  StepVerdict v;
  v.mean = seen_ > 0 ? ema_ : 0;
  if (!update_applied || !std::isfinite(loss)) {
    v.bad = true;
    ++bad_total_;
    ++bad_in_row_;
    v.stop = max_bad_ > 0 && bad_in_row_ >= max_bad_;
    return v;  // a non-finite loss never enters the mean
  }
  bad_in_row_ = 0;
  if (seen_ >= kWarmup && threshold_ > 0 && loss > threshold_ * ema_) {
    v.spike = true;
    ++spikes_;
  }
  ema_ = seen_ == 0 ? loss : kDecay * ema_ + (1 - kDecay) * loss;
  ++seen_;
  return v;
}

json StepGuard::state() const {
  return json{{"bad_total", bad_total_},
              {"bad_in_row", bad_in_row_},
              {"spikes", spikes_},
              {"seen", seen_},
              {"loss_ema", ema_}};
}

void StepGuard::restore(const json& s) {
  bad_total_ = s.value("bad_total", int64_t(0));
  bad_in_row_ = s.value("bad_in_row", int64_t(0));
  spikes_ = s.value("spikes", int64_t(0));
  seen_ = s.value("seen", int64_t(0));
  ema_ = s.value("loss_ema", 0.0);
}

}  // namespace tl
