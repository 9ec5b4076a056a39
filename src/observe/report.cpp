#include "observe/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "core/fs.h"
#include "core/log.h"
#include "observe/metrics.h"
#include "observe/report_charts.h"

namespace tl {

namespace {

// metrics.jsonl's records, sorted by kind.
ReportData read_metrics(const std::string& path) {
  TL_CHECK(file_exists(path), "no '", path, "': is this a training run folder?");
  ReportData s;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) continue;  // a line a crash cut short
    if (j.contains("loss")) s.train.push_back(j);
    if (j.contains("val_loss")) s.val.push_back(j);
    if (j.contains("eval_task")) s.evals.push_back(j);
    const std::string ev = j.value("event", "");
    if (ev == "resume") s.restarts++;
    if (ev == "checkpoint") s.checkpoints++;
    if (ev == "resume" || ev == "start") s.redone += j.value("redo_steps", int64_t(0));
  }
  TL_CHECK(!s.train.empty(), "'", path, "' holds no training steps yet");
  for (const json& j : s.train) s.with_mfu = s.with_mfu || j.contains("mfu");
  s.accuracy = accuracy_series(s.evals);
  return s;
}

// The run's own loss curves, as a reference's are read.
LossCurves run_curves(const ReportData& d) {
  LossCurves c;
  for (const json& j : d.train)
    c.train.push_back(
        {metric_number(j, "step"), metric_number(j, "tokens"), metric_number(j, "loss")});
  for (const json& j : d.val)
    c.val.push_back(
        {metric_number(j, "step"), metric_number(j, "tokens"), metric_number(j, "val_loss")});
  fill_val_tokens(c);
  return c;
}

ReferenceRun read_reference_run(const ReportData& d, const ReportOptions& opts) {
  ReferenceRun r;
  r.path = opts.reference;
  r.label = opts.reference_label.empty() ? std::filesystem::path(r.path).stem().string()
                                         : opts.reference_label;
  r.curves = read_reference(r.path);
  try {
    r.cmp = compare_curves(run_curves(d), r.curves);
  } catch (const Error& e) {
    fail("reference '", r.path, "': ", e.what());
  }
  return r;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// The reference's name, how it was aligned, and how far the run is from it, (run - reference)
// / reference: in validation loss at the last step both have, in the mean training loss over
// the last 50 steps both have.
void add_reference_figures(nlohmann::ordered_json& f, const ReferenceRun& r) {
  f["reference"] = r.label + " (" + r.path + ")";
  f["reference aligned by"] = r.cmp.key;
  f["points shared with reference"] =
      cat(r.cmp.train.size(), " train, ", r.cmp.val.size(), " validation");
  if (!r.cmp.val.empty()) {  // at the last validation both have
    const LossMatch& m = r.cmp.val.back();
    f["last shared validation step"] = int64_t(m.step);
    f["reference validation loss"] = m.ref;
    f["validation loss vs reference (%)"] = 100 * m.rel();
  }
  if (!r.cmp.train.empty()) {  // means over the last 50 shared steps
    const size_t n = std::min<size_t>(r.cmp.train.size(), 50);
    double run = 0, ref = 0;
    for (size_t i = r.cmp.train.size() - n; i < r.cmp.train.size(); ++i)
      run += r.cmp.train[i].run, ref += r.cmp.train[i].ref;
    f["train loss vs reference (%)"] = 100 * (run - ref) / ref;
  }
}

nlohmann::ordered_json summarize(const ReportData& s, const json& config) {
  const json& last = s.train.back();
  nlohmann::ordered_json f = nlohmann::ordered_json::object();
  f["steps done"] = last.value("step", int64_t(0));
  if (config.contains("train") && config["train"].contains("steps"))
    f["steps planned"] = config["train"]["steps"].get<int64_t>();
  f["tokens"] = last.value("tokens", int64_t(0));
  if (last["loss"].is_number()) f["last train loss"] = last["loss"].get<double>();
  double tail = 0;
  int n = 0;
  for (size_t i = s.train.size() - std::min<size_t>(s.train.size(), 50); i < s.train.size(); ++i)
    if (s.train[i]["loss"].is_number()) tail += s.train[i]["loss"].get<double>(), ++n;
  if (n) f["mean train loss, last 50 steps"] = tail / n;
  if (!s.val.empty()) {
    const double v = s.val.back()["val_loss"].get<double>();
    f["last validation loss"] = v;
    f["last validation perplexity"] = std::exp(v);
    double best = v;
    for (const json& j : s.val) best = std::min(best, j["val_loss"].get<double>());
    f["best validation loss"] = best;
  }
  std::vector<double> tps;
  for (const json& j : s.train)
    if (j.contains("tokens_per_s") && j["tokens_per_s"].is_number())
      tps.push_back(j["tokens_per_s"].get<double>());
  if (!tps.empty()) {
    std::nth_element(tps.begin(), tps.begin() + tps.size() / 2, tps.end());
    f["median tokens/s"] = tps[tps.size() / 2];
  }
  if (last.contains("mfu") && last["mfu"].is_number()) f["last MFU"] = last["mfu"].get<double>();
  if (last.contains("memory_peak_bytes"))
    f["peak device memory (GiB)"] = last["memory_peak_bytes"].get<double>() / (1 << 30);
  f["skipped steps (non-finite)"] = last.value("skipped_total", int64_t(0));
  f["loss spikes"] = last.value("spikes_total", int64_t(0));
  f["restarts"] = s.restarts;
  f["steps redone after restarts"] = s.redone;
  f["checkpoints written"] = s.checkpoints;
  f["training time"] = format_duration(last.value("elapsed_seconds", 0.0));
  for (const AccuracySeries& a : s.accuracy) {  // the last evaluation of each task
    if (a.step.empty()) continue;
    f["zero-shot " + a.task + " " + a.metric + " (%)"] = a.value.back();
    f["zero-shot " + a.task + " step"] = int64_t(a.step.back());
  }
  if (s.ref) add_reference_figures(f, *s.ref);
  return f;
}

std::string html_table(const ReportTable& t) {
  std::string h = "<h3>" + html_escape(t.title) + "</h3>\n<table>\n<tr>";
  for (const std::string& c : t.header) h += "<th>" + html_escape(c) + "</th>";
  h += "</tr>\n";
  for (const auto& row : t.rows) {
    h += "<tr>";
    for (const std::string& c : row) h += "<td class=\"n\">" + html_escape(c) + "</td>";
    h += "</tr>\n";
  }
  return h + "</table>\n";
}

std::string html_page(const std::string& run_dir, const ReportSummary& r,
                      const std::vector<std::string>& charts, const json& config) {
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>tinyllama "
      "run " +
      html_escape(run_dir) +
      "</title>\n<style>body{font-family:sans-serif;margin:2em}"
      "table{border-collapse:collapse}td{padding:2px 12px;border-bottom:1px solid #ddd}"
      "img{max-width:100%}pre{background:#f4f4f4;padding:1em}" +
      (r.tables.empty()
           ? ""
           : "th{padding:2px 12px;border-bottom:1px solid #888}td.n{text-align:right}") +
      "</style>\n</head>\n<body>\n<h1>Run " + html_escape(run_dir) +
      "</h1>\n<h2>Figures</h2>\n<table>\n";
  for (auto it = r.figures.begin(); it != r.figures.end(); ++it) {
    const auto& v = it.value();
    std::string text = v.is_string() ? v.get<std::string>() : v.dump();
    if (v.is_number_float()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.6g", v.get<double>());
      text = buf;
    }
    h += "<tr><td>" + html_escape(it.key()) + "</td><td>" + html_escape(text) + "</td></tr>\n";
  }
  h += "</table>\n";
  for (const ReportTable& t : r.tables) h += html_table(t);
  h += "<h2>Curves</h2>\n";
  for (const std::string& name : charts)
    h += "<p><img src=\"" + name + ".png\" alt=\"" + name + "\"></p>\n";
  h += "<h2>Config</h2>\n<pre>" + html_escape(config.dump(2)) + "</pre>\n</body>\n</html>\n";
  return h;
}

// The tables shown beside the figures: zero-shot accuracy at every evaluation; the run's
// losses against the reference's, every validation and ten training steps spread evenly.
std::vector<ReportTable> tables(const ReportData& d) {
  std::vector<ReportTable> t;
  if (!d.accuracy.empty()) t.push_back(accuracy_table(d.accuracy));
  if (d.ref) {
    const ReferenceRun& r = *d.ref;
    const std::string by = " (aligned by " + r.cmp.key + ")";
    if (!r.cmp.val.empty())
      t.push_back(comparison_table(r.cmp.val, "validation loss vs " + r.label + by, r.label,
                                   r.cmp.val.size()));
    if (!r.cmp.train.empty())
      t.push_back(comparison_table(r.cmp.train, "training loss vs " + r.label + by, r.label, 10));
  }
  return t;
}

}  // namespace

