// Training-step throughput on synthetic tokens: tokens/s, MFU, peak memory and the time
// per phase (GEMMs, attention, other ops, optimizer).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/json_reader.h"
#include "model/config.h"
#include "model/fp8_linear.h"
#include "train/parallelism.h"

namespace tl {

struct BenchOptions {
  ModelConfig model;
  int micro_batch = 8;
  int seq_len = 0;     // 0 = the model's context (ModelConfig::seq_len_or_context)
  int grad_accum = 1;  // micro-batches per optimizer step
  int warmup_steps = 2;
  int steps = 10;
  bool recompute = false;
  bool fp8 = false;        // --precision fp8: the layers' linears in FP8 (model/fp8_linear.h)
  Fp8Options fp8_options;  // --fp8-scaling, --fp8-amax-history
  std::string device = "auto";
  int threads = 0;
  uint64_t seed = 1;
  // The backend and optimizer this asks for (AdamW at its defaults; lr kBenchLr).
  ParallelOptions parallel() const;
};

constexpr float kBenchLr = 1e-4f;

struct BenchResult {
  std::string device;
  double tokens_per_s = 0;
  double step_seconds = 0;
  double mfu = 0;  // 0 when the device's peak is unknown
  double peak_flops = 0;
  size_t peak_memory = 0;                                     // bytes, 0 when unknown
  std::vector<std::pair<std::string, double>> phase_seconds;  // per optimizer step
  double final_loss = 0;
  std::vector<double> losses, grad_norms;  // every step, warm-up included
  int skipped_steps = 0;                   // non-finite gradients
  json to_json() const;
};

BenchResult run_bench(const BenchOptions& opts);
// Prints one "phase NAME  ms  %" line per category to stdout, each ending with `note`.
void print_phases(const std::vector<std::pair<std::string, double>>& phase_seconds,
                  const char* note = "");

}  // namespace tl
