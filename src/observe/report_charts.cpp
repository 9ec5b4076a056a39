#include "observe/report_charts.h"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>

#include "core/fs.h"
#include "observe/metrics.h"
#include "observe/plot_png.h"

extern char** environ;

namespace tl {

std::vector<std::string> ReportData::charts() const {
  std::vector<std::string> c = {"loss", "lr", "grad_norm", "throughput"};
  if (!accuracy.empty()) c.push_back("zero_shot");
  return c;
}

std::vector<std::string> report_file_names() {
  return {"loss.png",      "lr.png",      "grad_norm.png", "throughput.png",
          "zero_shot.png", "train.tsv",   "val.tsv",       "zero_shot.tsv",
          "ref_train.tsv", "ref_val.tsv", "compare.tsv",   "plot.gp"};
}

namespace {

// A number for gnuplot: "?" (declared missing) for null, NaN or infinity.
std::string num(double v) {
  if (!std::isfinite(v)) return "?";
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

std::string num(const json& j, const char* key) { return num(metric_number(j, key)); }

// A gnuplot string literal: single quotes, a quote within doubled.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// The zero-shot chart's x: tokens seen when every evaluation logged them, else the step.
bool accuracy_by_tokens(const ReportData& d) {
  for (const AccuracySeries& s : d.accuracy)
    for (double t : s.tokens)
      if (!std::isfinite(t)) return false;
  return true;
}

std::string points_tsv(const std::string& head, const std::vector<double>& x,
                       const std::vector<CurvePoint>& p) {
  std::string t = "# " + head + "\n";
  for (size_t i = 0; i < p.size(); ++i) t += num(x[i]) + "\t" + num(p[i].loss) + "\n";
  return t;
}

}  // namespace

void write_tables(const std::string& dir, const ReportData& d) {
  std::string t = "# step\tloss\tlr\tgrad_norm\ttokens_per_s\tmfu\n";
  for (const json& j : d.train)
    t += num(j, "step") + "\t" + num(j, "loss") + "\t" + num(j, "lr") + "\t" + num(j, "grad_norm") +
         "\t" + num(j, "tokens_per_s") + "\t" + (d.with_mfu ? num(j, "mfu") : "?") + "\n";
  write_file_atomic(dir + "/train.tsv", t);
  std::string v = "# step\tval_loss\n";
  for (const json& j : d.val) v += num(j, "step") + "\t" + num(j, "val_loss") + "\n";
  write_file_atomic(dir + "/val.tsv", v);
  if (!d.accuracy.empty()) {  // step, tokens, then a column per task, in %
    const ReportTable a = accuracy_table(d.accuracy);
    auto line = [](const std::vector<std::string>& cells) {
      std::string l;
      for (const std::string& c : cells) l += (l.empty() ? "" : "\t") + (c == "-" ? "?" : c);
      return l + "\n";
    };
    std::string z = "# " + line(a.header);
    for (const auto& row : a.rows) z += line(row);
    write_file_atomic(dir + "/zero_shot.tsv", z);
  }
  if (d.ref) {  // x on the run's step axis (observe/report_reference.h, reference_x)
    const LossCurves& c = d.ref->curves;
    write_file_atomic(dir + "/ref_train.tsv",
                      points_tsv("step\tloss", reference_x(c.train, d.ref->cmp), c.train));
    write_file_atomic(dir + "/ref_val.tsv",
                      points_tsv("step\tval_loss", reference_x(c.val, d.ref->cmp), c.val));
    std::string m = "# curve\tstep\ttokens\trun_loss\tref_loss\trel_diff\n";
    for (const auto* part : {&d.ref->cmp.train, &d.ref->cmp.val})
      for (const LossMatch& x : *part)
        m += std::string(part == &d.ref->cmp.train ? "train" : "val") + "\t" + num(x.step) + "\t" +
             num(x.tokens) + "\t" + num(x.run) + "\t" + num(x.ref) + "\t" + num(x.rel()) + "\n";
    write_file_atomic(dir + "/compare.tsv", m);
  }
}

std::string plot_script(const ReportData& d) {
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
  if (!d.val.empty()) g += ", 'val.tsv' using 1:2 with linespoints lw 2 pt 7 title 'validation'";
  if (d.ref && !d.ref->curves.train.empty())
    g += ", 'ref_train.tsv' using 1:2 with lines lw 1 title " + quoted(d.ref->label + " train");
  if (d.ref && !d.ref->curves.val.empty())
    g += ", 'ref_val.tsv' using 1:2 with linespoints lw 2 pt 6 title " +
         quoted(d.ref->label + " validation");
  g += "\n";
  g += "set output 'lr.png'\nset title 'learning rate'\nset ylabel 'lr'\n"
       "plot 'train.tsv' using 1:3 with lines lw 2 title 'lr'\n";
  g += "set output 'grad_norm.png'\nset title 'gradient norm (before clipping)'\n"
       "set ylabel 'L2 norm'\nset logscale y\n"
       "plot 'train.tsv' using 1:4 with lines lw 1 title 'grad norm'\nunset logscale y\n";
  g += "set output 'throughput.png'\nset title 'throughput'\nset ylabel 'tokens/s'\n";
  if (d.with_mfu)
    g += "set y2label 'MFU'\nset y2tics\nset ytics nomirror\n"
         "plot 'train.tsv' using 1:5 with lines lw 1 title 'tokens/s', "
         "'' using 1:6 axes x1y2 with lines lw 1 title 'MFU'\n";
  else
    g += "plot 'train.tsv' using 1:5 with lines lw 1 title 'tokens/s'\n";
  if (!d.accuracy.empty()) {
    const bool by_tokens = accuracy_by_tokens(d);
    g += "unset y2label\nunset y2tics\nset ytics mirror\n"
         "set output 'zero_shot.png'\nset title 'zero-shot accuracy'\nset xlabel '";
    g += by_tokens ? "tokens seen'\n" : "step'\n";
    g += "set ylabel 'accuracy (%)'\nset key bottom right\nplot ";
    for (size_t k = 0; k < d.accuracy.size(); ++k)
      g += std::string(k ? ", '' " : "'zero_shot.tsv' ") + "using " + (by_tokens ? "2" : "1") +
           ":" + std::to_string(3 + k) + " with linespoints lw 2 pt 7 title " +
           quoted(d.accuracy[k].title());
    g += "\n";
  }
  return g;
}

std::string run_gnuplot(const std::string& program, const std::string& dir, const ReportData& d,
                        bool& missing) {
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
  for (const std::string& name : d.charts()) {
    const std::string png = dir + "/" + name + ".png";
    if (!file_exists(png) || file_size(png) == 0) return cat("gnuplot did not write '", png, "'");
  }
  return "";
}

namespace {

// A column of the step records as numbers, NaN where missing (the curve breaks there).
std::vector<double> column(const std::vector<json>& rows, const char* key) {
  std::vector<double> out;
  for (const json& j : rows) out.push_back(metric_number(j, key));
  return out;
}

std::vector<double> losses(const std::vector<CurvePoint>& p) {
  std::vector<double> out;
  for (const CurvePoint& x : p) out.push_back(x.loss);
  return out;
}

const Rgb kBlue{0, 94, 184}, kRed{214, 64, 24}, kGreen{0, 140, 72}, kPurple{128, 60, 170},
    kOrange{235, 150, 0}, kTeal{0, 150, 150}, kBrown{140, 90, 40}, kPink{200, 60, 140},
    kGray{100, 100, 100};

}  // namespace

void draw_builtin(const std::string& dir, const ReportData& d) {
  const std::vector<double> step = column(d.train, "step");
  auto draw = [&](const char* name, PlotSpec spec) {
    write_file_atomic(dir + "/" + name + ".png", encode_png(draw_plot(spec).canvas));
  };
  PlotSpec loss{.title = "loss", .ylabel = "cross-entropy (nats/token)"};
  loss.series.push_back({"train", step, column(d.train, "loss"), kBlue});
  if (!d.val.empty())
    loss.series.push_back(
        {"validation", column(d.val, "step"), column(d.val, "val_loss"), kRed, 2, true});
  if (d.ref) {  // drawn over the run's, in their own colours
    const LossCurves& c = d.ref->curves;
    if (!c.train.empty())
      loss.series.push_back(
          {d.ref->label + " train", reference_x(c.train, d.ref->cmp), losses(c.train), kOrange});
    if (!c.val.empty())
      loss.series.push_back({d.ref->label + " validation", reference_x(c.val, d.ref->cmp),
                             losses(c.val), kPurple, 2, true});
  }
  draw("loss", loss);
  draw("lr", {.title = "learning rate",
              .ylabel = "lr",
              .series = {{"lr", step, column(d.train, "lr"), kGreen, 2}}});
  draw("grad_norm",  // log scale, as plot.gp
       {.title = "gradient norm (before clipping)",
        .ylabel = "L2 norm",
        .log_y = true,
        .series = {{"grad norm", step, column(d.train, "grad_norm"), kPurple}}});
  PlotSpec tp{.title = "throughput", .ylabel = "tokens/s"};
  tp.series.push_back({"tokens/s", step, column(d.train, "tokens_per_s"), kBlue});
  if (d.with_mfu) {
    tp.y2label = "MFU";
    tp.series.push_back({"MFU", step, column(d.train, "mfu"), kRed, 1, false, true});
  }
  draw("throughput", tp);
  if (!d.accuracy.empty()) {
    const bool by_tokens = accuracy_by_tokens(d);
    PlotSpec zs{.title = "zero-shot accuracy",
                .xlabel = by_tokens ? "tokens seen" : "step",
                .ylabel = "accuracy (%)",
                .legend_below = true};  // accuracy rises to the top right
    const Rgb palette[] = {kBlue, kRed, kGreen, kPurple, kOrange, kTeal, kBrown, kPink, kGray};
    for (size_t k = 0; k < d.accuracy.size(); ++k) {
      const AccuracySeries& s = d.accuracy[k];
      zs.series.push_back(
          {s.title(), by_tokens ? s.tokens : s.step, s.value, palette[k % 9], 2, true});
    }
    draw("zero_shot", zs);
  }
}

}  // namespace tl
