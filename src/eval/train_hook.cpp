#include "eval/train_hook.h"

#include <filesystem>

#include "eval/run.h"

namespace tl::eval {

std::vector<TaskSpec> read_task_specs(const json& arr, const std::string& base_dir) {
  TL_CHECK(arr.is_array(),
           "config: 'eval.tasks' must be a list of {name, path, limit, num_fewshot, fewshot_path}");
  std::vector<TaskSpec> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    JsonReader r(arr[i], cat("eval.tasks[", i, "]"));
    TaskSpec t;
    r.require("name", t.name);
    r.require("path", t.path);
    r.get("limit", t.limit);
    r.get("num_fewshot", t.num_fewshot);
    r.get("fewshot_path", t.fewshot_path);
    r.finish();
    try {
      task_info(t.name);  // an unknown name throws, listing the known ones
    } catch (const Error& e) {
      fail("config: eval.tasks[", i, "]: ", e.what());
    }
    TL_CHECK(t.limit >= 0, "config: eval.tasks[", i, "].limit must not be negative");
    TL_CHECK(!r.has("num_fewshot") || t.num_fewshot >= 0, "config: eval.tasks[", i,
             "].num_fewshot must not be negative");
    TL_CHECK(t.fewshot_path.empty() || t.name != "mmlu", "config: eval.tasks[", i,
             "]: mmlu takes its few-shot examples from the dev files in its path, not fewshot_path");
    TL_CHECK(t.num_fewshot <= 0 || t.name == "mmlu" || !t.fewshot_path.empty(), "config: eval.tasks[",
             i, "].num_fewshot ", t.num_fewshot,
             " needs fewshot_path (the split the harness samples examples from)");
    for (std::string* p : {&t.path, &t.fewshot_path})
      if (!p->empty() && (*p)[0] != '/') *p = (std::filesystem::path(base_dir) / *p).string();
    out.push_back(t);
  }
  return out;
}

TrainingTaskEval::TrainingTaskEval(const std::vector<TaskSpec>& specs, const std::string& tokenizer,
                                   const std::string& bos, int window, bool gpu)
    : max_rows_(gpu ? 128 : 32), max_tokens_(gpu ? 8192 : 2048) {
  TL_CHECK(!tokenizer.empty(), "config: eval.tasks needs data.tokenizer (to tokenize the prompts)");
  TL_CHECK(bos == "off" || bos == "on", "config: eval.task_bos must be \"off\" or \"on\", got '",
           bos, "'");
  EvalOptions opts;
  opts.tasks = specs;
  opts.bos = bos == "on" ? BosMode::On : BosMode::Off;
  const Tokenizer tok = Tokenizer::load(tokenizer);
  tasks_ = prepare_tasks(opts, tok, window);
}

TrainingTaskEval::~TrainingTaskEval() = default;

std::vector<TaskScore> TrainingTaskEval::run(LlamaModel& model) const {
  std::vector<TaskScore> out;
  ScorerOptions so;
  so.max_rows = max_rows_;
  so.max_tokens = max_tokens_;
  for (const PreparedTask& t : tasks_) {
    const MetricRow r = run_task(model, t, so).rows[0];  // the task, or the MMLU group
    out.push_back(
        {r.name, r.n, r.has_norm, r.acc, r.acc_stderr, r.acc_norm, r.acc_norm_stderr, r.seconds});
  }
  return out;
}

}  // namespace tl::eval
