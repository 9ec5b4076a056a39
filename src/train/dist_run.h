// The trainer's side of multi-GPU training: one object the Trainer asks for the backend,
// the model's parameter provider (FSDP), the optimizer step, the global loss and the
// sharded checkpoints. Null in a single-process run, which stays as it was.
//
// Global batch = micro_batch x grad_accum x world: each rank reads its own blocks
// (TrainLoader rank/world) and the loss scale divides by the global token count, so the
// summed gradients are those of one rank with the same global batch.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "checkpoint/checkpoint.h"
#include "backend/backend.h"
#include "parallel/bootstrap.h"
#include "parallel/fsdp.h"
#include "model/llama.h"
#include "train/train_config.h"

namespace tl {

class DistRun {
 public:
  // Null unless launched on several ranks or cfg.dist.strategy is set. `ranks`: this
  // rank's world communicator when the ranks are threads of one process (tests).
  static std::unique_ptr<DistRun> create(const TrainConfig& cfg,
                                         std::unique_ptr<Communicator> ranks = nullptr);
  ~DistRun();  // on an exception, tells the other ranks this one stopped

  std::unique_ptr<Backend> make_backend(const TrainConfig& cfg) const;  // this rank's GPU
  void connect(Backend& be);  // rendezvous, communicators, health links, FSDP groups
  // The model's parameter provider (FSDP over this rank's shard). Lives as long as this.
  ParamProvider* provider(const TrainConfig& cfg, Backend& be);

  int rank() const { return launch_.rank; }
  int world() const { return launch_.world; }
  std::string describe() const;

  void begin_micro_batch(bool last) { fsdp_->begin_micro_batch(last); }
  StepResult step(float lr) { return fsdp_->step(lr); }
  AdamW& optimizer() { return fsdp_->optimizer(); }
  // The step's loss summed over ranks, and whether any rank saw a stop signal (`stop` in:
  // this rank's, out: anyone's), in one collective.
  LossSum global_loss(const LossSum& local, bool& stop);
  // True when `mine` is true on every rank (collective).
  bool all_true(bool mine);
  // Whether every rank's master-weight shard is finite (collective).
  bool weights_finite();
  double take_comm_wait_seconds() { return fsdp_->take_comm_wait_seconds(); }

  // Writes the sharded checkpoint folder `path` (collective: every rank calls it; meta.json
  // last). Retention is the trainer's (checkpoint/run_folder.h), on rank 0.
  void save(const std::string& path, const json& meta,
            const std::function<void()>& before_commit = {});
  // Reads a sharded folder or a single-file checkpoint: this rank's shard into ck.params,
  // adam_m, adam_v (shard-sized) and the training meta into ck.meta. Files only: no
  // collective, nothing changes, so the ranks can agree on the outcome before apply().
  void read(const std::string& path, CheckpointData& ck) const;
  // Sets this rank's shard from read()'s result (collective).
  void apply(const CheckpointData& ck);

  // This rank's error, sent to every rank before it unwinds.
  void report_failure(const std::string& why);

 private:
  DistRun() = default;
  TrainConfig cfg_;
  LaunchInfo launch_;
  std::unique_ptr<Communicator> injected_;   // in-process ranks (tests)
  std::unique_ptr<DistSession> session_;     // launched processes
  Communicator* world_ = nullptr;
  ShardStrategy strategy_ = ShardStrategy::FullShard;
  FsdpGroups groups_;
  std::unique_ptr<Fsdp> fsdp_;
  Backend* be_ = nullptr;
  Buffer loss_buf_;  // f64 [3] for global_loss
  Buffer flag_buf_;  // f64 [1] for all_true
  bool reported_ = false;
};

}  // namespace tl
