// Zero-shot tasks during training (config eval.tasks): read, validated and tokenized once
// when the trainer starts (a bad row stops the run before step 1), then scored on the
// training model at every validation. Single-process runs (the whole model on one device).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "eval/task_spec.h"
#include "model/llama.h"

namespace tl::eval {

struct PreparedTask;

// eval.tasks: a list of {"name", "path", "limit"}; relative paths resolve against base_dir.
// Throws naming the entry for a missing or unknown key and for an unknown task name.
std::vector<TaskSpec> read_task_specs(const json& arr, const std::string& base_dir);

struct TaskScore {
  std::string name;
  int64_t n = 0;
  bool has_norm = false;
  double acc = 0, acc_stderr = 0, acc_norm = 0, acc_norm_stderr = 0, seconds = 0;
};

class TrainingTaskEval {
 public:
  // bos: "off" or "on"; gpu picks batch sizes that leave room for training.
  TrainingTaskEval(const std::vector<TaskSpec>& specs, const std::string& tokenizer,
                   const std::string& bos, int window, bool gpu);
  ~TrainingTaskEval();
  std::vector<TaskScore> run(LlamaModel& model) const;

 private:
  std::vector<PreparedTask> tasks_;
  int max_rows_, max_tokens_;
};

}  // namespace tl::eval
