#include "train/train_config.h"

#include <filesystem>

#include "eval/train_hook.h"
#include "model/fp8_linear.h"

namespace tl {

namespace {

std::vector<DataSourceSpec> read_sources(const json& arr, const std::string& base_dir) {
  TL_CHECK(arr.is_array(), "config: 'data.sources' must be a list of {name, paths, weight}");
  std::vector<DataSourceSpec> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    JsonReader r(arr[i], cat("data.sources[", i, "]"));
    DataSourceSpec s;
    r.require("name", s.name);
    r.require("paths", s.paths);
    r.get("weight", s.weight);
    r.finish();
    TL_CHECK(!s.paths.empty(), "config: data source '", s.name, "' has no paths");
    for (auto& p : s.paths)
      if (!p.empty() && p[0] != '/') p = (std::filesystem::path(base_dir) / p).string();
    out.push_back(s);
  }
  return out;
}

}  // namespace

TrainConfig TrainConfig::from_json(const json& j) {
  TrainConfig c;
  c.raw = j;
  JsonReader root(j, "");
  // The sections first: a misspelled one ("modle") is an unknown key, not a missing section.
  for (const char* section :
       {"model", "base_dir", "data", "batch", "optim", "train", "eval", "checkpoint", "dist"})
    root.child(section);
  root.finish();
  c.model = ModelConfig::from_json(root.child("model"), "model");
  std::string base_dir;
  root.get("base_dir", base_dir);  // relative data paths resolve against it (default: cwd)
  {
    JsonReader r(root.child("data"), "data");
    c.data.sources = read_sources(r.child("sources"), base_dir);
    r.get("val", c.data.val);
    for (auto& p : c.data.val)
      if (!p.empty() && p[0] != '/') p = (std::filesystem::path(base_dir) / p).string();
    r.get("seq_len", c.data.seq_len);
    r.get("shuffle_window", c.data.shuffle_window);
    r.get("tokenizer", c.data.tokenizer);
    if (!c.data.tokenizer.empty() && c.data.tokenizer[0] != '/')
      c.data.tokenizer = (std::filesystem::path(base_dir) / c.data.tokenizer).string();
    r.finish();
  }
  {
    JsonReader r(root.child("batch"), "batch");
    r.get("micro_batch", c.batch.micro_batch);
    r.get("grad_accum", c.batch.grad_accum);
    r.finish();
  }
  {
    JsonReader r(root.child("optim"), "optim");
    r.get("lr", c.optim.schedule.lr);
    r.get("min_lr", c.optim.schedule.min_lr);
    r.get("warmup_steps", c.optim.schedule.warmup_steps);
    r.get("decay_steps", c.optim.schedule.decay_steps);
    r.get("beta1", c.optim.adamw.beta1);
    r.get("beta2", c.optim.adamw.beta2);
    r.get("eps", c.optim.adamw.eps);
    r.get("weight_decay", c.optim.adamw.weight_decay);
    r.get("grad_clip", c.optim.adamw.grad_clip);
    r.finish();
  }
  {
    JsonReader r(root.child("train"), "train");
    r.require("steps", c.train.steps);
    r.get("seed", c.train.seed);
    r.get("device", c.train.device);
    r.get("threads", c.train.threads);
    r.get("recompute", c.train.recompute);
    r.get("precision", c.train.precision);
    r.get("fp8_scaling", c.train.fp8_scaling);
    r.get("fp8_amax_history", c.train.fp8_amax_history);
    r.get("run_dir", c.train.run_dir);
    r.get("log_interval", c.train.log_interval);
    r.get("max_bad_steps", c.train.max_bad_steps);
    r.get("spike_threshold", c.train.spike_threshold);
    r.finish();
  }
  {
    JsonReader r(root.child("eval"), "eval");
    r.get("interval", c.eval.interval);
    r.get("batches", c.eval.batches);
    if (r.has("tasks")) c.eval.tasks = eval::read_task_specs(r.child("tasks"), base_dir);
    r.get("task_bos", c.eval.task_bos);
    r.finish();
  }
  {
    JsonReader r(root.child("checkpoint"), "checkpoint");
    r.get("interval", c.checkpoint.interval);
    r.get("keep", c.checkpoint.keep);
    r.get("keep_every", c.checkpoint.keep_every);
    r.get("async", c.checkpoint.async);
    r.finish();
  }
  c.dist = DistConfig::from_json(root.child("dist"));
  root.finish();
  c.data.seq_len = c.model.seq_len_or_context(c.data.seq_len);
  if (c.optim.schedule.decay_steps == 0) c.optim.schedule.decay_steps = c.train.steps;
  c.validate();
  return c;
}

