#include "bench/sharded_bench.h"

#include <cstdio>

#include "backend/backend.h"
#include "core/rng.h"
#include "core/timer.h"
#include "model/llama.h"
#include "model/memory_estimate.h"
#include "parallel/launch_env.h"
#include "train/sharded_run.h"
#include "train/train_step.h"

namespace tl {

json ShardedBenchResult::to_json() const {
  return json{{"world", world},
              {"strategy", strategy},
              {"layout", layout},
              {"device", device},
              {"tokens_per_s_per_gpu", tokens_per_s_per_gpu},
              {"tokens_per_s", tokens_per_s_per_gpu * world},
              {"step_seconds", step_seconds},
              {"mfu", mfu},
              {"comm_wait_mean_s", comm_wait_mean_s},
              {"comm_wait_max_s", comm_wait_max_s},
              {"peak_memory_bytes", peak_memory_max},
              {"losses", losses},
              {"phase_seconds", json(phase_seconds)}};
}

ShardedBenchResult run_sharded_bench(const ShardedBenchOptions& o) {
  const BenchOptions& b = o.bench;
  const int T = b.model.seq_len_or_context(b.seq_len), B = b.micro_batch;
  ParallelOptions po = b.parallel();
  po.dist = o.dist;
  std::unique_ptr<Backend> be;  // declared first: outlives the shards' buffers in run
  ShardedRun run(po, detect_launch(), nullptr);
  be = run.make_backend();
  run.connect(*be);
  ShardedBenchResult r;
  r.world = run.world();
  r.strategy = run.strategy();
  r.device = be->describe();
  r.layout = run.layout();
  {
    ModelOptions mo;
    mo.recompute = b.recompute;
    mo.fp8 = b.fp8;
    mo.fp8_options = b.fp8_options;
    mo.provider = run.provider();
    LlamaModel model(b.model, *be, mo);
    model.init_weights(b.seed);
    // Synthetic tokens, different on every rank (as real data would be).
    Rng rng(hash_mix(b.seed, uint64_t(run.rank())));
    std::vector<int32_t> tokens(size_t(B) * T + 1);
    for (auto& t : tokens) t = int32_t(rng.below(uint64_t(b.model.vocab_size)));
    const StepShape shape{B, T, b.grad_accum,
                          1.0f / float(int64_t(B) * T * b.grad_accum * r.world)};
    const NextMicroBatch next = [&](const int32_t*& tok, const int32_t*& tgt) {
      tok = tokens.data();
      tgt = tokens.data() + 1;
    };
    auto step = [&] {
      r.losses.push_back(train_step(model, run, shape, kBenchLr, next).loss.mean());
    };
    for (int i = 0; i < b.warmup_steps; ++i) step();
    run.synchronize();
    run.take_comm_wait_seconds();  // reset: count the timed steps only
    Timer t;
    for (int i = 0; i < b.steps; ++i) step();
    run.synchronize();
    const double step_s = t.seconds() / b.steps;
    const double wait_s = run.take_comm_wait_seconds() / b.steps;
    // Max and mean over ranks: [step, wait, peak memory].
    double mx[3] = {step_s, wait_s, double(be->peak_memory())};
    double sum[3] = {mx[0], mx[1], mx[2]};
    run.all_reduce(mx, 3, ReduceOp::Max);
    run.all_reduce(sum, 3, ReduceOp::Sum);
    r.step_seconds = mx[0];
    r.comm_wait_max_s = mx[1];
    r.comm_wait_mean_s = sum[1] / r.world;
    r.peak_memory_max = mx[2];
    r.tokens_per_s_per_gpu = double(B) * T * b.grad_accum / r.step_seconds;
    // One more step with per-op timing (its events add a little overhead: not timed above).
    be->set_profiling(true);
    step();
    r.phase_seconds = be->take_profile();
    be->set_profiling(false);
    const double peak = be->peak_flops();
    if (peak > 0) r.mfu = r.tokens_per_s_per_gpu * b.model.flops_per_token(T) / peak;
  }
  return r;
}

bool run_sharded_bench_cli(const ShardedBenchOptions& o, const std::string& json_out) {
  if (o.dist.strategy.empty() && detect_launch().world == 1) return false;
  ShardedBenchResult r = run_sharded_bench(o);
  if (detect_launch().rank != 0) return true;
  const BenchOptions& b = o.bench;
  const int T = b.model.seq_len_or_context(b.seq_len);
  std::printf("device       %d x %s\n", r.world, r.device.c_str());
  std::printf("strategy     %s (%s)\n", r.strategy.c_str(), r.layout.c_str());
  std::printf("model        %s, micro-batch %d x %d per GPU, grad accum %d%s%s\n",
              b.model.preset.c_str(), b.micro_batch, T, b.grad_accum,
              b.recompute ? ", recompute" : "", b.fp8 ? ", fp8 linears" : "");
  std::printf("tokens/s     %.0f per GPU, %.0f in all\n", r.tokens_per_s_per_gpu,
              r.tokens_per_s_per_gpu * r.world);
  std::printf("step         %.1f ms (slowest rank)\n", r.step_seconds * 1e3);
  if (r.mfu > 0) std::printf("MFU          %.1f%%\n", 100 * r.mfu);
  std::printf(
      "comm wait    %.2f ms per step exposed, mean over ranks (max %.2f ms): %.1f%% of the step\n",
      r.comm_wait_mean_s * 1e3, r.comm_wait_max_s * 1e3, 100 * r.comm_wait_mean_s / r.step_seconds);
  std::printf("peak memory  %s per GPU (largest rank)\n", format_bytes(r.peak_memory_max).c_str());
  print_phases(r.phase_seconds, "  (rank 0)");
  std::printf("loss         %.4f -> %.4f over %zu steps\n", r.losses.front(), r.losses.back(),
              r.losses.size());
  if (!json_out.empty()) {
    FILE* f = std::fopen(json_out.c_str(), "w");
    TL_CHECK(f, "cannot write '", json_out, "'");
    std::fprintf(f, "%s\n", r.to_json().dump().c_str());
    std::fclose(f);
  }
  return true;
}

}  // namespace tl
