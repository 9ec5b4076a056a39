#include "train/trainer.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/tokenizer.h"
#include "dist/sharded_checkpoint.h"
#include "train/evaluate.h"
#include "train/memory_estimate.h"

namespace tl {

namespace fs = std::filesystem;

namespace {
std::atomic<bool> g_stop{false};  // written by the signal handler only
void on_stop_signal(int) { g_stop = true; }

std::string checkpoint_dir(const std::string& run_dir) { return run_dir + "/checkpoints"; }
std::string checkpoint_name(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "step_%08lld.tlck", static_cast<long long>(step));
  return buf;
}
}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}
bool stop_requested() { return g_stop.load(); }

std::string find_latest_checkpoint(const std::string& run_dir) {
  const std::string dir = checkpoint_dir(run_dir);
  if (!is_directory(dir)) return "";
  std::vector<std::string> files = list_files(dir, ".tlck");
  std::string file;
  for (auto it = files.rbegin(); it != files.rend() && file.empty(); ++it) {
    try {
      read_checkpoint_meta(*it);
      file = *it;
    } catch (const Error& e) {
      log_warn("skipping damaged checkpoint: ", e.what());
    }
  }
  // Sharded runs write folders step_%08d/ instead: the newer step of the two kinds wins.
  const std::string folder = find_latest_sharded_checkpoint(dir);
  if (file.empty() || folder.empty()) return file.empty() ? folder : file;
  return fs::path(folder).filename().string() > fs::path(file).stem().string() ? folder : file;
}

Trainer::Trainer(TrainConfig cfg, const std::string& resume, std::unique_ptr<Communicator> ranks)
    : cfg_(std::move(cfg)) {
  dist_ = DistRun::create(cfg_, std::move(ranks));
  be_ = dist_ ? dist_->make_backend(cfg_) : make_backend(cfg_.device, cfg_.threads);
  if (dist_) dist_->connect(*be_);
  log_info("device: ", be_->describe());
  check_fits(estimate_training_memory(cfg_.model, cfg_.micro_batch, cfg_.seq_len,
                                      be_->compute_dtype(), cfg_.recompute),
             be_->device_memory_total(), be_->describe());

  if (!cfg_.tokenizer.empty()) {
    Tokenizer tok = Tokenizer::load(cfg_.tokenizer);
    TL_CHECK(tok.vocab_size() <= cfg_.model.vocab_size, "the tokenizer '", cfg_.tokenizer,
             "' has ", tok.vocab_size(), " pieces, more than the model's vocab_size of ",
             cfg_.model.vocab_size);
  }
  TrainLoaderOptions lo;
  lo.sources = cfg_.sources;
  lo.seq_len = cfg_.seq_len;
  lo.micro_batch = cfg_.micro_batch;
  lo.seed = cfg_.seed;
  lo.rank = dist_ ? dist_->rank() : 0;
  lo.world = dist_ ? dist_->world() : 1;
  lo.shuffle_window = cfg_.shuffle_window;
  loader_ = std::make_unique<TrainLoader>(lo);
  TL_CHECK(loader_->max_token_id() < uint64_t(cfg_.model.vocab_size),
           "the training data holds token id ", loader_->max_token_id(),
           ", outside the model's vocab_size of ", cfg_.model.vocab_size,
           " (was it prepared with a larger tokenizer?)");
  if (!cfg_.val_paths.empty())
    val_ = std::make_unique<SequentialBlocks>(expand_shard_paths(cfg_.val_paths), cfg_.seq_len);

  ModelOptions mo;
  mo.recompute = cfg_.recompute;
  if (dist_) mo.provider = dist_->provider(cfg_, *be_);
  model_ = std::make_unique<LlamaModel>(cfg_.model, *be_, mo);
  if (!dist_) opt_ = std::make_unique<AdamW>(*be_, model_->layout().total(), cfg_.adamw);

  make_dirs(checkpoint_dir(cfg_.run_dir));
  std::string from;
  if (resume == "auto") {
    from = find_latest_checkpoint(cfg_.run_dir);
    if (from.empty()) log_info("resume auto: no checkpoint in ", cfg_.run_dir, ", starting fresh");
  } else if (!resume.empty()) {
    from = resume;
  } else {
    TL_CHECK(find_latest_checkpoint(cfg_.run_dir).empty(), "run folder '", cfg_.run_dir,
             "' already holds checkpoints; use --resume auto to continue it, or another run_dir");
  }
  if (from.empty()) {
    model_->init_weights(cfg_.seed);
  } else {
    resume_from(from);
  }
  if (is_rank0()) write_file_atomic(cfg_.run_dir + "/config.json", cfg_.raw.dump(2) + "\n");
  metrics_ = std::make_unique<MetricsWriter>(is_rank0() ? cfg_.run_dir + "/metrics.jsonl" : "/dev/null");
}