TrainConfig TrainConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  json j = read_json_file(path);
  TL_CHECK(j.is_object(), "'", path, "' must hold a JSON object");
  if (!j.contains("base_dir"))
    j["base_dir"] = std::filesystem::absolute(path).parent_path().string();
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    TL_CHECK(eq != std::string::npos, "--set expects key=value, got '", o, "'");
    json_set_dotted(j, o.substr(0, eq), o.substr(eq + 1));
  }
  return from_json(j);
}

void TrainConfig::validate() const {
  TL_CHECK(!data.sources.empty(), "config: 'data.sources' must name at least one source");
  for (const auto& s : data.sources)
    TL_CHECK(s.weight > 0, "config: data source '", s.name, "' needs a positive weight");
  TL_CHECK(data.seq_len > 0 && data.seq_len <= model.max_seq_len, "config: data.seq_len (",
           data.seq_len, ") must be in [1, model.max_seq_len = ", model.max_seq_len, "]");
  TL_CHECK(batch.micro_batch > 0, "config: batch.micro_batch must be positive");
  TL_CHECK(batch.grad_accum > 0, "config: batch.grad_accum must be positive");
  TL_CHECK(train.steps > 0, "config: train.steps must be positive");
  const LrSchedule& lr = optim.schedule;
  TL_CHECK(lr.lr > 0 && lr.min_lr >= 0 && lr.min_lr <= lr.lr,
           "config: need 0 <= optim.min_lr <= optim.lr and optim.lr > 0");
  TL_CHECK(lr.warmup_steps >= 0, "config: optim.warmup_steps must not be negative");
  const AdamWConfig& a = optim.adamw;
  TL_CHECK(a.beta1 >= 0 && a.beta1 < 1 && a.beta2 >= 0 && a.beta2 < 1,
           "config: optim.beta1 and optim.beta2 must be in [0, 1)");
  TL_CHECK(a.eps > 0, "config: optim.eps must be positive");
  TL_CHECK(a.weight_decay >= 0, "config: optim.weight_decay must not be negative");
  TL_CHECK(eval.interval >= 0 && eval.batches >= 0, "config: eval.* must not be negative");
  TL_CHECK(checkpoint.interval >= 0 && checkpoint.keep >= 1,
           "config: checkpoint.interval >= 0 and checkpoint.keep >= 1");
  TL_CHECK(checkpoint.keep_every >= 0, "config: checkpoint.keep_every must not be negative");
  TL_CHECK(train.log_interval >= 1, "config: train.log_interval must be at least 1");
  TL_CHECK(train.precision == "bf16" || train.precision == "fp8",
           "config: train.precision must be \"bf16\" or \"fp8\", got \"", train.precision, "\"");
  if (train.precision == "fp8") check_fp8_shapes(model, int64_t(batch.micro_batch) * data.seq_len);
  TL_CHECK(train.fp8_scaling == "current" || train.fp8_scaling == "delayed",
           "config: train.fp8_scaling must be \"current\" or \"delayed\", got \"",
           train.fp8_scaling, "\"");
  TL_CHECK(train.fp8_amax_history >= 1 && train.fp8_amax_history <= 4096,
           "config: train.fp8_amax_history must be in [1, 4096], got ", train.fp8_amax_history);
  TL_CHECK(train.max_bad_steps >= 1, "config: train.max_bad_steps must be at least 1");
  TL_CHECK(train.spike_threshold == 0 || train.spike_threshold > 1,
           "config: train.spike_threshold must be 0 (off) or above 1, got ", train.spike_threshold);
  TL_CHECK(train.device == "auto" || train.device == "cpu" || train.device == "cuda",
           "config: train.device must be auto, cpu or cuda, got '", train.device, "'");
  TL_CHECK(!train.run_dir.empty(), "config: train.run_dir must not be empty");
}

}  // namespace tl
