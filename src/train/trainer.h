// The training loop: data, micro-batch accumulation, AdamW step, logging, validation,
// checkpoints and resume.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "data/loader.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "train/dist_run.h"
#include "train/metrics.h"
#include "train/train_config.h"

namespace tl {

struct TrainSummary {
  int64_t steps = 0;
  double first_val_loss = -1, final_val_loss = -1;  // -1 when no validation data
  double final_train_loss = 0;
  std::string final_checkpoint;
  double seconds = 0;
};

class Trainer {
 public:
  // resume: "" (fresh run; refuses a run_dir that already has checkpoints), "auto" (the
  // newest valid checkpoint in run_dir, or a fresh start when there is none), or a path.
  // ranks: this rank's communicator when ranks run as threads of one process (tests);
  // launched jobs (torchrun, mpirun, srun) are detected from the environment.
  Trainer(TrainConfig cfg, const std::string& resume,
          std::unique_ptr<Communicator> ranks = nullptr);
  ~Trainer();
  TrainSummary run();

  LlamaModel& model() { return *model_; }
  // Multi-GPU runs: tell the other ranks why this one stops (call before rethrowing).
  void report_failure(const std::string& why) {
    if (dist_) dist_->report_failure(why);
  }

 private:
  void resume_from(const std::string& path);
  double validate();
  std::string save(int64_t step);
  void log_step(int64_t step, double loss, double lr, const StepResult& r, double step_seconds);
  // Sharded runs (dist_): the optimizer lives with the shard, batches are global.
  AdamW& optim() { return dist_ ? dist_->optimizer() : *opt_; }
  int64_t tokens_per_step() const { return cfg_.tokens_per_step() * (dist_ ? dist_->world() : 1); }
  bool is_rank0() const { return !dist_ || dist_->rank() == 0; }

  TrainConfig cfg_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<DistRun> dist_;  // null in a single-process run; outlives model_, not be_
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<TrainLoader> loader_;
  std::unique_ptr<SequentialBlocks> val_;
  std::unique_ptr<MetricsWriter> metrics_;
  int64_t step_ = 0;        // optimizer steps completed
  int64_t tokens_seen_ = 0;
  int64_t skipped_steps_ = 0;
  double elapsed_ = 0;      // training seconds before this process (resumed runs)
};

// Newest checkpoint in dir/checkpoints that loads; "" if none. Damaged ones are reported.
std::string find_latest_checkpoint(const std::string& run_dir);
// Set by SIGINT/SIGTERM: the loop finishes its step, saves and returns.
void install_stop_signal_handlers();
bool stop_requested();

}  // namespace tl
