// What the trainer prints: one line per logged step, and a progress bar on a terminal.
//   step 450/1000 | loss 2.3105 | lr 3.000e-04 | grad 0.812 | 12.3k tok/s | MFU 41.2% |
//   mem 46.4/57.6 GiB | eta 3h02m
// MFU and memory appear only where known (a GPU with a known peak; a backend that counts).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tl {

struct StepFigures {
  int64_t step = 0, steps = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  double tokens_per_s = 0;
  double mfu = 0;                      // fraction; <= 0 when unknown
  size_t mem_bytes = 0, mem_peak = 0;  // device memory; 0 when unknown
  double eta_seconds = 0;
  bool skipped = false, spike = false;
};

std::string step_line(const StepFigures& f);
// "[########------------]  40.0% 400/1000 | loss 2.3105 | eta 3m05s"
std::string progress_bar(const StepFigures& f, int width = 30);

}  // namespace tl
