// The training config: one typed tree read strictly from JSON (unknown keys are errors),
// with `--set a.b=value` overrides applied before reading.
#pragma once
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "data/loader.h"
#include "dist/dist_config.h"
#include "eval/task_spec.h"
#include "model/config.h"
#include "optim/adamw.h"
#include "optim/schedule.h"

namespace tl {

struct TrainConfig {
  ModelConfig model;
  bool recompute = false;          // recompute norms and SwiGLU in the backward

  // data
  std::vector<DataSourceSpec> sources;
  std::vector<std::string> val_paths;  // held-out shards (files or folders)
  int seq_len = 0;                 // 0 = the model's context
  int shuffle_window = 8;
  std::string tokenizer;           // optional: checked against the model's vocabulary

  // batch: global batch = micro_batch * grad_accum sequences (per rank: x world)
  int micro_batch = 8;
  int grad_accum = 1;

  // optimizer and schedule
  LrSchedule schedule;
  AdamWConfig adamw;

  int64_t steps = 0;
  uint64_t seed = 42;
  std::string device = "auto";
  int threads = 0;

  int eval_interval = 0;           // steps between validation runs (0 = only at the end)
  int eval_batches = 20;           // micro-batches per validation run
  std::vector<eval::TaskSpec> eval_tasks;  // zero-shot tasks scored with each validation
  std::string eval_task_bos = "off";        // their BOS mode (docs/eval.md)
  int checkpoint_interval = 0;     // steps between checkpoints (0 = only at the end)
  int keep_checkpoints = 3;        // newest checkpoints kept
  int64_t keep_every = 0;          // also keep those whose step is a multiple (0 = none)
  // Write checkpoints on a background thread while training goes on (single-process runs):
  // the step pays only for copying the state to host memory; a kill -9 can then lose up to
  // one interval plus the steps run during the write.
  bool async_checkpoint = false;
  int log_interval = 1;
  int max_bad_steps = 20;          // non-finite steps in a row that stop the run
  double spike_threshold = 1.5;    // loss / running mean that is logged as a spike (0 = off)

  DistConfig dist;                 // multi-GPU training (dist/dist_config.h)

  std::string run_dir = "runs/default";
  json raw;                        // the resolved JSON, stored in checkpoints

  static TrainConfig from_json(const json& j);
  // Reads FILE, applies "key=value" overrides, validates.
  static TrainConfig load(const std::string& path, const std::vector<std::string>& overrides);
  void validate() const;
  int64_t tokens_per_step() const { return int64_t(micro_batch) * grad_accum * seq_len; }
};

}  // namespace tl
