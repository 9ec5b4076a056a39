#include "bench/train_bench.h"

#include <cstdio>

#include "backend/backend.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/timer.h"
#include "model/llama.h"
#include "model/memory_estimate.h"
#include "train/train_step.h"

namespace tl {

ParallelOptions BenchOptions::parallel() const {
  ParallelOptions p;
  p.model = model;
  p.device = device;
  p.threads = threads;
  return p;
}

json BenchResult::to_json() const {
  json phases = json::object();
  for (const auto& [k, v] : phase_seconds) phases[k] = v;
  return json{{"device", device},
              {"tokens_per_s", tokens_per_s},
              {"step_seconds", step_seconds},
              {"mfu", mfu},
              {"peak_flops", peak_flops},
              {"peak_memory_bytes", peak_memory},
              {"phase_seconds", phases},
              {"final_loss", final_loss},
              {"losses", losses},
              {"grad_norms", grad_norms},
              {"skipped_steps", skipped_steps}};
}

void print_phases(const std::vector<std::pair<std::string, double>>& phase_seconds,
                  const char* note) {
  double total = 0;
  for (const auto& [k, v] : phase_seconds) total += v;
  for (const auto& [k, v] : phase_seconds)
    std::printf("phase %-10s %8.2f ms  %5.1f%%%s\n", k.c_str(), v * 1e3,
                total > 0 ? 100 * v / total : 0.0, note);
}

BenchResult run_bench(const BenchOptions& o) {
  const int T = o.model.seq_len_or_context(o.seq_len);
  const int B = o.micro_batch;
  std::unique_ptr<Backend> be;  // declared first: outlives the optimizer's buffers in par
  std::unique_ptr<Parallelism> par = make_single_process(o.parallel());
  be = par->make_backend();
  par->connect(*be);
  BenchResult r;
  r.device = be->describe();
  check_fits(estimate_training_memory(o.model, B, T, be->compute_dtype(), o.recompute, o.fp8),
             be->device_memory_total(), r.device);
  ModelOptions mo;
  mo.recompute = o.recompute;
  mo.fp8 = o.fp8;
  mo.fp8_options = o.fp8_options;
  LlamaModel model(o.model, *be, mo);
  par->attach(model);
  model.init_weights(o.seed);
  // Synthetic but not degenerate: random tokens, next-token targets.
  Rng rng(o.seed);
  std::vector<int32_t> tokens(size_t(B) * T + 1);
  for (auto& t : tokens) t = int32_t(rng.below(uint64_t(o.model.vocab_size)));
  const StepShape shape{B, T, o.grad_accum, 1.0f / float(int64_t(B) * T * o.grad_accum)};
  const NextMicroBatch next = [&](const int32_t*& tok, const int32_t*& tgt) {
    tok = tokens.data();
    tgt = tokens.data() + 1;
  };
  auto step = [&] {
    const StepOutcome s = train_step(model, *par, shape, kBenchLr, next);
    r.losses.push_back(s.loss.mean());
    r.grad_norms.push_back(s.update.grad_norm);
    if (!s.update.applied) r.skipped_steps++;
    return s.loss.mean();
  };
  for (int i = 0; i < o.warmup_steps; ++i) step();
  be->synchronize();
  Timer t;
  for (int i = 0; i < o.steps; ++i) r.final_loss = step();
  be->synchronize();
  r.step_seconds = t.seconds() / o.steps;
  r.tokens_per_s = double(B) * T * o.grad_accum / r.step_seconds;
  r.peak_flops = be->peak_flops();
  if (r.peak_flops > 0) r.mfu = r.tokens_per_s * o.model.flops_per_token(T) / r.peak_flops;
  // One more step with per-op timing (events add a little overhead, so it is not timed above).
  be->set_profiling(true);
  step();
  r.phase_seconds = be->take_profile();
  be->set_profiling(false);
  r.peak_memory = be->peak_memory();
  return r;
}

}  // namespace tl
