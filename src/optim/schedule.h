// Learning-rate schedule of TinyLlama: linear warmup, then cosine decay to min_lr.
#pragma once
#include <cstdint>

namespace tl {

struct LrSchedule {
  double lr = 4e-4;
  double min_lr = 4e-5;
  int64_t warmup_steps = 2000;
  int64_t decay_steps = 0;  // step at which the cosine reaches min_lr (0 = the run's end)

  // lr of optimizer step s (1-based): s/warmup * lr during warmup, then
  // min_lr + (lr - min_lr) * (1 + cos(pi * (s - warmup)/(decay - warmup))) / 2, then min_lr.
  double at(int64_t step) const;
};

}  // namespace tl
