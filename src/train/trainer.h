// The training loop: data, micro-batch accumulation, AdamW step, validation, checkpoints,
// resume, and what people watch (console, metrics.jsonl, TensorBoard).
//
// Determinism: a run is a pure function of its config. Weights start from the seed
// (generated on the host, the same on every backend); the data order is a hash of (seed,
// counters) (data/loader.h); nothing else draws random numbers (no dropout). So the "RNG
// state" is the seed plus counters, and a checkpoint stores every counter (loader state,
// optimizer step, step and token counts, the step guard's running mean): N steps, resume,
// N steps equal 2N steps bit for bit on the CPU, and on a GPU whose kernels are
// deterministic.
//
// Run folder:
//   config.json            the resolved config of the latest start
//   metrics.jsonl          one JSON object per step, validation or event (metrics.h)
//   events.out.tfevents.*  TensorBoard scalars (tensorboard.h)
//   checkpoints/           step_*.tlck, or step_*/ folders of a sharded run, and retention
//                          (checkpoint_policy.h, dist/sharded_checkpoint.h)
//   .lock                  held while a trainer runs (run_lock.h)
//
// Multi-GPU (dist_, train/dist_run.h): every rank runs a Trainer over the same run folder.
// Each reads its own blocks, the loss and token counts are global, the optimizer steps this
// rank's shard, and checkpoints are sharded folders (collective saves and loads). Rank 0
// alone holds the lock, cleans up, prunes, quarantines and writes config.json, metrics,
// TensorBoard and the console; the ranks agree (a collective) on every decision that
// changes what they do next: which checkpoint resumes, whether a save happens, when a
// stop signal ends the loop.
#pragma once
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/timer.h"
#include "data/loader.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "train/dist_run.h"
#include "train/metrics.h"
#include "train/run_lock.h"
#include "train/step_health.h"
#include "train/tensorboard.h"
#include "train/train_config.h"

namespace tl {

struct CheckpointData;
namespace eval {
class TrainingTaskEval;
}

struct TrainSummary {
  int64_t steps = 0;
  double first_val_loss = -1, final_val_loss = -1;  // -1 when not measured
  double final_train_loss = 0;
  std::string final_checkpoint;
  double seconds = 0;
  bool stopped = false;  // a stop signal ended the run early (after saving)
  int64_t skipped_steps = 0, spikes = 0;
};

class Trainer {
 public:
  // resume: "" (fresh run; refuses a run_dir that already has checkpoints), "auto" (the
  // newest checkpoint that verifies, damaged ones reported and set aside; a fresh start
  // when there is none), or a path.
  // init_from: a checkpoint whose weights start a fresh run (step 0, new optimizer state);
  // its model config must equal the config's. A resumed run ignores it.
  // ranks: this rank's communicator when ranks run as threads of one process (tests);
  // launched jobs (torchrun, mpirun, srun) are detected from the environment.
  Trainer(TrainConfig cfg, const std::string& resume, const std::string& init_from = "",
          std::unique_ptr<Communicator> ranks = nullptr);
  ~Trainer();
  // Trains to cfg.steps or until a stop signal; saves at the end. Throws when the step
  // guard gives up (train.max_bad_steps) or a checkpoint cannot be written.
  TrainSummary run();

  LlamaModel& model() { return *model_; }
  // For tests: runs after each step's gradients exist and before the update (NaN injection).
  void set_fault_hook(std::function<void(int64_t step, LlamaModel&)> hook) {
    fault_hook_ = std::move(hook);
  }
  // Multi-GPU runs: tell the other ranks why this one stops (call before rethrowing).
  void report_failure(const std::string& why) {
    if (dist_) dist_->report_failure(why);
  }

 private:
  void start(const std::string& resume, const std::string& init_from);
  bool try_resume_auto();
  std::string read_for_resume(const std::string& path, CheckpointData& ck);
  void restore(const CheckpointData& ck, const std::string& path);
  // --init-from PATH, loaded and checked against the config (applied by start()).
  CheckpointData read_init_weights(const std::string& path) const;
  double validate();
  void record_validation(double loss);
  void record_task_evals();  // eval.tasks: scored and logged with each validation
  std::string save();
  // checkpoint.async: the background write of the last save, if any. Waits for it (or, with
  // block false, only looks whether it is done), then logs, records and prunes as save()
  // does; a failed write stops the run with save()'s message.
  void finish_background_save(bool block);
  // Prunes, logs and records a written checkpoint (copy_seconds < 0: written in the step).
  void record_saved(int64_t step, const std::string& path, double seconds, double copy_seconds);
  void record_step(double loss, double lr, const StepResult& r, const StepVerdict& v,
                   double step_seconds, double smoothed_seconds);
  double elapsed() const;
  // Sharded runs (dist_): the optimizer lives with the shard, batches are global.
  AdamW& optim() { return dist_ ? dist_->optimizer() : *opt_; }
  int64_t tokens_per_step() const { return cfg_.tokens_per_step() * (dist_ ? dist_->world() : 1); }
  bool is_rank0() const { return !dist_ || dist_->rank() == 0; }
  // Whether every rank says yes (a collective in a sharded run; `mine` alone otherwise).
  bool all_ranks(bool mine) { return dist_ ? dist_->all_true(mine) : mine; }
  bool stop_now() const;  // a stop signal (agreed by every rank in a sharded run)

  TrainConfig cfg_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<DistRun> dist_;  // null in a single-process run; outlives model_, not be_
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<TrainLoader> loader_;
  std::unique_ptr<SequentialBlocks> val_;
  std::unique_ptr<eval::TrainingTaskEval> task_eval_;  // eval.tasks, when configured
  std::unique_ptr<RunLock> lock_;
  std::unique_ptr<MetricsWriter> metrics_;   // rank 0 only (null on the others)
  std::unique_ptr<TensorBoardWriter> tb_;    // rank 0 only
  StepHealth health_;
  std::function<void(int64_t, LlamaModel&)> fault_hook_;
  int64_t step_ = 0;              // optimizer steps completed (skipped ones included)
  double data_wait_seconds_ = 0;  // this step's time blocked on the data loader
  int64_t tokens_seen_ = 0;
  int64_t last_saved_ = -1;   // step of the newest checkpoint this process wrote or loaded
  std::string last_saved_path_;
  double elapsed_before_ = 0; // training seconds of earlier processes (resumed runs)
  Timer run_clock_;           // started when run() begins
  bool running_ = false;
  double peak_flops_ = 0;     // 0 when the device's peak is unknown
  int debug_save_sleep_ms_ = 0;  // TL_DEBUG_CHECKPOINT_SLEEP_MS: crash tests widen the write
  bool stop_agreed_ = false;  // sharded runs: some rank saw a stop signal (agreed each step)
  struct BackgroundSave {
    std::future<double> seconds;  // of the write; rethrows its error
    int64_t step = -1;
    std::string path, previous;   // what is written, and the newest complete one before it
    double copy_seconds = 0;      // the part the step paid for: the state to host memory
  };
  BackgroundSave background_;     // last: destroyed (and so waited for) first
};

// Newest complete checkpoint in run_dir/checkpoints by name: a step_*.tlck file or a
// step_*/ folder holding meta.json (contents not verified; the trainer verifies on load and
// falls back); "" if none.
std::string find_latest_checkpoint(const std::string& run_dir);
// SIGINT/SIGTERM set a flag: the loop finishes its step, saves and returns (exit 0). A
// second signal kills at once (the newest checkpoint stays valid: writes are atomic).
void install_stop_signal_handlers();
bool stop_requested();

}  // namespace tl
