// One task to evaluate: the CLI's --task NAME=PATH (and --fewshot-from NAME=PATH), or an
// entry of the training config's eval.tasks ({"name", "path", "limit", "num_fewshot",
// "fewshot_path"}).
#pragma once
#include <cstdint>
#include <string>

namespace tl::eval {

struct TaskSpec {
  std::string name, path;
  int64_t limit = 0;         // 0: every row
  std::string fewshot_path;  // the split few-shot examples come from (not MMLU)
  int num_fewshot = -1;      // >= 0: this task's K, over EvalOptions::num_fewshot
};

}  // namespace tl::eval
