// `tinyllama eval --task ...`: the command's run, apart from its option parsing (cli/).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl::eval {

struct TaskEvalArgs {
  std::string checkpoint, tokenizer, device = "auto", bos = "off", json_out, samples_out;
  std::vector<std::string> tasks;         // NAME=PATH
  std::vector<std::string> fewshot_from;  // NAME=PATH: a task's few-shot split
  uint64_t fewshot_seed = 1234;
  int64_t limit = 0;
  int num_fewshot = -1, threads = 0, batch = 0, max_tokens = 0;  // 0: per device
  bool no_prefix_reuse = false;
};

// Validates everything (options, output folders, every task's rows) before scoring; prints
// the table; writes --json and --samples atomically at the end.
void run_task_eval(const TaskEvalArgs& args);

}  // namespace tl::eval
