#include "observe/report_zero_shot.h"

#include <cmath>
#include <map>

#include "observe/metrics.h"

namespace tl {

namespace {

// A task's record: its name and the step it was evaluated at.
bool is_eval(const json& j) {
  return j.contains("eval_task") && j["eval_task"].is_string() &&
         std::isfinite(metric_number(j, "step"));
}

}  // namespace

std::vector<AccuracySeries> accuracy_series(const std::vector<json>& records) {
  std::vector<AccuracySeries> out;
  std::map<std::string, size_t> index;  // task -> its place in out
  for (const json& j : records) {
    if (!is_eval(j)) continue;
    const std::string task = j["eval_task"].get<std::string>();
    if (!index.count(task)) index[task] = out.size(), out.push_back({task, "acc", {}, {}, {}});
    AccuracySeries& s = out[index[task]];
    if (j.contains("acc_norm")) s.metric = "acc_norm";  // the task defines it (every record does)
  }
  for (const json& j : records) {
    if (!is_eval(j)) continue;
    AccuracySeries& s = out[index[j["eval_task"].get<std::string>()]];
    s.step.push_back(metric_number(j, "step"));
    s.tokens.push_back(metric_number(j, "tokens"));
    s.value.push_back(100 * metric_number(j, s.metric.c_str()));
  }
  return out;
}

ReportTable accuracy_table(const std::vector<AccuracySeries>& series) {
  ReportTable t{"zero-shot accuracy (%)", {"step", "tokens"}, {}};
  std::map<double, std::vector<std::string>> rows;  // by step
  for (size_t k = 0; k < series.size(); ++k) {
    const AccuracySeries& s = series[k];
    t.header.push_back(s.title());
    for (size_t i = 0; i < s.step.size(); ++i) {
      auto& row = rows[s.step[i]];
      if (row.empty()) row.assign(2 + series.size(), "-");
      row[0] = format_fixed(s.step[i], 0);
      if (std::isfinite(s.tokens[i])) row[1] = format_fixed(s.tokens[i], 0);
      row[2 + k] = format_fixed(s.value[i], 2);
    }
  }
  for (auto& [step, row] : rows) t.rows.push_back(row);
  return t;
}

}  // namespace tl
