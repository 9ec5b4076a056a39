#include "optim/schedule.h"

#include <cmath>

namespace tl {

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * double(step) / double(warmup_steps);
  if (step >= decay_steps || decay_steps <= warmup_steps) return step >= decay_steps ? min_lr : lr;
  const double ratio = double(step - warmup_steps) / double(decay_steps - warmup_steps);
  return min_lr + 0.5 * (1.0 + std::cos(M_PI * ratio)) * (lr - min_lr);
}

}  // namespace tl