ReportSummary write_report(const std::string& run_dir, const ReportOptions& opts) {
  ReportData d = read_metrics(run_dir + "/metrics.jsonl");
  if (!opts.reference.empty()) d.ref = read_reference_run(d, opts);
  const std::string cfg_path = run_dir + "/config.json";
  const json config = file_exists(cfg_path) ? read_json_file(cfg_path) : json::object();
  ReportSummary out;
  out.figures = summarize(d, config);
  out.tables = tables(d);

  // Everything is read and checked: now the files.
  const std::string dir = run_dir + "/report";
  make_dirs(dir);
  for (const std::string& name : report_file_names())
    std::remove((dir + "/" + name).c_str());  // a stale file must not pass for new
  write_tables(dir, d);
  write_file_atomic(dir + "/plot.gp", plot_script(d));
  out.plotter = opts.plotter == Plotter::Builtin ? "builtin" : "gnuplot";
  if (opts.plotter != Plotter::Builtin) {
    bool missing = false;
    const std::string why = run_gnuplot(opts.gnuplot, dir, d, missing);
    TL_CHECK(why.empty() || opts.plotter == Plotter::Auto, why);
    if (!why.empty()) {
      if (missing)
        log_info("gnuplot not found: drawing with the built-in plotter");
      else
        log_warn(why, ": drawing with the built-in plotter");
      out.plotter = "builtin";
    }
  }
  if (out.plotter == "builtin") draw_builtin(dir, d);
  for (const std::string& name : d.charts()) out.files.push_back(dir + "/" + name + ".png");
  std::error_code ec;
  const std::string name = std::filesystem::weakly_canonical(run_dir, ec).string();
  write_file_atomic(dir + "/index.html", html_page(ec ? run_dir : name, out, d.charts(), config));
  out.files.push_back(dir + "/index.html");
  return out;
}

}  // namespace tl
