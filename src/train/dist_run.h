// The trainer's side of multi-GPU training: one object the Trainer asks for the backend,
// the model's parameter provider (FSDP), the optimizer step, the global loss and the
// sharded checkpoints. Null in a single-process run, which stays as it was.
//
// Global batch = micro_batch x grad_accum x world: each rank reads its own blocks
// (TrainLoader rank/world) and the loss scale divides by the global token count, so the
// summed gradients are those of one rank with the same global batch.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "dist/bootstrap.h"
#include "dist/fsdp.h"
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
  LossSum global_loss(const LossSum& local);  // summed over ranks (collective)
  double take_comm_wait_seconds() { return fsdp_->take_comm_wait_seconds(); }

  // A sharded checkpoint folder checkpoint_dir/step_%08d (collective); prunes to `keep`.
  std::string save(const std::string& checkpoint_dir, int64_t step, const json& meta, int keep);
  // A sharded folder or a single-file checkpoint into this rank's shard; returns its meta.
  json restore(const std::string& path);

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
  Buffer loss_buf_;  // f64 [2] for global_loss
  bool reported_ = false;
};

}  // namespace tl
