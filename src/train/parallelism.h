// How a training step's work and state are split over processes: one process holding
// everything (SingleProcess, below), or the ranks of a sharded job (ShardedRun,
// train/sharded_run.h: FSDP over a communicator). The trainer and both benchmarks talk to
// this interface and never ask which one they have.
//
// Global batch = micro_batch x grad_accum x world: each rank reads its own blocks and the
// loss scale divides by the global token count, so the summed gradients are those of one
// rank with the same global batch.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "checkpoint/checkpoint.h"
#include "model/config.h"
#include "model/llama.h"
#include "model/param_provider.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "parallel/dist_config.h"

namespace tl {

struct ParallelOptions {
  ModelConfig model;
  AdamWConfig adamw;
  DistConfig dist;
  std::string device = "auto";  // a sharded run takes this rank's GPU of it
  int threads = 0;              // CPU backend threads (0 = all cores)
};

class Parallelism {
 public:
  virtual ~Parallelism() = default;

  // ---- set-up, in this order ----
  // The backend this process computes on (a sharded run: this rank's GPU).
  virtual std::unique_ptr<Backend> make_backend() const = 0;
  // Joins the job: rendezvous, communicators, FSDP groups (nothing for one process).
  virtual void connect(Backend& be) = 0;
  // Where the model's weights and gradients live: null when the model holds them itself.
  virtual ParamProvider* provider() = 0;
  // Once the model exists: the optimizer over its parameters (or over this rank's shard).
  virtual void attach(LlamaModel& model) = 0;

  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual AdamW& optimizer() = 0;

  // ---- a step (train_step.h) ----
  // Before each micro-batch's forward and backward: on the last one of a step, the
  // strategies that reduce once per step issue their collectives during the backward.
  virtual void begin_micro_batch(bool last) = 0;
  // The step's loss summed over ranks; the ranks also agree here whether any of them got a
  // stop signal (should_stop).
  virtual LossSum global_loss(const LossSum& local) = 0;
  // Clips by the global gradient norm and applies AdamW; skips a non-finite gradient.
  virtual StepResult update(float lr) = 0;
  // A stop signal (train/stop_signal.h): at once for one process; for ranks, as agreed at
  // the last global_loss, so that every rank ends the loop at the same step.
  virtual bool should_stop() const = 0;
  // True when `mine` is true on every rank (a collective in a sharded run).
  virtual bool all_true(bool mine) = 0;

  // ---- checkpoints ----
  // A file for one process, a step folder of shards for ranks (checkpoint/run_folder.h).
  virtual std::string checkpoint_path(const std::string& run_dir, int64_t step) const = 0;
  // A save, in the order below; write() touches files only, so it may run on a background
  // thread while training goes on (checkpoint.async), commit_save() once it returned on
  // every rank (all_true).
  // The state this process writes, into ck (one process: params, adam_m, adam_v; ranks:
  // their shard); false when a weight is not finite on any rank (then nothing should be
  // saved). Collective.
  virtual bool collect(CheckpointData& ck) = 0;
  // Prepares path (ranks: rank 0 removes an older set's meta.json). Collective.
  virtual void begin_save(const std::string& path) = 0;
  // Writes ck (meta + what collect() filled) to path: the file, or this rank's shard. Takes
  // ck by value: the state moves to the writer (no second host copy).
  virtual void write(const std::string& path, CheckpointData ck,
                     const std::function<void()>& before_commit) const = 0;
  // Completes the checkpoint (ranks: rank 0 writes meta.json with `meta`). Collective.
  virtual void commit_save(const std::string& path, const json& meta) = 0;
  // Reads what this process holds from a checkpoint (a file or a sharded folder; ranks:
  // their shard, whatever world wrote it) into ck. Files only: no collective and nothing
  // changes, so the ranks can agree on the outcome before apply(). Throws on damage.
  virtual void read(const std::string& path, CheckpointData& ck) const = 0;
  // Sets the weights and the optimizer moments from read()'s result (collective).
  virtual void apply(const CheckpointData& ck) = 0;

  // This rank's error, sent to every rank before it unwinds (nothing for one process).
  virtual void report_failure(const std::string& why) = 0;
};

// A ShardedRun when `ranks` is given (ranks as threads of one process: tests), when the job
// was launched on several ranks (torchrun, mpirun, srun), or when dist.strategy is set; a
// SingleProcess otherwise.
std::unique_ptr<Parallelism> make_parallelism(const ParallelOptions& o,
                                              std::unique_ptr<Communicator> ranks = nullptr);
// The plain single-process case, whatever the launcher says (the one-GPU bench).
std::unique_ptr<Parallelism> make_single_process(const ParallelOptions& o);

}  // namespace tl
