// The training loop: data, train_step (train_step.h), validation, checkpoints, resume, and
// what people watch (console, metrics.jsonl, TensorBoard: observe/).
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
//   metrics.jsonl          one JSON object per step, validation or event (observe/metrics.h)
//   events.out.tfevents.*  TensorBoard scalars (observe/tensorboard.h)
//   checkpoints/           step_*.tlck, or step_*/ folders of a sharded run, and retention
//                          (checkpoint/run_folder.h)
//   .lock                  held while a trainer runs (run_lock.h)
//
// Several ranks (train/sharded_run.h): every rank runs a Trainer over the same run folder.
// Each reads its own blocks, the loss and token counts are global, the optimizer steps this
// rank's shard, and checkpoints are sharded folders (collective saves and loads). Rank 0
// alone holds the lock, cleans up, prunes, quarantines and writes config.json, metrics,
// TensorBoard and the console; the ranks agree (a collective) on every decision that
// changes what they do next: which checkpoint resumes, whether a save happens, when a
// stop signal ends the loop. The trainer asks Parallelism (parallelism.h) for all of it.
//
// The code: trainer.cpp (set-up and the loop), trainer_resume.cpp (what a start reads:
// --resume, --init-from), trainer_save.cpp (checkpoints, in the step or in the background).
#pragma once
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/timer.h"
#include "data/loader.h"
#include "model/llama.h"
#include "observe/metrics.h"
#include "observe/tensorboard.h"
#include "optim/adamw.h"
#include "train/parallelism.h"
#include "train/run_lock.h"
#include "train/step_guard.h"
#include "train/stop_signal.h"
#include "train/train_config.h"
#include "train/train_step.h"

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
  // its model must be the config's network (same_architecture). A resumed run ignores it.
  // ranks: this rank's communicator when ranks run as threads of one process (tests);
  // launched jobs (torchrun, mpirun, srun) are detected from the environment.
  Trainer(TrainConfig cfg, const std::string& resume, const std::string& init_from = "",
          std::unique_ptr<Communicator> ranks = nullptr);
  ~Trainer();
  // Trains to train.steps or until a stop signal; saves at the end. Throws when the step
  // guard gives up (train.max_bad_steps) or a checkpoint cannot be written.
  TrainSummary run();

  LlamaModel& model() { return *model_; }
  // For tests: runs after each step's gradients exist and before the update (NaN injection).
  void set_fault_hook(std::function<void(int64_t step, LlamaModel&)> hook) {
    fault_hook_ = std::move(hook);
  }
  // Several ranks: tell the other ranks why this one stops (call before rethrowing).
  void report_failure(const std::string& why) { par_->report_failure(why); }

 private:
  // trainer_resume.cpp
  void start(const std::string& resume, const std::string& init_from);
  bool try_resume_auto();
  std::string read_for_resume(const std::string& path, CheckpointData& ck);
  void restore(const CheckpointData& ck, const std::string& path);
  // --init-from PATH, loaded and checked against the config (applied by start()).
  CheckpointData read_init_weights(const std::string& path) const;
  void open_run_records();  // rank 0: config.json, metrics.jsonl, TensorBoard
  // trainer_save.cpp
  std::string save();
  // checkpoint.async: the background write of the last save, if any. Waits for it (or, with
  // block false, only looks whether it is done), then logs, records and prunes as save()
  // does; a failed write stops the run with save()'s message.
  void finish_background_save(bool block);
  // Prunes, logs and records a written checkpoint (copy_seconds < 0: written in the step).
  void record_saved(int64_t step, const std::string& path, double seconds, double copy_seconds);
  // trainer.cpp
  double validate();
  void record_validation(double loss);
  void record_task_evals();  // eval.tasks: scored and logged with each validation
  void record_step(const StepOutcome& s, double lr, const StepVerdict& v, double step_seconds,
                   double smoothed_seconds);
  void record_fp8();  // train.precision fp8, at log intervals (every rank)
  [[noreturn]] void stop_on_bad_steps();
  double elapsed() const;
  int64_t tokens_per_step() const { return cfg_.tokens_per_step() * par_->world(); }
  bool is_rank0() const { return par_->rank() == 0; }

  TrainConfig cfg_;
  std::unique_ptr<Backend> be_;       // made by par_; outlives everything that uses it
  std::unique_ptr<Parallelism> par_;  // one process or the ranks of a job; outlives model_
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<TrainLoader> loader_;
  std::unique_ptr<SequentialBlocks> val_;
  std::unique_ptr<eval::TrainingTaskEval> task_eval_;  // eval.tasks, when configured
  std::unique_ptr<RunLock> lock_;
  std::unique_ptr<MetricsWriter> metrics_;  // rank 0 only (null on the others)
  std::unique_ptr<TensorBoardWriter> tb_;   // rank 0 only
  StepGuard guard_;
  std::function<void(int64_t, LlamaModel&)> fault_hook_;
  int64_t step_ = 0;              // optimizer steps completed (skipped ones included)
  double data_wait_seconds_ = 0;  // this step's time blocked on the data loader
  int64_t tokens_seen_ = 0;
  bool resumed_ = false;     // the state came from a checkpoint (else: init or --init-from)
  int64_t last_saved_ = -1;  // step of the newest checkpoint of this run folder written or loaded
  std::string last_saved_path_;
  double elapsed_before_ = 0;  // training seconds of earlier processes (resumed runs)
  Timer run_clock_;            // started when run() begins
  bool running_ = false;
  double peak_flops_ = 0;        // of this device; 0 when unknown
  int debug_save_sleep_ms_ = 0;  // TL_DEBUG_CHECKPOINT_SLEEP_MS: crash tests widen the write
  struct BackgroundSave {
    std::future<double> seconds;  // of the write; rethrows its error
    int64_t step = -1;
    std::string path, previous;  // what is written, and the newest complete one before it
    json meta;                   // the training meta, for commit_save
    double copy_seconds = 0;     // the part the step paid for: the state to host memory
  };
  BackgroundSave background_;  // last: destroyed (and so waited for) first
};

}  // namespace tl
