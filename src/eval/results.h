// Per-document scores to task metrics as the harness computes them: acc (argmax of the
// summed log-likelihoods, first index on ties), acc_norm (log-likelihood / the choice's
// length in code points), the sample standard error of the mean, and MMLU's size-weighted
// groups with the pooled standard error. Output: a table, JSON, per-document samples.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "eval/scorer.h"
#include "eval/tasks.h"

namespace tl::eval {

struct DocScore {
  std::vector<ScoreResult> choices;
  int pred = 0, pred_norm = 0;
  bool acc = false, acc_norm = false;
};

// The harness's argmax: the first index of the maximum; NaN counts as the maximum.
int argmax_first(const std::vector<double>& v);
DocScore score_doc(const Doc& doc, std::vector<ScoreResult> choices);

struct MetricRow {
  std::string name;  // "hellaswag", "mmlu", "mmlu_stem", "mmlu_anatomy"
  int depth = 0;     // 0 a task, 1 an MMLU category, 2 a subject
  int64_t n = 0;
  bool has_norm = false;
  double acc = 0, acc_stderr = 0, acc_norm = 0, acc_norm_stderr = 0;
  double seconds = 0;  // for depth 0 rows
};

// Sample standard error of the mean of 0/1 values: sqrt(p(1-p)/(n-1)); NaN for n < 2.
double mean_stderr(int64_t n, int64_t ones);
// Pooled over subtasks of sizes n_s and standard errors se_s (harness group aggregation).
double pooled_stderr(const std::vector<int64_t>& sizes, const std::vector<double>& stderrs);

// Rows for one task (MMLU: the group, its 4 categories, its subjects).
std::vector<MetricRow> task_metrics(const TaskData& task, const std::vector<DocScore>& scores,
                                    bool task_has_norm, double seconds);

std::string metrics_table(const std::vector<MetricRow>& rows);
json metrics_json(const std::vector<MetricRow>& rows);
// One JSON object per document (one line of --samples).
json sample_json(const std::string& task, const Doc& doc, const DocScore& score);

}  // namespace tl::eval
