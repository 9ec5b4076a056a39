#include "eval/results.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

namespace tl::eval {

int argmax_first(const std::vector<double>& v) {
  int best = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isnan(v[i])) return int(i);  // numpy: the first NaN is the maximum
    if (v[i] > v[size_t(best)]) best = int(i);
  }
  return best;
}

DocScore score_doc(const Doc& doc, std::vector<ScoreResult> choices) {
  DocScore s;
  std::vector<double> ll, norm;
  for (size_t i = 0; i < choices.size(); ++i) {
    ll.push_back(choices[i].ll);
    // An empty choice divides by zero as numpy does: -inf, or NaN for 0/0.
    const double len = double(doc.choices[i].length);
    norm.push_back(len > 0              ? choices[i].ll / len
                   : choices[i].ll == 0 ? std::numeric_limits<double>::quiet_NaN()
                   : choices[i].ll < 0  ? -std::numeric_limits<double>::infinity()
                                        : std::numeric_limits<double>::infinity());
  }
  s.pred = argmax_first(ll);
  s.pred_norm = argmax_first(norm);
  s.acc = s.pred == doc.gold;
  s.acc_norm = s.pred_norm == doc.gold;
  s.choices = std::move(choices);
  return s;
}

double mean_stderr(int64_t n, int64_t ones) {
  if (n < 2) return std::numeric_limits<double>::quiet_NaN();
  const double p = double(ones) / double(n);
  // sum (x - p)^2 over n values of 0/1 = n p (1 - p)
  return std::sqrt(double(n) * p * (1 - p) / double(n - 1) / double(n));
}

double pooled_stderr(const std::vector<int64_t>& sizes, const std::vector<double>& stderrs) {
  double num = 0;
  int64_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    num += double(sizes[i] - 1) * stderrs[i] * stderrs[i] * double(sizes[i]);
    total += sizes[i];
  }
  const double denom = double(total) - double(sizes.size());
  if (denom <= 0) return std::numeric_limits<double>::quiet_NaN();
  return std::sqrt(num / denom / double(total));
}

namespace {

struct Tally {
  int64_t n = 0, acc = 0, norm = 0;
  MetricRow row(const std::string& name, int depth, bool has_norm) const {
    MetricRow r;
    r.name = name;
    r.depth = depth;
    r.n = n;
    r.has_norm = has_norm;
    r.acc = n ? double(acc) / double(n) : std::numeric_limits<double>::quiet_NaN();
    r.acc_stderr = mean_stderr(n, acc);
    r.acc_norm = n ? double(norm) / double(n) : std::numeric_limits<double>::quiet_NaN();
    r.acc_norm_stderr = mean_stderr(n, norm);
    return r;
  }
};

// A JSON number, or null for NaN / infinity (JSON has neither).
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace

std::vector<MetricRow> task_metrics(const TaskData& task, const std::vector<DocScore>& scores,
                                    bool has_norm, double seconds) {
  if (task.name != "mmlu") {
    Tally t;
    for (const DocScore& s : scores) t.n++, t.acc += s.acc, t.norm += s.acc_norm;
    MetricRow r = t.row(task.name, 0, has_norm);
    r.seconds = seconds;
    return {r};
  }
  std::map<std::string, Tally> subjects;
  for (size_t i = 0; i < scores.size(); ++i) {
    Tally& t = subjects[task.docs[i].subject];
    t.n++, t.acc += scores[i].acc;
  }
  // The group and its categories: size-weighted acc (= over all their documents), stderr
  // pooled over their subjects.
  auto group = [&](const std::string& name, int depth, const std::string& category) {
    Tally all;
    std::vector<int64_t> sizes;
    std::vector<double> errs;
    for (const auto& [subject, t] : subjects) {
      if (!category.empty() && mmlu_category(subject) != category) continue;
      all.n += t.n, all.acc += t.acc;
      sizes.push_back(t.n);
      errs.push_back(mean_stderr(t.n, t.acc));
    }
    MetricRow r = all.row(name, depth, false);
    r.acc_stderr = pooled_stderr(sizes, errs);
    return r;
  };
  std::vector<MetricRow> rows;
  rows.push_back(group("mmlu", 0, ""));
  rows.back().seconds = seconds;
  for (const char* category : {"humanities", "other", "social_sciences", "stem"}) {
    MetricRow g = group(std::string("mmlu_") + category, 1, category);
    if (g.n == 0) continue;
    rows.push_back(g);
    for (const auto& [subject, t] : subjects)
      if (mmlu_category(subject) == category) rows.push_back(t.row("mmlu_" + subject, 2, false));
  }
  return rows;
}

std::string metrics_table(const std::vector<MetricRow>& rows) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-44s %7s %8s %8s %8s %8s %9s\n", "task", "n", "acc", "stderr",
                "acc_norm", "stderr", "seconds");
  out += line;
  auto f = [](double v, bool show) {
    char b[32];
    if (!show) return std::string("-");
    if (std::isnan(v)) return std::string("nan");
    std::snprintf(b, sizeof b, "%.4f", v);
    return std::string(b);
  };
  for (const MetricRow& r : rows) {
    const std::string name = std::string(size_t(r.depth) * 2, ' ') + (r.depth ? "- " : "") + r.name;
    char secs[32] = "";
    if (r.depth == 0) std::snprintf(secs, sizeof secs, "%.1f", r.seconds);
    std::snprintf(line, sizeof line, "%-44s %7lld %8s %8s %8s %8s %9s\n", name.c_str(),
                  (long long)r.n, f(r.acc, true).c_str(), f(r.acc_stderr, true).c_str(),
                  f(r.acc_norm, r.has_norm).c_str(), f(r.acc_norm_stderr, r.has_norm).c_str(),
                  r.depth == 0 ? secs : "");
    out += line;
  }
  return out;
}

json metrics_json(const std::vector<MetricRow>& rows) {
  json out = json::array();
  for (const MetricRow& r : rows) {
    json j = {{"task", r.name}, {"n", r.n}, {"acc", num(r.acc)}, {"acc_stderr", num(r.acc_stderr)}};
    if (r.has_norm) {
      j["acc_norm"] = num(r.acc_norm);
      j["acc_norm_stderr"] = num(r.acc_norm_stderr);
    }
    if (r.depth == 0) j["seconds"] = r.seconds;
    if (r.depth > 0) j["level"] = r.depth == 1 ? "category" : "subject";
    out.push_back(j);
  }
  return out;
}

json sample_json(const std::string& task, const Doc& doc, const DocScore& score) {
  json lls = json::array(), lens = json::array(), greedy = json::array();
  for (size_t i = 0; i < score.choices.size(); ++i) {
    lls.push_back(num(score.choices[i].ll));
    lens.push_back(doc.choices[i].length);
    greedy.push_back(score.choices[i].greedy);
  }
  json j = {{"task", task},
            {"doc", doc.index},
            {"source", doc.where},
            {"lls", lls},
            {"lengths", lens},
            {"greedy", greedy},
            {"pred", score.pred},
            {"pred_norm", score.pred_norm},
            {"label", doc.gold},
            {"acc", score.acc ? 1 : 0},
            {"acc_norm", score.acc_norm ? 1 : 0}};
  if (!doc.subject.empty()) j["subject"] = doc.subject;
  if (!doc.shots.empty()) j["fewshot_rows"] = doc.shots;
  return j;
}

}  // namespace tl::eval
