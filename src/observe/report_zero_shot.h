// Zero-shot accuracy in a run's metrics.jsonl, for `tinyllama report`: the trainer's eval.tasks
// hook writes one record per task at every validation,
//   {"step", "tokens", "eval_task", "n", "acc", "acc_stderr", "seconds"[, "acc_norm"]}
// (train/trainer.cpp, record_task_evals). The report draws them against tokens seen.
#pragma once
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "observe/report_table.h"

namespace tl {

struct AccuracySeries {
  std::string task;                         // "hellaswag", "arc_easy", ...
  std::string metric;                       // "acc_norm" where the task has it, else "acc"
  std::vector<double> step, tokens, value;  // one per evaluation, in file order; value in %
  std::string title() const { return task + " (" + metric + ")"; }
};

// One series per task, in the order the tasks first appear; records without "eval_task" (or
// without a step) are passed over, and a record without the series' metric (or tokens) holds NaN
// there.
std::vector<AccuracySeries> accuracy_series(const std::vector<json>& records);

// One row per evaluated step: step, tokens, then every task's value in % (2 decimals).
ReportTable accuracy_table(const std::vector<AccuracySeries>& series);

}  // namespace tl
