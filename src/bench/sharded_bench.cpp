#include "bench/sharded_bench.h"

#include <cstdio>

#include "backend/backend.h"
#include "core/rng.h"
#include "core/timer.h"
#include "parallel/bootstrap.h"
#include "parallel/fsdp.h"
#include "model/llama.h"
#include "model/memory_estimate.h"

namespace tl {

json DistBenchResult::to_json() const {
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

DistBenchResult run_dist_bench(const DistBenchOptions& o) {
  const BenchOptions& b = o.bench;
  const int T = b.seq_len > 0 ? b.seq_len : b.model.max_seq_len, B = b.micro_batch;
  LaunchInfo li = detect_launch();
  auto be = make_backend(device_for_rank(b.device, li), b.threads);
  auto session = start_session(li, *be, o.timeout_s);
  Communicator& world = *session->world;
  const ShardStrategy strategy = strategy_from_name(o.strategy);
  FsdpGroups groups = make_fsdp_groups(world, strategy,
                                       o.hybrid_group > 0 ? o.hybrid_group : session->ranks_per_node);
  DistBenchResult r;
  r.world = world.world();
  r.strategy = o.strategy;
  r.device = be->describe();
  r.layout = cat("shard groups of ", groups.shard->world(), ", ", groups.replica->world(),
                 " replica(s)");
  {
    Fsdp fsdp(b.model, *be, strategy, *groups.shard, groups.replica.get(), AdamWConfig{});
    ModelOptions mo;
    mo.recompute = b.recompute;
    mo.provider = &fsdp;
    LlamaModel model(b.model, *be, mo);
    model.init_weights(b.seed);
    // Synthetic tokens, different on every rank (as real data would be).
    Rng rng(hash_mix(b.seed, uint64_t(world.rank())));
    std::vector<int32_t> tokens(size_t(B) * T + 1);
    for (auto& t : tokens) t = int32_t(rng.below(uint64_t(b.model.vocab_size)));
    const float scale = 1.0f / float(int64_t(B) * T * b.grad_accum * r.world);
    Buffer loss_buf(*be, 16);
    auto step = [&] {
      model.zero_grads();
      LossSum loss;
      for (int k = 0; k < b.grad_accum; ++k) {
        fsdp.begin_micro_batch(k + 1 == b.grad_accum);
        loss += model.forward_backward(tokens.data(), tokens.data() + 1, B, T, scale);
      }
      fsdp.step(1e-4f);
      // The global loss (a tiny all-reduce; the step has synchronized for the norm anyway).
      const double host[2] = {loss.sum, double(loss.count)};
      be->upload(loss_buf.tensor(DType::F64, {2}), host);
      world.wait(world.all_reduce(loss_buf.tensor(DType::F64, {2}), ReduceOp::Sum));
      double out[2];
      be->download(out, loss_buf.tensor(DType::F64, {2}));
      r.losses.push_back(out[0] / out[1]);
    };
    for (int i = 0; i < b.warmup_steps; ++i) step();
    world.synchronize();
    fsdp.take_comm_wait_seconds();  // reset: count the timed steps only
    Timer t;
    for (int i = 0; i < b.steps; ++i) step();
    world.synchronize();
    const double step_s = t.seconds() / b.steps;
    const double wait_s = fsdp.take_comm_wait_seconds() / b.steps;
    // Max and mean over ranks: [step, wait, peak memory].
    double mine[3] = {step_s, wait_s, double(be->peak_memory())};
    Buffer stats(*be, 3 * sizeof(double));
    Tensor st = stats.tensor(DType::F64, {3});
    double mx[3], sum[3];
    be->upload(st, mine);
    world.wait(world.all_reduce(st, ReduceOp::Max));
    be->download(mx, st);
    be->upload(st, mine);
    world.wait(world.all_reduce(st, ReduceOp::Sum));
    be->download(sum, st);
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
  if (session->health) session->health->finish();
  return r;
}

bool run_dist_bench_cli(const DistBenchOptions& o, bool strategy_given, const std::string& json_out) {
  if (!strategy_given && detect_launch().world == 1) return false;
  DistBenchResult r = run_dist_bench(o);
  if (detect_launch().rank != 0) return true;
  const BenchOptions& b = o.bench;
  const int T = b.seq_len > 0 ? b.seq_len : b.model.max_seq_len;
  std::printf("device       %d x %s\n", r.world, r.device.c_str());
  std::printf("strategy     %s (%s)\n", r.strategy.c_str(), r.layout.c_str());
  std::printf("model        %s, micro-batch %d x %d per GPU, grad accum %d%s\n",
              b.model.preset.c_str(), b.micro_batch, T, b.grad_accum, b.recompute ? ", recompute" : "");
  std::printf("tokens/s     %.0f per GPU, %.0f in all\n", r.tokens_per_s_per_gpu,
              r.tokens_per_s_per_gpu * r.world);
  std::printf("step         %.1f ms (slowest rank)\n", r.step_seconds * 1e3);
  if (r.mfu > 0) std::printf("MFU          %.1f%%\n", 100 * r.mfu);
  std::printf("comm wait    %.2f ms per step exposed, mean over ranks (max %.2f ms): %.1f%% of the step\n",
              r.comm_wait_mean_s * 1e3, r.comm_wait_max_s * 1e3,
              100 * r.comm_wait_mean_s / r.step_seconds);
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
