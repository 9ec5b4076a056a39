// The zero-shot evaluator end to end: tasks are read, validated and tokenized first (a bad
// row stops the run before anything is scored or written), then scored task by task.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "eval/requests.h"
#include "eval/results.h"
#include "eval/scorer.h"
#include "eval/task_spec.h"
#include "eval/tasks.h"
#include "model/llama.h"

namespace tl::eval {

// "NAME=PATH" (the CLI's --task); throws naming the spec and the known tasks.
TaskSpec parse_task_spec(const std::string& spec);
// Sets fewshot_path of the task each "NAME=PATH" (--fewshot-from) names; throws for a name
// not among `tasks`, a repeated name, or mmlu (its examples are its dev files).
void add_fewshot_paths(std::vector<TaskSpec>& tasks, const std::vector<std::string>& specs);

struct EvalOptions {
  std::vector<TaskSpec> tasks;
  int num_fewshot = -1;          // < 0: each task's default
  uint64_t fewshot_seed = 1234;  // the harness's default fewshot_random_seed
  BosMode bos = BosMode::Off;
  ScorerOptions scorer;
};

struct PreparedTask {
  TaskData data;
  std::vector<std::vector<TokenRequest>> requests;  // [doc][choice]
  int64_t truncated = 0;                            // requests cut to the window
};

// Reads and tokenizes every task; `window` is the model's context.
std::vector<PreparedTask> prepare_tasks(const EvalOptions& opts, const Tokenizer& tok, int window);

struct TaskOutcome {
  std::vector<MetricRow> rows;  // rows[0]: the task (or the MMLU group)
  std::vector<DocScore> scores;
  ScorerStats stats;
};

TaskOutcome run_task(LlamaModel& model, const PreparedTask& task, const ScorerOptions& opts);

}  // namespace tl::eval
