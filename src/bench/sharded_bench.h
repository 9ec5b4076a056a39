// `tinyllama bench` on several GPUs (under torchrun-style variables, mpirun or srun, or
// with --strategy on one): per-GPU tokens/s, MFU, peak memory per GPU, and the time each
// step's compute stream stood waiting on communication, measured with CUDA events around
// every wait (parallel/nccl_communicator.h) — the communication FSDP failed to hide. The
// step is the trainer's (train/train_step.h) over a ShardedRun (train/sharded_run.h).
#pragma once
#include <string>

#include "bench/train_bench.h"
#include "core/json_reader.h"
#include "parallel/dist_config.h"

namespace tl {

struct ShardedBenchOptions {
  BenchOptions bench;
  DistConfig dist;  // the training config's dist section: strategy "" = full_shard
};

struct ShardedBenchResult {
  int world = 1;
  std::string strategy, device, layout;  // layout: "shard groups of 2, 2 replicas"
  double tokens_per_s_per_gpu = 0;       // each GPU's micro-batches / the slowest rank's step
  double step_seconds = 0;               // slowest rank
  double mfu = 0;
  double comm_wait_mean_s = 0, comm_wait_max_s = 0;  // per step, over ranks
  double peak_memory_max = 0;                        // bytes, the largest over ranks
  std::vector<double> losses;  // global mean loss of every step (warm-up included)
  // Rank 0's device time per op category in one extra step timed op by op: compared with
  // the one-GPU bench, it shows which compute the collectives running beside it slowed.
  std::vector<std::pair<std::string, double>> phase_seconds;
  json to_json() const;
};

// Collective; every rank returns the same result.
ShardedBenchResult run_sharded_bench(const ShardedBenchOptions& o);
// True when this process was launched as one of several ranks or a strategy was given:
// then it ran the sharded bench, printed it on rank 0 and wrote json_out (if set).
bool run_sharded_bench_cli(const ShardedBenchOptions& o, const std::string& json_out);

}  // namespace tl