Trainer::~Trainer() = default;

void Trainer::resume_from(const std::string& path) {
  CheckpointData ck;
  if (dist_) ck.meta = dist_->restore(path);           // this rank's shard, any world size
  else ck = load_any_checkpoint(path, true);           // a file, or a sharded folder as one
  ModelConfig saved = ModelConfig::from_json(ck.meta.at("model"));
  json a = saved.to_json(), b = cfg_.model.to_json();
  a.erase("preset");
  b.erase("preset");
  for (auto it = a.begin(); it != a.end(); ++it)
    TL_CHECK(b[it.key()] == it.value(), "cannot resume from '", path, "': model.", it.key(),
             " is ", it.value().dump(), " there but ", b[it.key()].dump(), " in this config");
  TL_CHECK(dist_ || !ck.adam_m.empty(), "cannot resume from '", path,
           "': it holds no optimizer state (use it with --init-from instead)");
  if (!dist_) model_->set_params(ck.params);
  if (!dist_) opt_->set_state(ck.adam_m, ck.adam_v);
  step_ = ck.meta.at("step").get<int64_t>();
  optim().set_steps_taken(ck.meta.at("optimizer_steps").get<int64_t>());
  tokens_seen_ = ck.meta.value("tokens", int64_t(0));
  skipped_steps_ = ck.meta.value("skipped_steps", int64_t(0));
  elapsed_ = ck.meta.value("elapsed_seconds", 0.0);
  loader_->restore(ck.meta.at("loader"));
  log_info("resumed from ", path, " at step ", step_);
}

std::string Trainer::save(int64_t step) {
  CheckpointData ck;
  ck.meta = json{{"format", "tinyllama-train"},
                 {"model", cfg_.model.to_json()},
                 {"train_config", cfg_.raw},
                 {"step", step},
                 {"optimizer_steps", optim().steps_taken()},
                 {"tokens", tokens_seen_},
                 {"skipped_steps", skipped_steps_},
                 {"elapsed_seconds", elapsed_},
                 {"loader", loader_->state()}};
  if (dist_) return dist_->save(checkpoint_dir(cfg_.run_dir), step, ck.meta, cfg_.keep_checkpoints);
  ck.params = model_->get_params();
  opt_->get_state(ck.adam_m, ck.adam_v);
  const std::string path = checkpoint_dir(cfg_.run_dir) + "/" + checkpoint_name(step);
  save_checkpoint(path, ck);
  // Keep the newest keep_checkpoints.
  std::vector<std::string> files = list_files(checkpoint_dir(cfg_.run_dir), ".tlck");
  for (size_t i = 0; i + size_t(cfg_.keep_checkpoints) < files.size(); ++i)
    std::remove(files[i].c_str());
  return path;
}

double Trainer::validate() {
  if (!val_) return -1;
  LossSum s = evaluate(*model_, *val_, cfg_.seq_len, cfg_.micro_batch,
                       int64_t(cfg_.eval_batches) * cfg_.micro_batch);
  return s.mean();
}

