// What a start reads before training: --resume (a path, or auto: the newest checkpoint
// that verifies) and --init-from, and the run folder it sets up (trainer.h).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "checkpoint/load.h"
#include "checkpoint/run_folder.h"
#include "core/fs.h"
#include "core/log.h"
#include "model/param_check.h"
#include "train/resume_policy.h"
#include "train/trainer.h"

namespace tl {

void Trainer::start(const std::string& resume, const std::string& init_from) {
  // Inputs from outside the run folder are read and checked before anything is created:
  // a damaged --resume PATH or --init-from leaves no run folder behind (the data shards'
  // headers were checked by the loader, in the constructor).
  bool restored = false;
  if (!resume.empty() && resume != "auto") {
    CheckpointData ck;  // a file, or a sharded folder (one process reads it as one model)
    const std::string damage = read_for_resume(resume, ck);
    if (!par_->all_true(damage.empty()))
      fail(damage.empty() ? cat("cannot resume from '", resume, "': another rank could not read it")
                          : damage);
    restore(ck, resume);
    restored = true;
  }
  // --init-from matters only to a fresh run; resume auto over existing checkpoints ignores it.
  CheckpointData init;
  const std::string& run_dir = cfg_.train.run_dir;
  const bool fresh = resume.empty() || (resume == "auto" && list_checkpoints(run_dir).empty());
  if (!init_from.empty() && fresh) init = read_init_weights(init_from);

  const std::string ck_dir = checkpoint_dir(run_dir);
  make_dirs(ck_dir);
  if (is_rank0()) {  // the ranks of one job share the folder: rank 0 speaks for them
    lock_ = std::make_unique<RunLock>(run_dir);
    remove_stale_temp_files(run_dir);
  }
  {  // find out now, not hours from now at the first checkpoint (every rank writes a shard)
    const std::string probe = cat(ck_dir, "/.write_test.", par_->rank());
    std::FILE* f = std::fopen(probe.c_str(), "wb");
    TL_CHECK(f, "the checkpoint folder '", ck_dir, "' is not writable: ", std::strerror(errno));
    std::fclose(f);
    std::remove(probe.c_str());
  }

  if (resume == "auto") {
    if (!try_resume_auto()) log_info("resume auto: no checkpoint in ", run_dir, ", starting fresh");
  } else if (!restored) {
    TL_CHECK(list_checkpoints(run_dir).empty(), "run folder '", run_dir,
             "' already holds checkpoints; use --resume auto to continue it, or another run_dir");
  }
  if (!resumed_) {
    if (init_from.empty()) {
      model_->init_weights(cfg_.train.seed);
    } else {
      if (init.params.empty()) init = read_init_weights(init_from);  // checkpoints vanished since
      model_->set_params(init.params);
      log_info("initialized the weights from ", init_from, " (step 0, fresh optimizer state)");
    }
  }

  if (is_rank0()) open_run_records();  // one config.json, metrics.jsonl and TensorBoard file
}

void Trainer::open_run_records() {
  const std::string& run_dir = cfg_.train.run_dir;
  write_file_atomic(run_dir + "/config.json", cfg_.raw.dump(2) + "\n");
  // Records past the restart point describe steps this run redoes: drop them.
  const int64_t newest = rewind_metrics(run_dir + "/metrics.jsonl", step_);
  const int64_t redo = std::max<int64_t>(0, newest - step_);
  metrics_ = std::make_unique<MetricsWriter>(run_dir + "/metrics.jsonl");
  tb_ = std::make_unique<TensorBoardWriter>(run_dir);
  tb_->session_start(step_ + 1);
  if (redo > 0) log_warn(redo, " steps logged after step ", step_, " are lost and will be redone");
  metrics_->write(json{{"step", step_},
                       {"event", resumed_ ? "resume" : "start"},
                       {"redo_steps", redo},
                       {"pid", int64_t(::getpid())}});
}

// Newest checkpoint first; one that fails to load (truncated, CRC, a sharded folder with a
// missing or mixed shard) is renamed aside and the next older one is tried. Refusals
// (another model) are not damage: they propagate. Step folders without meta.json are not
// checkpoints (a save that did not finish): they are not even candidates. In a sharded
// run every rank reads each candidate and the ranks agree before one is used or set aside.
bool Trainer::try_resume_auto() {
  const std::string& run_dir = cfg_.train.run_dir;
  std::vector<CheckpointFile> files = list_checkpoints(run_dir);
  if (is_rank0())
    for (const CheckpointFile& f : list_incomplete_checkpoints(run_dir))
      log_warn("skipping checkpoint folder '", f.path,
               "': it has no meta.json (its save did not finish)");
  int damaged = 0;
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    CheckpointData ck;
    const std::string damage = read_for_resume(it->path, ck);
    if (!par_->all_true(damage.empty())) {  // every rank has finished reading it: set it aside
      ++damaged;
      if (is_rank0())
        log_warn("skipping damaged checkpoint: ",
                 damage.empty() ? cat("'", it->path, "': another rank could not read it") : damage,
                 "; moved to '", quarantine_checkpoint(it->path), "'");
      else if (!damage.empty())
        log_warn("skipping damaged checkpoint: ", damage);
      continue;
    }
    restore(ck, it->path);
    return true;
  }
  TL_CHECK(damaged == 0, "resume auto: none of the ", damaged, " checkpoints in '",
           checkpoint_dir(run_dir),
           "' is valid (each was renamed *.damaged); refusing to "
           "start over in this run folder");
  return false;
}

