// The trainer's set-up and its loop (trainer.h).
#include "train/trainer.h"

#include <cmath>
#include <cstdlib>

#include "checkpoint/run_folder.h"
#include "core/log.h"
#include "data/shard_tokenizer.h"
#include "data/tokenizer.h"
#include "eval/train_hook.h"
#include "model/memory_estimate.h"
#include "observe/console.h"
#include "train/evaluate.h"

namespace tl {

namespace {

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : 0;
}

ParallelOptions parallel_options(const TrainConfig& c) {
  ParallelOptions o;
  o.model = c.model;
  o.adamw = c.optim.adamw;
  o.dist = c.dist;
  o.device = c.train.device;
  o.threads = c.train.threads;
  return o;
}

}  // namespace

Trainer::Trainer(TrainConfig cfg, const std::string& resume, const std::string& init_from,
                 std::unique_ptr<Communicator> ranks)
    : cfg_(std::move(cfg)), guard_(cfg_.train.max_bad_steps, cfg_.train.spike_threshold) {
  par_ = make_parallelism(parallel_options(cfg_), std::move(ranks));
  be_ = par_->make_backend();
  par_->connect(*be_);
  log_info("device: ", be_->describe());
  check_fits(estimate_training_memory(cfg_.model, cfg_.batch.micro_batch, cfg_.data.seq_len,
                                      be_->compute_dtype(), cfg_.train.recompute,
                                      cfg_.train.precision == "fp8"),
             be_->device_memory_total(), be_->describe());
  peak_flops_ = be_->peak_flops();

  const TrainConfig::Data& data = cfg_.data;
  if (!data.tokenizer.empty()) {
    Tokenizer tok = Tokenizer::load(data.tokenizer);
    TL_CHECK(tok.vocab_size() <= cfg_.model.vocab_size, "the tokenizer '", data.tokenizer, "' has ",
             tok.vocab_size(), " pieces, more than the model's vocab_size of ",
             cfg_.model.vocab_size,
             " (for this tokenizer, use --set model.vocab_size=", tok.vocab_size(), ")");
    std::vector<std::string> shards = data.val;  // their manifests must name this tokenizer
    for (const DataSourceSpec& s : data.sources)
      shards.insert(shards.end(), s.paths.begin(), s.paths.end());
    check_shards_tokenizer(shards, tok.path(), tok.sha256());
  }
  TrainLoaderOptions lo;
  lo.sources = data.sources;
  lo.seq_len = data.seq_len;
  lo.micro_batch = cfg_.batch.micro_batch;
  lo.seed = cfg_.train.seed;
  lo.rank = par_->rank();  // each rank reads its own blocks of the global batch
  lo.world = par_->world();
  lo.shuffle_window = data.shuffle_window;
  lo.vocab_size = uint64_t(cfg_.model.vocab_size);  // every block read is checked
  loader_ = std::make_unique<TrainLoader>(lo);
  TL_CHECK(loader_->max_token_id() < uint64_t(cfg_.model.vocab_size),
           "the training data holds token id ", loader_->max_token_id(),
           ", outside the model's vocab_size of ", cfg_.model.vocab_size,
           " (was it prepared with a larger tokenizer? Then set model.vocab_size to its size, "
           "e.g. --set model.vocab_size=32000 for the Llama 2 tokenizer)");
  if (!data.val.empty())
    val_ = std::make_unique<SequentialBlocks>(expand_shard_paths(data.val), data.seq_len);

  ModelOptions mo;
  mo.recompute = cfg_.train.recompute;
  mo.fp8 = cfg_.train.precision == "fp8";
  mo.fp8_options = {fp8_scaling_from_name(cfg_.train.fp8_scaling), cfg_.train.fp8_amax_history};
  mo.provider = par_->provider();  // sharded: the weights live in this rank's shard
  model_ = std::make_unique<LlamaModel>(cfg_.model, *be_, mo);
  par_->attach(*model_);
  if (!cfg_.eval.tasks.empty()) {  // read and tokenized now: a bad row stops us before step 1
    TL_CHECK(par_->world() == 1 && par_->provider() == nullptr,
             "config: eval.tasks runs in single-process training only");
    task_eval_ = std::make_unique<eval::TrainingTaskEval>(
        cfg_.eval.tasks, cfg_.data.tokenizer, cfg_.eval.task_bos, cfg_.model.max_seq_len,
        be_->device() == Device::CUDA);
  }
  debug_save_sleep_ms_ = env_int("TL_DEBUG_CHECKPOINT_SLEEP_MS");
  start(resume, init_from);
}

Trainer::~Trainer() = default;

double Trainer::elapsed() const {
  return elapsed_before_ + (running_ ? run_clock_.seconds() : 0.0);
}

