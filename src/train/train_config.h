// The training config: one typed tree read strictly from JSON (unknown keys are errors),
// with `--set a.b=value` overrides applied before reading. The structs nest as the JSON
// sections do: cfg.optim.lr is "optim.lr" is --set optim.lr=...
#pragma once
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "data/loader.h"
#include "eval/task_spec.h"
#include "model/config.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "parallel/dist_config.h"

namespace tl {

struct TrainConfig {
  ModelConfig model;

  struct Data {
    std::vector<DataSourceSpec> sources;
    std::vector<std::string> val;  // held-out shards (files or folders)
    int seq_len = 0;               // resolved: 0 in the JSON means the model's context
    int shuffle_window = 8;
    std::string tokenizer;  // optional: checked against the model's vocabulary
  } data;

  // Global batch = micro_batch * grad_accum sequences (per rank: x world).
  struct Batch {
    int micro_batch = 8;
    int grad_accum = 1;
  } batch;

  struct Optim {
    LrSchedule schedule;  // lr, min_lr, warmup_steps, decay_steps (0: train.steps)
    AdamWConfig adamw;    // beta1, beta2, eps, weight_decay, grad_clip
  } optim;

  struct Train {
    int64_t steps = 0;
    uint64_t seed = 42;
    std::string device = "auto";
    int threads = 0;
    bool recompute = false;  // recompute norms and SwiGLU in the backward
    // "bf16": the backend's compute dtype (bf16 on GPUs, f32 on the CPU); "fp8": the layers'
    // linears in FP8 (model/fp8_linear.h; the CPU emulates its rounding exactly).
    std::string precision = "bf16";
    // fp8: "current" scaling (each tensor's own amax) or "delayed" (the max over the last
    // fp8_amax_history passes, recorded in the cast: one read less a tensor).
    std::string fp8_scaling = "current";
    int fp8_amax_history = 16;
    std::string run_dir = "runs/default";
    int log_interval = 1;
    int max_bad_steps = 20;        // non-finite steps in a row that stop the run
    double spike_threshold = 1.5;  // loss / running mean that is logged as a spike (0 = off)
  } train;

  struct Eval {
    int interval = 0;  // steps between validation runs (0 = only at the start and the end)
    int batches = 20;  // micro-batches per validation run
    std::vector<eval::TaskSpec> tasks;  // zero-shot tasks scored with each validation
    std::string task_bos = "off";       // their BOS mode (docs/eval.md)
  } eval;

  struct Checkpoint {
    int interval = 0;        // steps between checkpoints (0 = only at the end)
    int keep = 3;            // newest checkpoints kept
    int64_t keep_every = 0;  // also keep those whose step is a multiple (0 = none)
    // Write checkpoints on a background thread while training goes on (single-process
    // runs): the step pays only for copying the state to host memory; a kill -9 can then
    // lose up to one interval plus the steps run during the write.
    bool async = false;
  } checkpoint;

  DistConfig dist;  // multi-GPU training (parallel/dist_config.h)

  json raw;  // the resolved JSON, stored in checkpoints

  static TrainConfig from_json(const json& j);
  // Reads FILE, applies "key=value" overrides, validates.
  static TrainConfig load(const std::string& path, const std::vector<std::string>& overrides);
  void validate() const;
  // Tokens of one optimizer step on one rank.
  int64_t tokens_per_step() const {
    return int64_t(batch.micro_batch) * batch.grad_accum * data.seq_len;
  }
};

}  // namespace tl
