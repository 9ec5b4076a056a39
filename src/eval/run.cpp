#include "eval/run.h"

#include <climits>
#include <exception>
#include <mutex>

#include "core/error.h"
#include "core/timer.h"

namespace tl::eval {

TaskSpec parse_task_spec(const std::string& spec) {
  const size_t eq = spec.find('=');
  TL_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(), "--task '", spec,
           "': expected NAME=PATH");
  TaskSpec t{spec.substr(0, eq), spec.substr(eq + 1), 0, ""};
  task_info(t.name);  // an unknown name throws, listing the known ones
  return t;
}

void add_fewshot_paths(std::vector<TaskSpec>& tasks, const std::vector<std::string>& specs) {
  for (const std::string& spec : specs) {
    const size_t eq = spec.find('=');
    TL_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(), "--fewshot-from '", spec,
             "': expected NAME=PATH");
    const std::string name = spec.substr(0, eq);
    task_info(name);
    TL_CHECK(name != "mmlu", "--fewshot-from '", spec,
             "': mmlu takes its few-shot examples from the dev files in its --task PATH");
    bool found = false;
    for (TaskSpec& t : tasks) {
      if (t.name != name) continue;
      TL_CHECK(t.fewshot_path.empty(), "--fewshot-from: '", name, "' is given twice");
      t.fewshot_path = spec.substr(eq + 1);
      found = true;
    }
    TL_CHECK(found, "--fewshot-from '", spec, "': no --task ", name, "=PATH to go with it");
  }
}

std::vector<PreparedTask> prepare_tasks(const EvalOptions& opts, const Tokenizer& tok, int window) {
  TL_CHECK(!opts.tasks.empty(), "no task to evaluate");
  std::vector<PreparedTask> out;
  for (const TaskSpec& spec : opts.tasks) {
    PreparedTask p;
    const int k = spec.num_fewshot >= 0 ? spec.num_fewshot : opts.num_fewshot;
    p.data = load_task(spec.name, spec.path, spec.limit, k, {spec.fewshot_path, opts.fewshot_seed});
    const auto& docs = p.data.docs;
    p.requests.resize(docs.size());
    std::exception_ptr error;  // the first bad document's, whatever the thread order
    int64_t error_doc = INT64_MAX;
    std::mutex mu;
    // Documents tokenize independently (SentencePiece's encode is const).
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t d = 0; d < int64_t(docs.size()); ++d) {
      try {
        const Doc& doc = docs[size_t(d)];
        for (size_t c = 0; c < doc.choices.size(); ++c) {
          const Choice& ch = doc.choices[c];
          const std::string where = cat(spec.name, ": ", doc.where, " choice ", c);
          p.requests[size_t(d)].push_back(
              make_request(encode_pair(tok, ch.context, ch.continuation, opts.bos), window, where));
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (d < error_doc) error = std::current_exception(), error_doc = d;
      }
    }
    if (error) std::rethrow_exception(error);
    for (const auto& reqs : p.requests)
      for (const auto& r : reqs) p.truncated += r.truncated;
    out.push_back(std::move(p));
  }
  return out;
}

TaskOutcome run_task(LlamaModel& model, const PreparedTask& task, const ScorerOptions& opts) {
  Timer timer;
  TaskOutcome out;
  auto results = score_requests(model, task.requests, opts, &out.stats);
  for (size_t d = 0; d < results.size(); ++d)
    out.scores.push_back(score_doc(task.data.docs[d], std::move(results[d])));
  out.rows =
      task_metrics(task.data, out.scores, task_info(task.data.name).acc_norm, timer.seconds());
  return out;
}

}  // namespace tl::eval