double Trainer::validate() {
  if (!val_) return -1;
  const int B = cfg_.batch.micro_batch;
  LossSum s = evaluate(*model_, *val_, cfg_.data.seq_len, B, int64_t(cfg_.eval.batches) * B);
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
             t.has_norm ? cat(", acc_norm ", t.acc_norm) : std::string(), " (", t.n, " documents, ",
             format_duration(t.seconds), ")");
    json j{{"step", step_},
           {"tokens", tokens},
           {"eval_task", t.name},
           {"n", t.n},
           {"acc", t.acc},
           {"acc_stderr", std::isfinite(t.acc_stderr) ? json(t.acc_stderr) : json()},
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

void Trainer::record_step(const StepOutcome& s, double lr, const StepVerdict& v,
                          double step_seconds, double smoothed_seconds) {
  const double loss = s.loss.mean(), grad_norm = s.update.grad_norm;
  const TrainConfig::Train& t = cfg_.train;
  StepFigures f;
  f.step = step_;
  f.steps = t.steps;
  f.loss = loss;
  f.lr = lr;
  f.grad_norm = grad_norm;
  // Global figures on several ranks: every rank's tokens, over every rank's peak.
  const double peak = peak_flops_ * par_->world();
  const double flops_per_token = cfg_.model.flops_per_token(cfg_.data.seq_len);
  f.tokens_per_s = double(tokens_per_step()) / smoothed_seconds;
  if (peak_flops_ > 0) f.mfu = f.tokens_per_s * flops_per_token / peak;
  f.mem_bytes = be_->memory_in_use();
  f.mem_peak = be_->peak_memory();
  f.eta_seconds = smoothed_seconds * double(t.steps - step_);
  f.skipped = v.bad;
  f.spike = v.spike;

  const double tok_s = double(tokens_per_step()) / step_seconds;
  json j{{"step", step_},
         {"loss", loss},
         {"lr", lr},
         {"grad_norm", grad_norm},
         {"tokens", tokens_seen_},
         {"tokens_per_s", tok_s},
         {"step_seconds", step_seconds},
         {"elapsed_seconds", elapsed()},
         {"skipped", v.bad},
         {"skipped_total", guard_.bad_total()},
         {"spike", v.spike},
         {"spikes_total", guard_.spikes()},
         {"data_wait_seconds", data_wait_seconds_}};
  std::vector<std::pair<std::string, float>> tb = {
      {"train/loss", float(loss)},
      {"train/lr", float(lr)},
      {"train/grad_norm", float(grad_norm)},
      {"train/tokens_per_s", float(tok_s)},
      {"train/step_seconds", float(step_seconds)},
      {"train/skipped_total", float(guard_.bad_total())}};
  if (peak_flops_ > 0) {
    const double mfu = tok_s * flops_per_token / peak;
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
             " x the running mean ", v.mean, " (train.spike_threshold = ", t.spike_threshold, ")");
  if (step_ % t.log_interval == 0 || step_ == t.steps || v.bad) log_info(step_line(f));
  log_status(progress_bar(f));
}

// train.precision fp8: every FP8 tensor's amax and scale (per layer) to metrics.jsonl. With
// current scaling the codes saturate, so a non-finite amax means the tensor itself was not
// finite (its step was skipped); the first such tensor in execution order (the forward's
// x and w by layer, then the backward's dy from the last layer down) is where it began, and
// that GEMM moves to the plain product from now on, saying so (the tensors after it are its
// consequences). Every rank looks at its own tensors; only rank 0 writes the record.
void Trainer::record_fp8() {
  Fp8Linears& f = *model_->fp8();
  const std::vector<Fp8Amax> amax = f.amaxes(), scaling = f.scaling_amaxes();
  const int L = cfg_.model.n_layers;
  const auto at = [&](int l, int k) -> const Fp8Amax& {
    return amax[size_t(l) * kLinearKinds + size_t(k)];
  };
  const auto role_of = [](const Fp8Amax& a, const char* role) {
    return role[0] == 'x' ? a.x : role[0] == 'w' ? a.w : a.dy;
  };
  // amax: what this step measured; scale: what the next step casts with (current scaling:
  // from this step's amax; delayed: from the history's max).
  json rec{{"step", step_}, {"event", "fp8"}, {"scaling", fp8_scaling_name(f.options().scaling)}};
  for (int k = 0; k < kLinearKinds; ++k) {
    json& kj = rec["linears"][linear_kind_name(LinearKind(k))];
    for (const char* role : {"x", "w", "dy"}) {
      const Fp8Format fmt = role[0] == 'd' ? Fp8Format::E5M2 : Fp8Format::E4M3;
      json a = json::array(), sc = json::array();
      for (int l = 0; l < L; ++l) {
        const float v = role_of(at(l, k), role);
        a.push_back(std::isfinite(v) ? json(v) : json(cat(v)));  // "inf"/"nan", not null
        sc.push_back(
            fp8_scale_for_amax(role_of(scaling[size_t(l) * kLinearKinds + size_t(k)], role), fmt));
      }
      kj[role] = {{"amax", a}, {"scale", sc}};
    }
  }
  if (metrics_) metrics_->write(rec);

  struct Origin {
    int layer = -1, kind = 0;
    const char* role = "";
  } o;
  for (int l = 0; l < L && o.layer < 0; ++l)
    for (int k = 0; k < kLinearKinds && o.layer < 0; ++k)
      if (!std::isfinite(at(l, k).x) || !std::isfinite(at(l, k).w))
        o = {l, k, std::isfinite(at(l, k).x) ? "w" : "x"};
  for (int l = L - 1; l >= 0 && o.layer < 0; --l)
    for (int k = kLinearKinds - 1; k >= 0 && o.layer < 0; --k)
      if (!std::isfinite(at(l, k).dy)) o = {l, k, "dy"};
  if (o.layer < 0 || !f.enabled(o.layer, LinearKind(o.kind))) return;
  const char* name = linear_kind_name(LinearKind(o.kind));
  f.fall_back(o.layer, LinearKind(o.kind));
  log_warn("fp8: the ", o.role, " of layer ", o.layer, "'s ", name,
           " was not finite (the first FP8 tensor to be so), so its step was skipped; this GEMM "
           "runs in ",
           dtype_name(be_->compute_dtype()), " from now on");
  if (metrics_)
    metrics_->write(json{{"step", step_},
                         {"event", "fp8_fallback"},
                         {"layer", o.layer},
                         {"linear", name},
                         {"tensor", o.role}});
}

void Trainer::stop_on_bad_steps() {
  log_status_clear();
  if (metrics_) metrics_->write(json{{"step", step_}, {"event", "stop"}, {"reason", "non-finite"}});
  const std::string newest = find_latest_checkpoint(cfg_.train.run_dir);
  fail("stopping at step ", step_, ": ", guard_.bad_in_row(),
       " steps in a row had a non-finite loss or gradient (train.max_bad_steps = ",
       cfg_.train.max_bad_steps, "), so none of them updated the model. ",
       newest.empty() ? std::string("There is no checkpoint yet")
                      : "The newest checkpoint is '" + newest + "'",
       "; look for a bad shard or lower optim.lr before resuming");
}

TrainSummary Trainer::run() {
  TrainSummary sum;
  const TrainConfig::Train& t = cfg_.train;
  StepShape shape;
  shape.micro_batch = cfg_.batch.micro_batch;
  shape.seq_len = cfg_.data.seq_len;
  shape.grad_accum = cfg_.batch.grad_accum;
  // The global batch's token count: each rank's gradient is its part of the global mean.
  shape.loss_scale = 1.0f / float(tokens_per_step());
  log_info("model: ", cfg_.model.preset, ", ", format_count(double(cfg_.model.num_params())),
           " parameters; batch ", shape.micro_batch, " x ", shape.grad_accum, " x ", shape.seq_len,
           " = ", tokens_per_step(), " tokens per step",
           par_->world() > 1 ? cat(" (", par_->world(), " ranks)") : std::string(), "; ", t.steps,
           " steps");
  std::vector<int32_t> tokens(size_t(shape.micro_batch) * shape.seq_len), targets(tokens.size());
  const NextMicroBatch next = [&](const int32_t*& tok, const int32_t*& tgt) {
    loader_->next(tokens.data(), targets.data());
    tok = tokens.data();
    tgt = targets.data();
  };
  run_clock_.reset();
  running_ = true;
  if (step_ == 0) {  // a resumed run measured its start already
    sum.first_val_loss = validate();
    record_validation(sum.first_val_loss);
    record_task_evals();
  }
  double smoothed = 0;
  while (step_ < t.steps && !par_->should_stop()) {
    Timer st;
    const double wait_before = loader_->wait_seconds();
    const double lr = cfg_.optim.schedule.at(step_ + 1);
    const StepOutcome s = train_step(*model_, *par_, shape, float(lr), next, [&] {
      if (fault_hook_) fault_hook_(step_ + 1, *model_);
    });
    step_++;
    tokens_seen_ += tokens_per_step();
    data_wait_seconds_ = loader_->wait_seconds() - wait_before;  // time next() blocked
    const StepVerdict v = guard_.observe(s.loss.mean(), s.update.applied);
    const double secs = st.seconds();
    smoothed = smoothed == 0 ? secs : 0.9 * smoothed + 0.1 * secs;
    sum.final_train_loss = s.loss.mean();
    if (is_rank0()) record_step(s, lr, v, secs, smoothed);
    if (model_->fp8() && (step_ % t.log_interval == 0 || step_ == t.steps || v.bad)) record_fp8();
    if (v.stop) stop_on_bad_steps();  // the same verdict on every rank: the loss is global
    if (cfg_.eval.interval > 0 && step_ % cfg_.eval.interval == 0 && step_ < t.steps &&
        !par_->should_stop()) {
      record_validation(validate());
      record_task_evals();
    }
    if (cfg_.checkpoint.interval > 0 && step_ % cfg_.checkpoint.interval == 0) save();
    finish_background_save(false);  // reports a finished background write
  }
  log_status_clear();
  sum.stopped = step_ < t.steps;
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
  sum.skipped_steps = guard_.bad_total();
  sum.spikes = guard_.spikes();
  return sum;
}

}  // namespace tl