// Reads what this process holds of `path` into ck (ranks: their shard). Damage
// (unreadable, truncated, CRC, incomplete set) comes back as the message; a checkpoint of
// another model throws (a refusal, found from its meta before the weights are read).
std::string Trainer::read_for_resume(const std::string& path, CheckpointData& ck) {
  json meta;
  try {
    meta = read_any_checkpoint_meta(path);
  } catch (const Error& e) {
    return e.what();
  }
  check_same_model(meta.at("model"), cfg_.model, path);
  try {
    par_->read(path, ck);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void Trainer::restore(const CheckpointData& ck, const std::string& path) {
  check_same_model(ck.meta.at("model"), cfg_.model, path);
  TL_CHECK(!ck.adam_m.empty(), "cannot resume from '", path,
           "': it holds no optimizer state (a model-only checkpoint cannot continue a run)");
  const json saved_cfg = ck.meta.value("train_config", json::object());
  const int saved_world = ck.meta.value("dist", json::object()).value("world", 1);
  const int world = par_->world();
  if (saved_world != world && is_rank0()) {
    const json b = saved_cfg.value("batch", json::object());
    const TrainConfig d;
    const int64_t before = int64_t(saved_world) * b.value("micro_batch", d.batch.micro_batch) *
                           b.value("grad_accum", d.batch.grad_accum);
    const int64_t now = int64_t(world) * cfg_.batch.micro_batch * cfg_.batch.grad_accum;
    if (before == now)
      log_info("resuming a checkpoint of ", saved_world, " rank(s) on ", world,
               ": the global batch stays ", now, " sequences");
    else
      log_warn("resuming a checkpoint of ", saved_world, " rank(s) on ", world,
               ": the global batch (micro_batch x grad_accum x ranks) changes from ", before,
               " to ", now, " sequences per step");
  }
  // Rank 0 reports for the job.
  for (const ConfigChange& c :
       is_rank0() ? config_changes(saved_cfg, cfg_.raw) : std::vector<ConfigChange>()) {
    if (c.routine)
      log_info("config change on resume: ", c.key, ": ", c.before, " -> ", c.after);
    else
      log_warn("config change on resume: ", c.key, ": ", c.before, " -> ", c.after,
               " (the continued run differs from the one first planned)");
    const bool decay_follows = !cfg_.raw.value("optim", json::object()).contains("decay_steps");
    if (c.key == "train.steps" && decay_follows)
      log_warn("optim.decay_steps follows train.steps: the cosine decay now spans ",
               cfg_.optim.schedule.decay_steps,
               " steps and the lr jumps at the restart (set "
               "optim.decay_steps to keep the old schedule)");
  }
  loader_->restore(ck.meta.at("loader"));  // refuses another data order, naming the field
  par_->apply(ck);  // ranks: their shard (read for this sharding, any world that wrote it)
  step_ = ck.meta.at("step").get<int64_t>();
  par_->optimizer().set_steps_taken(ck.meta.at("optimizer_steps").get<int64_t>());
  tokens_seen_ = ck.meta.value("tokens", int64_t(0));
  elapsed_before_ = ck.meta.value("elapsed_seconds", 0.0);
  guard_.restore(ck.meta.value("health", json::object()));
  resumed_ = true;
  // A checkpoint of another run folder (or of another format: a one-GPU file continued on
  // ranks) is not this run's: the run still ends with its last step saved in its own folder
  // (so that resuming at the last step reshards: dist_check's bitwise reload).
  std::error_code ec;
  if (std::filesystem::equivalent(path, par_->checkpoint_path(cfg_.train.run_dir, step_), ec)) {
    last_saved_ = step_;
    last_saved_path_ = path;
  }
  log_info("resumed from ", path, " at step ", step_);
}

CheckpointData Trainer::read_init_weights(const std::string& path) const {
  CheckpointData ck = load_any_checkpoint(path, /*with_optimizer=*/false);
  TL_CHECK(ck.meta.contains("model"), "cannot init from '", path, "': it has no model config");
  const ArchitectureDifference d =
      architecture_difference(ModelConfig::from_json(ck.meta["model"]), cfg_.model);
  TL_CHECK(d.none(), "cannot init from '", path, "': model.", d.key, " is ", d.a, " there but ",
           d.b, " in this config; its model section is ", ck.meta["model"].dump());
  TL_CHECK(int64_t(ck.params.size()) == model_->layout().total(), "cannot init from '", path,
           "': it holds ", ck.params.size(), " parameters, this model has ",
           model_->layout().total());
  const std::string bad = describe_non_finite(ck.params, model_->layout());
  TL_CHECK(bad.empty(), "cannot init from '", path, "': ", bad,
           "; refusing to train from non-finite weights");
  return ck;
}

}  // namespace tl
