#include "observe/report.h"

#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/fs.h"
#include "core/log.h"
#include "observe/metrics.h"
#include "observe/plot_png.h"

extern char** environ;

namespace tl {

namespace {

const char* const kCharts[] = {"loss", "lr", "grad_norm", "throughput"};

struct Series {
  std::vector<json> train, val;  // step records, validation records
  int restarts = 0, checkpoints = 0;
  int64_t redone = 0;
};

Series read_metrics(const std::string& path) {
  TL_CHECK(file_exists(path), "no '", path, "': is this a training run folder?");
  Series s;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) continue;  // a line a crash cut short
    if (j.contains("loss")) s.train.push_back(j);
    if (j.contains("val_loss")) s.val.push_back(j);
    const std::string ev = j.value("event", "");
    if (ev == "resume") s.restarts++;
    if (ev == "checkpoint") s.checkpoints++;
    if (ev == "resume" || ev == "start") s.redone += j.value("redo_steps", int64_t(0));
  }
  TL_CHECK(!s.train.empty(), "'", path, "' holds no training steps yet");
  return s;
}

// A number for gnuplot: "?" (declared missing) for null, NaN or infinity.
std::string num(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "?";
  const double v = j[key].get<double>();
  if (!std::isfinite(v)) return "?";
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

void write_tables(const std::string& dir, const Series& s, bool with_mfu) {
  std::string t = "# step\tloss\tlr\tgrad_norm\ttokens_per_s\tmfu\n";
  for (const json& j : s.train)
    t += num(j, "step") + "\t" + num(j, "loss") + "\t" + num(j, "lr") + "\t" + num(j, "grad_norm") +
         "\t" + num(j, "tokens_per_s") + "\t" + (with_mfu ? num(j, "mfu") : "?") + "\n";
  write_file_atomic(dir + "/train.tsv", t);
  std::string v = "# step\tval_loss\n";
  for (const json& j : s.val) v += num(j, "step") + "\t" + num(j, "val_loss") + "\n";
  write_file_atomic(dir + "/val.tsv", v);
}

std::string plot_script(bool with_val, bool with_mfu) {
  std::string g =
      "# Written by tinyllama report; run `gnuplot plot.gp` in this folder to redraw.\n"
      "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
      "  set terminal pngcairo size 960,540 noenhanced\n"
      "} else {\n"
      "  set terminal png size 960,540 noenhanced\n"
      "}\n"
      "set datafile separator '\\t'\nset datafile missing '?'\n"
      "set grid\nset key top right\nset xlabel 'step'\n";
  g += "set output 'loss.png'\nset title 'loss'\nset ylabel 'cross-entropy (nats/token)'\n"
       "plot 'train.tsv' using 1:2 with lines lw 1 title 'train'";
  if (with_val) g += ", 'val.tsv' using 1:2 with linespoints lw 2 pt 7 title 'validation'";
  g += "\n";
  g += "set output 'lr.png'\nset title 'learning rate'\nset ylabel 'lr'\n"
       "plot 'train.tsv' using 1:3 with lines lw 2 title 'lr'\n";
  g += "set output 'grad_norm.png'\nset title 'gradient norm (before clipping)'\n"
       "set ylabel 'L2 norm'\nset logscale y\n"
       "plot 'train.tsv' using 1:4 with lines lw 1 title 'grad norm'\nunset logscale y\n";
  g += "set output 'throughput.png'\nset title 'throughput'\nset ylabel 'tokens/s'\n";
  if (with_mfu)
    g += "set y2label 'MFU'\nset y2tics\nset ytics nomirror\n"
         "plot 'train.tsv' using 1:5 with lines lw 1 title 'tokens/s', "
         "'' using 1:6 axes x1y2 with lines lw 1 title 'MFU'\n";
  else
    g += "plot 'train.tsv' using 1:5 with lines lw 1 title 'tokens/s'\n";
  return g;
}

// Runs gnuplot on dir/plot.gp: "" when it ran and wrote every picture, else why not.
// missing: the program was not found.
std::string run_gnuplot(const std::string& program, const std::string& dir, bool& missing) {
  static const char* kInstall =
      " (install gnuplot: apt-get install gnuplot-nox, or scripts/setup.sh)";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addchdir_np(&fa, dir.c_str());
  std::string script = "plot.gp";
  char* argv[] = {const_cast<char*>(program.c_str()), script.data(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, program.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  missing = rc == ENOENT;
  if (rc != 0)
    return cat("cannot run '", program, "': ", std::strerror(rc), missing ? kInstall : "");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // posix_spawnp may report a missing program only through the child's exit status 127.
  missing = WIFEXITED(status) && WEXITSTATUS(status) == 127;
  if (missing) return cat("cannot run '", program, "': not found", kInstall);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
    return cat("gnuplot failed on '", dir, "/plot.gp' (status ", status, ")");
  for (const char* name : kCharts) {
    const std::string png = dir + "/" + name + ".png";
    if (!file_exists(png) || file_size(png) == 0) return cat("gnuplot did not write '", png, "'");
  }
  return "";
}

// A column of the step records as numbers, NaN where missing (the curve breaks there).
std::vector<double> column(const std::vector<json>& rows, const char* key) {
  std::vector<double> out;
  for (const json& j : rows)
    out.push_back(j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN);
  return out;
}

// The charts of plot.gp, drawn by the built-in plotter.
void draw_builtin(const std::string& dir, const Series& s, bool with_mfu) {
  const std::vector<double> step = column(s.train, "step");
  const Rgb blue{0, 94, 184}, red{214, 64, 24}, green{0, 140, 72}, purple{128, 60, 170};
  auto draw = [&](const char* name, PlotSpec spec) {
    write_file_atomic(dir + "/" + name + ".png", encode_png(draw_plot(spec).canvas));
  };
  PlotSpec loss{.title = "loss", .ylabel = "cross-entropy (nats/token)"};
  loss.series.push_back({"train", step, column(s.train, "loss"), blue});
  if (!s.val.empty())
    loss.series.push_back(
        {"validation", column(s.val, "step"), column(s.val, "val_loss"), red, 2, true});
  draw("loss", loss);
  draw("lr", {.title = "learning rate",
              .ylabel = "lr",
              .series = {{"lr", step, column(s.train, "lr"), green, 2}}});
  draw("grad_norm",  // log scale, as plot.gp
       {.title = "gradient norm (before clipping)",
        .ylabel = "L2 norm",
        .log_y = true,
        .series = {{"grad norm", step, column(s.train, "grad_norm"), purple}}});
  PlotSpec tp{.title = "throughput", .ylabel = "tokens/s"};
  tp.series.push_back({"tokens/s", step, column(s.train, "tokens_per_s"), blue});
  if (with_mfu) {
    tp.y2label = "MFU";
    tp.series.push_back({"MFU", step, column(s.train, "mfu"), red, 1, false, true});
  }
  draw("throughput", tp);
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

nlohmann::ordered_json summarize(const Series& s, const json& config) {
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
  return f;
}

std::string html_page(const std::string& run_dir, const nlohmann::ordered_json& figures,
                      const json& config) {
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>tinyllama "
      "run " +
      html_escape(run_dir) +
      "</title>\n<style>body{font-family:sans-serif;margin:2em}"
      "table{border-collapse:collapse}td{padding:2px 12px;border-bottom:1px solid #ddd}"
      "img{max-width:100%}pre{background:#f4f4f4;padding:1em}</style>\n</head>\n<body>\n<h1>Run " +
      html_escape(run_dir) + "</h1>\n<h2>Figures</h2>\n<table>\n";
  for (auto it = figures.begin(); it != figures.end(); ++it) {
    const auto& v = it.value();
    std::string text = v.is_string() ? v.get<std::string>() : v.dump();
    if (v.is_number_float()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.6g", v.get<double>());
      text = buf;
    }
    h += "<tr><td>" + html_escape(it.key()) + "</td><td>" + html_escape(text) + "</td></tr>\n";
  }
  h += "</table>\n<h2>Curves</h2>\n";
  for (const char* name : kCharts)
    h += std::string("<p><img src=\"") + name + ".png\" alt=\"" + name + "\"></p>\n";
  h += "<h2>Config</h2>\n<pre>" + html_escape(config.dump(2)) + "</pre>\n</body>\n</html>\n";
  return h;
}

}  // namespace

ReportSummary write_report(const std::string& run_dir, const ReportOptions& opts) {
  const Series s = read_metrics(run_dir + "/metrics.jsonl");
  const std::string cfg_path = run_dir + "/config.json";
  const json config = file_exists(cfg_path) ? read_json_file(cfg_path) : json::object();
  const std::string dir = run_dir + "/report";
  make_dirs(dir);
  bool with_mfu = false;
  for (const json& j : s.train) with_mfu = with_mfu || j.contains("mfu");
  write_tables(dir, s, with_mfu);
  write_file_atomic(dir + "/plot.gp", plot_script(!s.val.empty(), with_mfu));
  for (const char* name : kCharts)
    std::remove((dir + "/" + name + ".png").c_str());  // a stale picture must not pass for new
  ReportSummary out;
  out.plotter = opts.plotter == Plotter::Builtin ? "builtin" : "gnuplot";
  if (opts.plotter != Plotter::Builtin) {
    bool missing = false;
    const std::string why = run_gnuplot(opts.gnuplot, dir, missing);
    TL_CHECK(why.empty() || opts.plotter == Plotter::Auto, why);
    if (!why.empty()) {
      if (missing)
        log_info("gnuplot not found: drawing with the built-in plotter");
      else
        log_warn(why, ": drawing with the built-in plotter");
      out.plotter = "builtin";
    }
  }
  if (out.plotter == "builtin") draw_builtin(dir, s, with_mfu);
  for (const char* name : kCharts) out.files.push_back(dir + "/" + name + ".png");
  out.figures = summarize(s, config);
  std::error_code ec;
  const std::string name = std::filesystem::weakly_canonical(run_dir, ec).string();
  write_file_atomic(dir + "/index.html", html_page(ec ? run_dir : name, out.figures, config));
  out.files.push_back(dir + "/index.html");
  return out;
}

}  // namespace tl
