#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/shard_tokenizer.h"
#include "data/tokenizer.h"
#include "eval/train_hook.h"
#include "dist/sharded_checkpoint.h"
#include "model/param_check.h"
#include "train/bench.h"
#include "train/checkpoint_policy.h"
#include "train/console.h"
#include "train/evaluate.h"
#include "train/memory_estimate.h"
#include "train/resume_check.h"

namespace tl {

namespace {

std::atomic<bool> g_stop{false};  // written by the signal handler only

void on_stop_signal(int sig) {
  if (g_stop.exchange(true)) {  // the second signal: the user means now
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : 0;
}

}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  // Past a file-size limit, writes should fail with EFBIG (a clear error, the previous
  // checkpoint intact) rather than kill the process.
  std::signal(SIGXFSZ, SIG_IGN);
  // A log pipe that closes (a dead `| tee`) must not end a training run.
  std::signal(SIGPIPE, SIG_IGN);
}
bool stop_requested() { return g_stop.load(); }

bool Trainer::stop_now() const { return dist_ ? stop_agreed_ : stop_requested(); }

std::string find_latest_checkpoint(const std::string& run_dir) {
  std::vector<CheckpointFile> files = list_checkpoints(run_dir);
  return files.empty() ? "" : files.back().path;
}

Trainer::Trainer(TrainConfig cfg, const std::string& resume, const std::string& init_from,
                 std::unique_ptr<Communicator> ranks)
    : cfg_(std::move(cfg)), health_(cfg_.max_bad_steps, cfg_.spike_threshold) {
  dist_ = DistRun::create(cfg_, std::move(ranks));
  be_ = dist_ ? dist_->make_backend(cfg_) : make_backend(cfg_.device, cfg_.threads);
  if (dist_) dist_->connect(*be_);
  log_info("device: ", be_->describe());
  if (dist_ && cfg_.async_checkpoint)
    log_warn("checkpoint.async applies to single-process runs: the ranks of a sharded run write "
             "their checkpoints in the step");
  check_fits(estimate_training_memory(cfg_.model, cfg_.micro_batch, cfg_.seq_len,
                                      be_->compute_dtype(), cfg_.recompute),
             be_->device_memory_total(), be_->describe());
  peak_flops_ = device_peak_flops(be_->describe());

  if (!cfg_.tokenizer.empty()) {
    Tokenizer tok = Tokenizer::load(cfg_.tokenizer);
    TL_CHECK(tok.vocab_size() <= cfg_.model.vocab_size, "the tokenizer '", cfg_.tokenizer,
             "' has ", tok.vocab_size(), " pieces, more than the model's vocab_size of ",
             cfg_.model.vocab_size, " (for this tokenizer, use --set model.vocab_size=",
             tok.vocab_size(), ")");
    std::vector<std::string> shards = cfg_.val_paths;  // their manifests must name this tokenizer
    for (const DataSourceSpec& s : cfg_.sources)
      shards.insert(shards.end(), s.paths.begin(), s.paths.end());
    check_shards_tokenizer(shards, tok.path(), tok.sha256());
  }
  TrainLoaderOptions lo;
  lo.sources = cfg_.sources;
  lo.seq_len = cfg_.seq_len;
  lo.micro_batch = cfg_.micro_batch;
  lo.seed = cfg_.seed;
  lo.rank = dist_ ? dist_->rank() : 0;  // each rank reads its own blocks of the global batch
  lo.world = dist_ ? dist_->world() : 1;
  lo.shuffle_window = cfg_.shuffle_window;
  lo.vocab_size = uint64_t(cfg_.model.vocab_size);  // every block read is checked
  loader_ = std::make_unique<TrainLoader>(lo);
  TL_CHECK(loader_->max_token_id() < uint64_t(cfg_.model.vocab_size),
           "the training data holds token id ", loader_->max_token_id(),
           ", outside the model's vocab_size of ", cfg_.model.vocab_size,
           " (was it prepared with a larger tokenizer? Then set model.vocab_size to its size, "
           "e.g. --set model.vocab_size=32000 for the Llama 2 tokenizer)");
  if (!cfg_.val_paths.empty())
    val_ = std::make_unique<SequentialBlocks>(expand_shard_paths(cfg_.val_paths), cfg_.seq_len);

  ModelOptions mo;
  mo.recompute = cfg_.recompute;
  if (dist_) mo.provider = dist_->provider(cfg_, *be_);  // FSDP: weights live in the shard
  model_ = std::make_unique<LlamaModel>(cfg_.model, *be_, mo);
  if (!cfg_.eval_tasks.empty()) {  // read and tokenized now: a bad row stops us before step 1
    TL_CHECK(!dist_, "config: eval.tasks runs in single-process training only");
    task_eval_ = std::make_unique<eval::TrainingTaskEval>(
        cfg_.eval_tasks, cfg_.tokenizer, cfg_.eval_task_bos, cfg_.model.max_seq_len,
        be_->device() == Device::CUDA);
  }
  if (!dist_) opt_ = std::make_unique<AdamW>(*be_, model_->layout().total(), cfg_.adamw);
  debug_save_sleep_ms_ = env_int("TL_DEBUG_CHECKPOINT_SLEEP_MS");
  start(resume, init_from);
}

Trainer::~Trainer() = default;

void Trainer::start(const std::string& resume, const std::string& init_from) {
  // Inputs from outside the run folder are read and checked before anything is created:
  // a damaged --resume PATH or --init-from leaves no run folder behind (the data shards'
  // headers were checked by the loader, in the constructor).
  bool restored = false;
  if (!resume.empty() && resume != "auto") {
    if (!dist_) {
      restore(load_any_checkpoint(resume, true), resume);  // a file, or a sharded folder as one
    } else {
      CheckpointData ck;
      const std::string damage = read_for_resume(resume, ck);
      if (!all_ranks(damage.empty()))
        fail(damage.empty() ? cat("cannot resume from '", resume, "': another rank could not read it")
                            : damage);
      restore(ck, resume);
    }
    restored = true;
  }
  // --init-from matters only to a fresh run; resume auto over existing checkpoints ignores it.
  CheckpointData init;
  const bool fresh = resume.empty() || (resume == "auto" && list_checkpoints(cfg_.run_dir).empty());
  if (!init_from.empty() && fresh) init = read_init_weights(init_from);

  const std::string ck_dir = checkpoint_dir(cfg_.run_dir);
  make_dirs(ck_dir);
  if (is_rank0()) {  // the ranks of one job share the folder: rank 0 speaks for them
    lock_ = std::make_unique<RunLock>(cfg_.run_dir);
    remove_stale_temp_files(cfg_.run_dir);
  }
  {  // find out now, not hours from now at the first checkpoint (every rank writes a shard)
    const std::string probe =
        ck_dir + "/.write_test" + (dist_ ? cat(".", dist_->rank()) : std::string());
    std::FILE* f = std::fopen(probe.c_str(), "wb");
    TL_CHECK(f, "the checkpoint folder '", ck_dir, "' is not writable: ", std::strerror(errno));
    std::fclose(f);
    std::remove(probe.c_str());
  }

  if (resume == "auto") {
    if (!try_resume_auto()) log_info("resume auto: no checkpoint in ", cfg_.run_dir, ", starting fresh");
  } else if (!restored) {
    TL_CHECK(list_checkpoints(cfg_.run_dir).empty(), "run folder '", cfg_.run_dir,
             "' already holds checkpoints; use --resume auto to continue it, or another run_dir");
  }
  if (last_saved_ < 0) {
    if (init_from.empty()) {
      model_->init_weights(cfg_.seed);
    } else {
      if (init.params.empty()) init = read_init_weights(init_from);  // checkpoints vanished since
      model_->set_params(init.params);
      log_info("initialized the weights from ", init_from, " (step 0, fresh optimizer state)");
    }
  }

  if (!is_rank0()) return;  // one config.json, metrics.jsonl and TensorBoard file per run
  write_file_atomic(cfg_.run_dir + "/config.json", cfg_.raw.dump(2) + "\n");
  // Records past the restart point describe steps this run redoes: drop them.
  const int64_t newest = rewind_metrics(cfg_.run_dir + "/metrics.jsonl", step_);
  const int64_t redo = std::max<int64_t>(0, newest - step_);
  metrics_ = std::make_unique<MetricsWriter>(cfg_.run_dir + "/metrics.jsonl");
  tb_ = std::make_unique<TensorBoardWriter>(cfg_.run_dir);
  tb_->session_start(step_ + 1);
  if (redo > 0) log_warn(redo, " steps logged after step ", step_, " are lost and will be redone");
  metrics_->write(json{{"step", step_}, {"event", last_saved_ < 0 ? "start" : "resume"},
                       {"redo_steps", redo}, {"pid", int64_t(::getpid())}});
}

// Newest checkpoint first; one that fails to load (truncated, CRC, a sharded folder with a
// missing or mixed shard) is renamed aside and the next older one is tried. Refusals
// (another model) are not damage: they propagate. Step folders without meta.json are not
// checkpoints (a save that did not finish): they are not even candidates. In a sharded
// run every rank reads each candidate and the ranks agree before one is used or set aside.
bool Trainer::try_resume_auto() {
  std::vector<CheckpointFile> files = list_checkpoints(cfg_.run_dir);
  if (is_rank0())
    for (const CheckpointFile& f : list_incomplete_checkpoints(cfg_.run_dir))
      log_warn("skipping checkpoint folder '", f.path,
               "': it has no meta.json (its save did not finish)");
  int damaged = 0;
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    CheckpointData ck;
    std::string damage;
    if (dist_) {
      damage = read_for_resume(it->path, ck);
    } else {
      try {
        ck = load_any_checkpoint(it->path, true);
      } catch (const Error& e) {
        damage = e.what();
      }
    }
    if (!all_ranks(damage.empty())) {  // every rank has finished reading it: set it aside
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
           checkpoint_dir(cfg_.run_dir), "' is valid (each was renamed *.damaged); refusing to "
           "start over in this run folder");
  return false;
}

// A sharded run: reads this rank's part of `path` into ck. Damage (unreadable, truncated,
// CRC, incomplete set) comes back as the message; a checkpoint of another model throws
// (a refusal, found from its meta before any shard is read).
std::string Trainer::read_for_resume(const std::string& path, CheckpointData& ck) {
  json meta;
  try {
    meta = is_directory(path) ? read_sharded_meta(path).at("meta") : read_checkpoint_meta(path);
  } catch (const Error& e) {
    return e.what();
  }
  check_same_model(meta.at("model"), cfg_.model, path);
  try {
    dist_->read(path, ck);
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
  const int world = dist_ ? dist_->world() : 1;
  if (saved_world != world && is_rank0()) {
    const json b = saved_cfg.value("batch", json::object());
    const TrainConfig d;
    const int64_t before = int64_t(saved_world) * b.value("micro_batch", d.micro_batch) *
                           b.value("grad_accum", d.grad_accum);
    const int64_t now = int64_t(world) * cfg_.micro_batch * cfg_.grad_accum;
    if (before == now)
      log_info("resuming a checkpoint of ", saved_world, " rank(s) on ", world,
               ": the global batch stays ", now, " sequences");
    else
      log_warn("resuming a checkpoint of ", saved_world, " rank(s) on ", world,
               ": the global batch (micro_batch x grad_accum x ranks) changes from ", before,
               " to ", now, " sequences per step");
  }
  // Rank 0 reports for the job.
  for (const ConfigChange& c : is_rank0() ? config_changes(saved_cfg, cfg_.raw)
                                          : std::vector<ConfigChange>()) {
    if (c.routine)
      log_info("config change on resume: ", c.key, ": ", c.before, " -> ", c.after);
    else
      log_warn("config change on resume: ", c.key, ": ", c.before, " -> ", c.after,
               " (the continued run differs from the one first planned)");
    const bool decay_follows = !cfg_.raw.value("optim", json::object()).contains("decay_steps");
    if (c.key == "train.steps" && decay_follows)
      log_warn("optim.decay_steps follows train.steps: the cosine decay now spans ",
               cfg_.schedule.decay_steps, " steps and the lr jumps at the restart (set "
               "optim.decay_steps to keep the old schedule)");
  }
  loader_->restore(ck.meta.at("loader"));  // refuses another data order, naming the field
  if (dist_) {
    dist_->apply(ck);  // this rank's shard (read for this sharding, any world that wrote it)
  } else {
    model_->set_params(ck.params);
    opt_->set_state(ck.adam_m, ck.adam_v);
  }
  step_ = ck.meta.at("step").get<int64_t>();
  optim().set_steps_taken(ck.meta.at("optimizer_steps").get<int64_t>());
  tokens_seen_ = ck.meta.value("tokens", int64_t(0));
  elapsed_before_ = ck.meta.value("elapsed_seconds", 0.0);
  health_.restore(ck.meta.value("health", json::object()));
  last_saved_ = step_;
  last_saved_path_ = path;
  log_info("resumed from ", path, " at step ", step_);
}

CheckpointData Trainer::read_init_weights(const std::string& path) const {
  CheckpointData ck = load_any_checkpoint(path, /*with_optimizer=*/false);
  TL_CHECK(ck.meta.contains("model"), "cannot init from '", path, "': it has no model config");
  json a = ModelConfig::from_json(ck.meta["model"]).to_json(), b = cfg_.model.to_json();
  for (const char* k : {"preset", "init_std"}) {  // names and init do not change the model
    a.erase(k);
    b.erase(k);
  }
  for (auto it = a.begin(); it != a.end(); ++it)
    TL_CHECK(b[it.key()] == it.value(), "cannot init from '", path, "': model.", it.key(), " is ",
             it.value().dump(), " there but ", b[it.key()].dump(),
             " in this config; its model section is ", ck.meta["model"].dump());
  TL_CHECK(int64_t(ck.params.size()) == model_->layout().total(), "cannot init from '", path,
           "': it holds ", ck.params.size(), " parameters, this model has ", model_->layout().total());
  const std::string bad = describe_non_finite(ck.params, model_->layout());
  TL_CHECK(bad.empty(), "cannot init from '", path, "': ", bad, "; refusing to train from non-finite weights");
  return ck;
}

double Trainer::elapsed() const {
  return elapsed_before_ + (running_ ? run_clock_.seconds() : 0.0);
}

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
  ck.meta = json{{"format", "tinyllama-train"},
                 {"model", cfg_.model.to_json()},
                 {"train_config", cfg_.raw},
                 {"step", step_},
                 {"optimizer_steps", optim().steps_taken()},
                 {"tokens", tokens_seen_},
                 {"skipped_steps", health_.bad_total()},
                 {"health", health_.state()},
                 {"elapsed_seconds", elapsed()},
                 {"rng", {{"seed", cfg_.seed}, {"note", "counter-based: the loader state is the RNG state"}}},
                 {"loader", loader_->state()}};
  bool finite;
  if (dist_) {
    finite = dist_->weights_finite();  // every rank's shard; all ranks get the same answer
  } else {
    ck.params = model_->get_params();
    finite = std::all_of(ck.params.begin(), ck.params.end(), [](float x) { return std::isfinite(x); });
  }
  const std::string previous = find_latest_checkpoint(cfg_.run_dir);
  if (!finite) {
    // The newest checkpoint must always be one worth resuming from.
    if (is_rank0())
      log_warn("not saving step ", step_, ": the weights hold non-finite values; ",
               previous.empty() ? std::string("there is no checkpoint yet")
                                : "'" + previous + "' stays the newest checkpoint");
    return "";
  }
  if (!dist_) opt_->get_state(ck.adam_m, ck.adam_v);
  // A sharded run writes a step folder (collective: every rank its shard, rank 0 meta.json
  // last); the free space asked for is the whole set's, on every rank.
  const std::string path =
      dist_ ? sharded_checkpoint_path(cfg_.run_dir, step_) : checkpoint_path(cfg_.run_dir, step_);
  const uint64_t need = 3 * uint64_t(model_->layout().total()) * sizeof(float) + (1 << 20);
  const int sleep_ms = debug_save_sleep_ms_;
  const auto before_commit = [sleep_ms] {
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  };
  const bool background = cfg_.async_checkpoint && !dist_;
  Timer t;
  try {
    std::error_code ec;
    const auto space = std::filesystem::space(checkpoint_dir(cfg_.run_dir), ec);
    TL_CHECK(ec || space.available >= need, "the disk is full: the checkpoint needs about ",
             need >> 20, " MiB and ", space.available >> 20, " MiB are free");
    if (background) {
      // The host copy moves to the writer; training goes on with the device state.
      background_.step = step_;
      background_.path = path;
      background_.previous = previous;
      background_.copy_seconds = copy.seconds();
      background_.seconds = std::async(std::launch::async, [path, data = std::move(ck), before_commit] {
        Timer w;
        save_checkpoint(path, data, before_commit);
        return w.seconds();
      });
    } else if (dist_) {
      dist_->save(path, ck.meta, before_commit);
    } else {
      save_checkpoint(path, ck, before_commit);
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
  if (!b.seconds.valid()) return;
  if (!block && b.seconds.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
  double seconds = 0;
  try {
    seconds = b.seconds.get();
  } catch (const std::exception& e) {
    fail_save(b.step, e.what(), b.previous);
  }
  record_saved(b.step, b.path, seconds, b.copy_seconds);
}

void Trainer::record_saved(int64_t step, const std::string& path, double seconds,
                           double copy_seconds) {
  // Retention counts files and folders alike; rank 0 prunes once the set is complete.
  const int pruned = prune_checkpoints(cfg_.run_dir, cfg_.keep_checkpoints, cfg_.keep_every);
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

double Trainer::validate() {
  if (!val_) return -1;
  LossSum s = evaluate(*model_, *val_, cfg_.seq_len, cfg_.micro_batch,
                       int64_t(cfg_.eval_batches) * cfg_.micro_batch);
  return s.mean();
}

void Trainer::record_validation(double loss) {
  if (loss < 0 || !is_rank0()) return;  // every rank measured the same loss
  log_info("validation loss at step ", step_, ": ", loss, " (perplexity ", std::exp(loss), ")");
  metrics_->write(json{{"step", step_}, {"val_loss", loss}, {"val_perplexity", std::exp(loss)}});
  tb_->scalars(step_, {{"val/loss", float(loss)}, {"val/perplexity", float(std::exp(loss))}});
}

void Trainer::record_task_evals() {
  if (!task_eval_ || !is_rank0()) return;
  const int64_t tokens = step_ * tokens_per_step();
  std::vector<std::pair<std::string, float>> tb;
  for (const eval::TaskScore& t : task_eval_->run(*model_)) {
    log_info("eval ", t.name, " at step ", step_, ": acc ", t.acc,
             t.has_norm ? cat(", acc_norm ", t.acc_norm) : std::string(), " (", t.n,
             " documents, ", format_duration(t.seconds), ")");
    json j{{"step", step_}, {"tokens", tokens}, {"eval_task", t.name}, {"n", t.n},
           {"acc", t.acc}, {"acc_stderr", std::isfinite(t.acc_stderr) ? json(t.acc_stderr) : json()},
           {"seconds", t.seconds}};
    tb.emplace_back("eval/" + t.name + "/acc", float(t.acc));
    if (t.has_norm) {
      j["acc_norm"] = t.acc_norm;
      tb.emplace_back("eval/" + t.name + "/acc_norm", float(t.acc_norm));
    }
    metrics_->write(j);
  }
  tb_->scalars(step_, tb);
}

void Trainer::record_step(double loss, double lr, const StepResult& r, const StepVerdict& v,
                          double step_seconds, double smoothed_seconds) {
  StepFigures f;
  f.step = step_;
  f.steps = cfg_.steps;
  f.loss = loss;
  f.lr = lr;
  f.grad_norm = r.grad_norm;
  // Global figures in a sharded run: every rank's tokens, over every rank's peak.
  const double peak = peak_flops_ * (dist_ ? dist_->world() : 1);
  f.tokens_per_s = double(tokens_per_step()) / smoothed_seconds;
  if (peak_flops_ > 0) f.mfu = f.tokens_per_s * cfg_.model.flops_per_token(cfg_.seq_len) / peak;
  f.mem_bytes = be_->memory_in_use();
  f.mem_peak = be_->peak_memory();
  f.eta_seconds = smoothed_seconds * double(cfg_.steps - step_);
  f.skipped = v.bad;
  f.spike = v.spike;

  const double tok_s = double(tokens_per_step()) / step_seconds;
  json j{{"step", step_},           {"loss", loss},
         {"lr", lr},                {"grad_norm", r.grad_norm},
         {"tokens", tokens_seen_},  {"tokens_per_s", tok_s},
         {"step_seconds", step_seconds}, {"elapsed_seconds", elapsed()},
         {"skipped", v.bad},        {"skipped_total", health_.bad_total()},
         {"spike", v.spike},        {"spikes_total", health_.spikes()},
         {"data_wait_seconds", data_wait_seconds_}};
  std::vector<std::pair<std::string, float>> tb = {
      {"train/loss", float(loss)},          {"train/lr", float(lr)},
      {"train/grad_norm", float(r.grad_norm)}, {"train/tokens_per_s", float(tok_s)},
      {"train/step_seconds", float(step_seconds)},
      {"train/skipped_total", float(health_.bad_total())}};
  if (peak_flops_ > 0) {
    const double mfu = tok_s * cfg_.model.flops_per_token(cfg_.seq_len) / peak;
    j["mfu"] = mfu;
    tb.push_back({"train/mfu", float(mfu)});
  }
  if (f.mem_bytes > 0) {
    j["memory_bytes"] = f.mem_bytes;
    j["memory_peak_bytes"] = f.mem_peak;
    tb.push_back({"train/memory_gib", float(double(f.mem_bytes) / (1 << 30))});
  }
  metrics_->write(j);
  tb_->scalars(step_, tb);

  if (v.spike)
    log_warn("loss spike at step ", step_, ": ", loss, " is ", loss / v.mean,
             " x the running mean ", v.mean, " (train.spike_threshold = ", cfg_.spike_threshold, ")");
  if (step_ % cfg_.log_interval == 0 || step_ == cfg_.steps || v.bad) log_info(step_line(f));
  log_status(progress_bar(f));
}

TrainSummary Trainer::run() {
  TrainSummary sum;
  const int B = cfg_.micro_batch, T = cfg_.seq_len;
  log_info("model: ", cfg_.model.preset, ", ", format_count(double(cfg_.model.num_params())),
           " parameters; batch ", cfg_.micro_batch, " x ", cfg_.grad_accum, " x ", T, " = ",
           tokens_per_step(), " tokens per step",
           dist_ ? cat(" (", dist_->world(), " ranks)") : std::string(), "; ", cfg_.steps, " steps");
  std::vector<int32_t> tokens(size_t(B) * T), targets(tokens.size());
  // The global batch's token count: each rank's gradient is its part of the global mean.
  const float loss_scale = 1.0f / float(tokens_per_step());
  run_clock_.reset();
  running_ = true;
  if (step_ == 0) {  // a resumed run measured its start already
    sum.first_val_loss = validate();
    record_validation(sum.first_val_loss);
    record_task_evals();
  }
  double smoothed = 0;
  while (step_ < cfg_.steps && !stop_now()) {
    Timer st;
    const double wait_before = loader_->wait_seconds();
    model_->zero_grads();
    LossSum loss;
    for (int k = 0; k < cfg_.grad_accum; ++k) {
      if (dist_) dist_->begin_micro_batch(k + 1 == cfg_.grad_accum);
      loader_->next(tokens.data(), targets.data());
      loss += model_->forward_backward(tokens.data(), targets.data(), B, T, loss_scale);
    }
    if (fault_hook_) fault_hook_(step_ + 1, *model_);
    if (dist_) {  // the global loss, and whether any rank was asked to stop: one collective
      bool stop = stop_requested();
      loss = dist_->global_loss(loss, stop);
      stop_agreed_ = stop;
    }
    const double lr = cfg_.schedule.at(step_ + 1);
    StepResult r;
    if (std::isfinite(loss.mean()))  // skips a non-finite gradient itself
      r = dist_ ? dist_->step(float(lr)) : opt_->step(*model_, float(lr));
    else
      r.grad_norm = NAN;
    step_++;
    tokens_seen_ += tokens_per_step();
    data_wait_seconds_ = loader_->wait_seconds() - wait_before;  // time next() blocked
    const StepVerdict v = health_.observe(loss.mean(), r.applied);
    const double secs = st.seconds();
    smoothed = smoothed == 0 ? secs : 0.9 * smoothed + 0.1 * secs;
    sum.final_train_loss = loss.mean();
    if (is_rank0()) record_step(loss.mean(), lr, r, v, secs, smoothed);
    if (v.stop) {  // the same verdict on every rank: the loss and the update are global
      log_status_clear();
      if (metrics_) metrics_->write(json{{"step", step_}, {"event", "stop"}, {"reason", "non-finite"}});
      const std::string newest = find_latest_checkpoint(cfg_.run_dir);
      fail("stopping at step ", step_, ": ", health_.bad_in_row(),
           " steps in a row had a non-finite loss or gradient (train.max_bad_steps = ",
           cfg_.max_bad_steps, "), so none of them updated the model. ",
           newest.empty() ? std::string("There is no checkpoint yet")
                          : "The newest checkpoint is '" + newest + "'",
           "; look for a bad shard or lower optim.lr before resuming");
    }
    if (cfg_.eval_interval > 0 && step_ % cfg_.eval_interval == 0 && step_ < cfg_.steps &&
        !stop_now()) {
      record_validation(validate());
      record_task_evals();
    }
    if (cfg_.checkpoint_interval > 0 && step_ % cfg_.checkpoint_interval == 0) save();
    finish_background_save(false);  // reports a finished background write
  }
  log_status_clear();
  sum.stopped = step_ < cfg_.steps;
  if (sum.stopped) {
    log_info("stop requested: saving at step ", step_);
    if (metrics_) metrics_->write(json{{"step", step_}, {"event", "stop"}, {"reason", "signal"}});
  } else {
    sum.final_val_loss = validate();
    record_validation(sum.final_val_loss);
    record_task_evals();
  }
  if (last_saved_ != step_) save();
  finish_background_save(true);
  sum.final_checkpoint = last_saved_path_;
  running_ = false;
  elapsed_before_ += run_clock_.seconds();
  sum.steps = step_;
  sum.seconds = run_clock_.seconds();
  sum.skipped_steps = health_.bad_total();
  sum.spikes = health_.spikes();
  return sum;
}

}  // namespace tl
