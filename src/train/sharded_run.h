// Parallelism over the ranks of a job (train/parallelism.h): FSDP (parallel/fsdp.h) holds
// this rank's shard of the weights and the optimizer state, the loss and decisions are
// global, checkpoints are sharded folders written and read collectively. Also what the
// sharded bench measures with (communication wait, statistics over ranks).
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "checkpoint/sharded.h"
#include "parallel/bootstrap.h"
#include "parallel/fsdp.h"
#include "train/parallelism.h"

namespace tl {

class ShardedRun final : public Parallelism {
 public:
  // ranks: this rank's world communicator when the ranks are threads of one process
  // (tests); null for launched processes (the session is started in connect()).
  ShardedRun(ParallelOptions o, LaunchInfo launch, std::unique_ptr<Communicator> ranks);
  ~ShardedRun() override;  // on an exception, tells the other ranks this one stopped

  std::unique_ptr<Backend> make_backend() const override;  // this rank's GPU
  void connect(Backend& be) override;  // rendezvous, communicators, health links, FSDP
  ParamProvider* provider() override { return fsdp_.get(); }
  void attach(LlamaModel&) override {}

  int rank() const override { return launch_.rank; }
  int world() const override { return launch_.world; }
  AdamW& optimizer() override { return fsdp_->optimizer(); }

  void begin_micro_batch(bool last) override { fsdp_->begin_micro_batch(last); }
  LossSum global_loss(const LossSum& local) override;
  StepResult update(float lr) override { return fsdp_->step(lr); }
  bool should_stop() const override { return stop_agreed_; }
  bool all_true(bool mine) override;

  std::string checkpoint_path(const std::string& run_dir, int64_t step) const override;
  bool collect(CheckpointData& ck) override;  // this rank's shard, if it writes one
  void begin_save(const std::string& path) override;
  void write(const std::string& path, CheckpointData ck,
             const std::function<void()>& before_commit) const override;
  void commit_save(const std::string& path, const json& meta) override;
  void read(const std::string& path, CheckpointData& ck) const override;
  // Sets the shard state; after a sharded folder's read, rank 0 logs what the ranks read.
  void apply(const CheckpointData& ck) override;
  void report_failure(const std::string& why) override;

  // "4 rank(s), strategy full_shard, shard groups of 2, 2 replica(s)"
  std::string describe() const;
  std::string strategy() const { return strategy_name(strategy_); }
  // "shard groups of 2, 2 replica(s)"
  std::string layout() const;
  // Seconds the compute stream waited on communication since the last call (0 on CPU).
  double take_comm_wait_seconds() { return fsdp_->take_comm_wait_seconds(); }
  // values[n] (host) <- op over every rank's values (collective).
  void all_reduce(double* values, int n, ReduceOp op);
  // Blocks until this rank's queued collectives are done.
  void synchronize() { world_->synchronize(); }

 private:
  ParallelOptions o_;
  LaunchInfo launch_;
  std::unique_ptr<Communicator> injected_;  // in-process ranks (tests)
  std::unique_ptr<DistSession> session_;    // launched processes
  Communicator* world_ = nullptr;
  ShardStrategy strategy_ = ShardStrategy::FullShard;
  FsdpGroups groups_;
  std::unique_ptr<Fsdp> fsdp_;
  Backend* be_ = nullptr;
  Buffer reduce_buf_;                    // f64 [kMaxReduce] for all_reduce
  mutable ShardedReadStats read_stats_;  // of the last read() of a sharded folder
  bool stop_agreed_ = false;
  bool reported_ = false;
  static constexpr int kMaxReduce = 4;
};

}  // namespace tl