void Trainer::log_step(int64_t step, double loss, double lr, const StepResult& r,
                       double step_seconds) {
  const double tok_s = double(tokens_per_step()) / step_seconds;
  const double eta = step_seconds * double(cfg_.steps - step);
  metrics_->write(json{{"step", step},           {"loss", loss},
                       {"lr", lr},               {"grad_norm", r.grad_norm},
                       {"tokens", tokens_seen_}, {"tokens_per_s", tok_s},
                       {"step_seconds", step_seconds}, {"skipped", !r.applied}});
  if (step % cfg_.log_interval != 0 && step != cfg_.steps) return;
  char line[256];
  std::snprintf(line, sizeof line,
                "step %lld/%lld | loss %.4f | lr %.3e | grad norm %.3f | %s tok/s | eta %s",
                static_cast<long long>(step), static_cast<long long>(cfg_.steps), loss, lr,
                r.grad_norm, format_count(tok_s).c_str(), format_duration(eta).c_str());
  log_info(line, r.applied ? "" : " | update skipped: non-finite gradient");
}

TrainSummary Trainer::run() {
  TrainSummary sum;
  const int B = cfg_.micro_batch, T = cfg_.seq_len;
  log_info("model: ", cfg_.model.preset, ", ", format_count(double(cfg_.model.num_params())),
           " parameters; batch ", cfg_.micro_batch, " x ", cfg_.grad_accum, " x ", T, " = ",
           tokens_per_step(), " tokens per step; ", cfg_.steps, " steps");
  std::vector<int32_t> tokens(size_t(B) * T), targets(tokens.size());
  const float loss_scale = 1.0f / float(tokens_per_step());
  Timer total;
  sum.first_val_loss = validate();
  if (sum.first_val_loss >= 0) {
    log_info("validation loss at step ", step_, ": ", sum.first_val_loss);
    metrics_->write(json{{"step", step_}, {"val_loss", sum.first_val_loss}});
  }
  double ema_seconds = 0;
  while (step_ < cfg_.steps && !stop_requested()) {
    Timer st;
    model_->zero_grads();
    LossSum loss;
    for (int k = 0; k < cfg_.grad_accum; ++k) {
      if (dist_) dist_->begin_micro_batch(k + 1 == cfg_.grad_accum);
      loader_->next(tokens.data(), targets.data());
      LossSum s = model_->forward_backward(tokens.data(), targets.data(), B, T, loss_scale);
      loss.sum += s.sum;
      loss.count += s.count;
    }
    const double lr = cfg_.schedule.at(step_ + 1);
    StepResult r = dist_ ? dist_->step(float(lr)) : opt_->step(*model_, float(lr));
    if (dist_) loss = dist_->global_loss(loss);
    step_++;
    tokens_seen_ += tokens_per_step();
    if (!r.applied) skipped_steps_++;
    const double secs = st.seconds();
    ema_seconds = ema_seconds == 0 ? secs : 0.9 * ema_seconds + 0.1 * secs;
    sum.final_train_loss = loss.mean();
    log_step(step_, loss.mean(), lr, r, ema_seconds);
    if (cfg_.eval_interval > 0 && step_ % cfg_.eval_interval == 0 && step_ < cfg_.steps) {
      double v = validate();
      if (v >= 0) {
        log_info("validation loss at step ", step_, ": ", v);
        metrics_->write(json{{"step", step_}, {"val_loss", v}});
      }
    }
    if (cfg_.checkpoint_interval > 0 && step_ % cfg_.checkpoint_interval == 0 &&
        step_ < cfg_.steps)
      save(step_);
  }
  elapsed_ += total.seconds();
  if (stop_requested()) log_info("stop requested: saving at step ", step_);
  sum.final_val_loss = validate();
  if (sum.final_val_loss >= 0) {
    log_info("validation loss at step ", step_, ": ", sum.final_val_loss);
    metrics_->write(json{{"step", step_}, {"val_loss", sum.final_val_loss}});
  }
  sum.final_checkpoint = save(step_);
  log_info("saved ", sum.final_checkpoint);
  sum.steps = step_;
  sum.seconds = total.seconds();
  return sum;
}

}  // namespace tl
