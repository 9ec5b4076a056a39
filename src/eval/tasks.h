// The eight tasks as lm-evaluation-harness 0.4 defines them: from a dataset row (the
// Hugging Face schema of each) to the requests' context and continuation strings, the
// choices' lengths for acc_norm, and the gold index; few-shot prefixes (MMLU: the first K
// dev rows; the others: fewshot.h). docs/eval.md states every rule.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl::eval {

struct Choice {
  std::string context, continuation;  // one request
  int64_t length = 0;                 // code points of the choice string (acc_norm)
};

struct Doc {
  int64_t index = 0;    // position among its task's (or subject's) evaluated rows
  std::string where;    // "'FILE' row N" for messages and samples
  std::string subject;  // MMLU only
  std::vector<Choice> choices;
  int gold = 0;
  std::vector<int64_t> shots;  // rows of the few-shot split used, in prompt order (not MMLU)
};

struct TaskInfo {
  std::string name;
  bool acc_norm;                     // the harness reports acc_norm for this task
  std::vector<std::string> columns;  // the dataset fields read
};

const std::vector<TaskInfo>& known_tasks();
// Throws for an unknown name, listing the known ones.
const TaskInfo& task_info(const std::string& name);

struct TaskData {
  std::string name;
  int num_fewshot = 0;
  std::vector<Doc> docs;  // MMLU: grouped by subject, subjects in name order
};

// Where the non-MMLU tasks' few-shot examples come from: the task's training split (a file,
// folder or glob), and the sampler's seed (the harness's fewshot_random_seed).
struct FewshotSource {
  std::string path;
  uint64_t seed = 1234;
};

// Reads PATH (file, folder or glob) and builds every evaluated doc. limit > 0 keeps the
// first `limit` rows (per subject for MMLU). num_fewshot < 0: the task's default (MMLU 5,
// others 0). MMLU's examples are the first K rows of each subject's dev split (in PATH);
// the other tasks sample theirs from `fewshot.path`, which K > 0 requires.
// Any bad row throws one message naming the task, file, row and field.
TaskData load_task(const std::string& name, const std::string& path, int64_t limit, int num_fewshot,
                   const FewshotSource& fewshot = {});

// MMLU's 57 subjects and their harness category ("stem", "humanities", "social_sciences",
// "other"); "" for a name that is not one of them.
std::string mmlu_category(const std::string& subject);

// The MMLU prompt pieces (exposed for tests): the question block, ending in "Answer:".
std::string mmlu_question_block(const std::string& question,
                                const std::vector<std::string>& choices);

}  // namespace tl::eval
