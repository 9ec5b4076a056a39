#include "train/train_config.h"

#include <filesystem>

#include "eval/train_hook.h"

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
  for (const char* section : {"model", "base_dir", "data", "batch", "optim", "train", "eval",
                              "checkpoint", "dist"})
    root.child(section);
  root.finish();
  c.model = ModelConfig::from_json(root.child("model"), "model");
  std::string base_dir;
  root.get("base_dir", base_dir);  // relative data paths resolve against it (default: cwd)
  {
    JsonReader r(root.child("data"), "data");
    c.sources = read_sources(r.child("sources"), base_dir);
    r.get("val", c.val_paths);
    for (auto& p : c.val_paths)
      if (!p.empty() && p[0] != '/') p = (std::filesystem::path(base_dir) / p).string();
    r.get("seq_len", c.seq_len);
    r.get("shuffle_window", c.shuffle_window);
    r.get("tokenizer", c.tokenizer);
    if (!c.tokenizer.empty() && c.tokenizer[0] != '/')
      c.tokenizer = (std::filesystem::path(base_dir) / c.tokenizer).string();
    r.finish();
  }
  {
    JsonReader r(root.child("batch"), "batch");
    r.get("micro_batch", c.micro_batch);
    r.get("grad_accum", c.grad_accum);
    r.finish();
  }
  {
    JsonReader r(root.child("optim"), "optim");
    r.get("lr", c.schedule.lr);
    r.get("min_lr", c.schedule.min_lr);
    r.get("warmup_steps", c.schedule.warmup_steps);
    r.get("decay_steps", c.schedule.decay_steps);
    r.get("beta1", c.adamw.beta1);
    r.get("beta2", c.adamw.beta2);
    r.get("eps", c.adamw.eps);
    r.get("weight_decay", c.adamw.weight_decay);
    r.get("grad_clip", c.adamw.grad_clip);
    r.finish();
  }
  {
    JsonReader r(root.child("train"), "train");
    r.require("steps", c.steps);
    r.get("seed", c.seed);
    r.get("device", c.device);
    r.get("threads", c.threads);
    r.get("recompute", c.recompute);
    r.get("run_dir", c.run_dir);
    r.get("log_interval", c.log_interval);
    r.get("max_bad_steps", c.max_bad_steps);
    r.get("spike_threshold", c.spike_threshold);
    r.finish();
  }
  {
    JsonReader r(root.child("eval"), "eval");
    r.get("interval", c.eval_interval);
    r.get("batches", c.eval_batches);
    if (r.has("tasks")) c.eval_tasks = eval::read_task_specs(r.child("tasks"), base_dir);
    r.get("task_bos", c.eval_task_bos);
    r.finish();
  }
  {
    JsonReader r(root.child("checkpoint"), "checkpoint");
    r.get("interval", c.checkpoint_interval);
    r.get("keep", c.keep_checkpoints);
    r.get("keep_every", c.keep_every);
    r.get("async", c.async_checkpoint);
    r.finish();
  }
  c.dist = DistConfig::from_json(root.child("dist"));
  root.finish();
  if (c.seq_len == 0) c.seq_len = c.model.max_seq_len;
  if (c.schedule.decay_steps == 0) c.schedule.decay_steps = c.steps;
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
  TL_CHECK(!sources.empty(), "config: 'data.sources' must name at least one source");
  for (const auto& s : sources)
    TL_CHECK(s.weight > 0, "config: data source '", s.name, "' needs a positive weight");
  TL_CHECK(seq_len > 0 && seq_len <= model.max_seq_len, "config: data.seq_len (", seq_len,
           ") must be in [1, model.max_seq_len = ", model.max_seq_len, "]");
  TL_CHECK(micro_batch > 0, "config: batch.micro_batch must be positive");
  TL_CHECK(grad_accum > 0, "config: batch.grad_accum must be positive");
  TL_CHECK(steps > 0, "config: train.steps must be positive");
  TL_CHECK(schedule.lr > 0 && schedule.min_lr >= 0 && schedule.min_lr <= schedule.lr,
           "config: need 0 <= optim.min_lr <= optim.lr and optim.lr > 0");
  TL_CHECK(schedule.warmup_steps >= 0, "config: optim.warmup_steps must not be negative");
  TL_CHECK(adamw.beta1 >= 0 && adamw.beta1 < 1 && adamw.beta2 >= 0 && adamw.beta2 < 1,
           "config: optim.beta1 and optim.beta2 must be in [0, 1)");
  TL_CHECK(adamw.eps > 0, "config: optim.eps must be positive");
  TL_CHECK(adamw.weight_decay >= 0, "config: optim.weight_decay must not be negative");
  TL_CHECK(eval_interval >= 0 && eval_batches >= 0, "config: eval.* must not be negative");
  TL_CHECK(checkpoint_interval >= 0 && keep_checkpoints >= 1,
           "config: checkpoint.interval >= 0 and checkpoint.keep >= 1");
  TL_CHECK(keep_every >= 0, "config: checkpoint.keep_every must not be negative");
  TL_CHECK(log_interval >= 1, "config: train.log_interval must be at least 1");
  TL_CHECK(max_bad_steps >= 1, "config: train.max_bad_steps must be at least 1");
  TL_CHECK(spike_threshold == 0 || spike_threshold > 1,
           "config: train.spike_threshold must be 0 (off) or above 1, got ", spike_threshold);
  TL_CHECK(device == "auto" || device == "cpu" || device == "cuda",
           "config: train.device must be auto, cpu or cuda, got '", device, "'");
  TL_CHECK(!run_dir.empty(), "config: train.run_dir must not be empty");
}

}  // namespace tl
