// Checkpoints of a run: written in the step, or by a background thread while training goes
// on (checkpoint.async; on several ranks too: each writes its shard in the background, and
// the set is committed once all are done); retention after each (trainer.h).
#include <chrono>
#include <filesystem>
#include <thread>

#include "checkpoint/run_folder.h"
#include "core/log.h"
#include "train/trainer.h"

namespace tl {

namespace {
[[noreturn]] void fail_save(int64_t step, const std::string& why, const std::string& previous) {
  fail("cannot save the checkpoint of step ", step, ": ", why, ". ",
       previous.empty() ? std::string("No earlier checkpoint exists")
                        : "The previous checkpoint '" + previous + "' is intact",
       "; free space or fix the folder, then continue with --resume auto");
}
}  // namespace

std::string Trainer::save() {
  finish_background_save(true);  // one write at a time; a failed one stops the run here
  Timer copy;
  CheckpointData ck;
  ck.meta = json{
      {"format", "tinyllama-train"},
      {"model", cfg_.model.to_json()},
      {"train_config", cfg_.raw},
      {"step", step_},
      {"optimizer_steps", par_->optimizer().steps_taken()},
      {"tokens", tokens_seen_},
      {"skipped_steps", guard_.bad_total()},
      {"health", guard_.state()},
      {"elapsed_seconds", elapsed()},
      {"rng",
       {{"seed", cfg_.train.seed}, {"note", "counter-based: the loader state is the RNG state"}}},
      {"loader", loader_->state()}};
  const std::string& run_dir = cfg_.train.run_dir;
  const bool finite = par_->collect(ck);  // one process: the state to host memory
  const std::string previous = find_latest_checkpoint(run_dir);
  if (!finite) {
    // The newest checkpoint must always be one worth resuming from.
    if (is_rank0())
      log_warn("not saving step ", step_, ": the weights hold non-finite values; ",
               previous.empty() ? std::string("there is no checkpoint yet")
                                : "'" + previous + "' stays the newest checkpoint");
    return "";
  }
  // Ranks write a step folder (collective: every rank its shard, rank 0 meta.json last);
  // the free space asked for is the whole set's, on every rank.
  const std::string path = par_->checkpoint_path(run_dir, step_);
  const uint64_t need = 3 * uint64_t(model_->layout().total()) * sizeof(float) + (1 << 20);
  const int sleep_ms = debug_save_sleep_ms_;
  const auto before_commit = [sleep_ms] {
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  };
  const bool background = cfg_.checkpoint.async;
  Timer t;
  try {
    std::error_code ec;
    const auto space = std::filesystem::space(checkpoint_dir(run_dir), ec);
    TL_CHECK(ec || space.available >= need, "the disk is full: the checkpoint needs about ",
             need >> 20, " MiB and ", space.available >> 20, " MiB are free");
    par_->begin_save(path);
    if (background) {
      // The host copy moves to the writer; training goes on with the device state. The
      // ranks complete the set once every one of them is done (finish_background_save).
      background_.step = step_;
      background_.path = path;
      background_.previous = previous;
      background_.meta = ck.meta;
      background_.copy_seconds = copy.seconds();
      const Parallelism* par = par_.get();  // outlives background_ (declared before it)
      background_.seconds = std::async(std::launch::async,
                                       [par, path, data = std::move(ck), before_commit]() mutable {
                                         Timer w;
                                         par->write(path, std::move(data), before_commit);
                                         return w.seconds();
                                       });
    } else {
      const json meta = ck.meta;
      par_->write(path, std::move(ck), before_commit);
      par_->commit_save(path, meta);
    }
  } catch (const Error& e) {
    fail_save(step_, e.what(), previous);
  }
  last_saved_ = step_;
  last_saved_path_ = path;
  if (!background && is_rank0()) record_saved(step_, path, t.seconds(), -1);
  return path;
}

void Trainer::finish_background_save(bool block) {
  BackgroundSave& b = background_;
  if (!b.seconds.valid()) return;  // the same on every rank: saves start at the same step
  // Several ranks: they agree that every rank's write returned (a small collective each
  // step while a write is in flight), so that all of them commit at the same step.
  const bool ready =
      block || b.seconds.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  if (!par_->all_true(ready)) return;
  double seconds = 0;
  std::string error;
  try {
    seconds = b.seconds.get();
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!par_->all_true(error.empty()))
    fail_save(b.step,
              error.empty() ? "another rank could not write its shard (see its log)" : error,
              b.previous);
  try {
    par_->commit_save(b.path, b.meta);
  } catch (const Error& e) {
    fail_save(b.step, e.what(), b.previous);
  }
  if (is_rank0()) record_saved(b.step, b.path, seconds, b.copy_seconds);
}

void Trainer::record_saved(int64_t step, const std::string& path, double seconds,
                           double copy_seconds) {
  // Retention counts files and folders alike; rank 0 prunes once the set is complete.
  const int pruned =
      prune_checkpoints(cfg_.train.run_dir, cfg_.checkpoint.keep, cfg_.checkpoint.keep_every);
  const bool background = copy_seconds >= 0;
  log_info("saved ", path, " in ", format_duration(seconds),
           background ? cat(" in the background (the step paid ", format_duration(copy_seconds),
                            " for the host copy)")
                      : std::string(),
           pruned ? cat(" (", pruned, " old removed)") : std::string());
  json event{{"step", step}, {"event", "checkpoint"}, {"seconds", seconds}};
  if (background) event["copy_seconds"] = copy_seconds;
  metrics_->write(event);
}

}  // namespace tl
