// One task to evaluate: the CLI's --task NAME=PATH (and --fewshot-from NAME=PATH), or an
// entry of the training config's eval.tasks ({"name", "path", "limit"}).
#pragma once
#include <cstdint>
#include <string>

namespace tl::eval {

struct TaskSpec {
  std::string name, path;
  int64_t limit = 0;         // 0: every row
  std::string fewshot_path;  // the split few-shot examples come from (not MMLU)
};

}  // namespace tl::eval
