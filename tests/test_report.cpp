// tinyllama report: valid PNG curves (every chunk's CRC, IDAT that inflates to the picture's
// size) and an HTML page that shows them with the run's figures and config; the built-in
// plotter's pixels (the series where its values are, gaps at missing values, axes, ticks);
// gnuplot or the built-in plotter as asked, and a clear error without gnuplot.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "observe/plot_png.h"
#include "observe/report.h"
#include "report_test_util.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace tl;
using namespace tl::report_test;

namespace {

const Rgb kWhite{255, 255, 255};

// A falling loss-like line over steps 0..100, its value at step 50 missing.
PlotSpec falling_line() {
  PlotSpec spec{.title = "loss", .ylabel = "nats"};
  PlotSeries s{"train", {}, {}, kBlue};
  for (int i = 0; i <= 100; ++i) s.x.push_back(i), s.y.push_back(i == 50 ? NAN : 5 - 0.03 * i);
  spec.series.push_back(s);
  return spec;
}

size_t count(const Canvas& c, Rgb colour) {
  size_t n = 0;
  for (int y = 0; y < c.height(); ++y)
    for (int x = 0; x < c.width(); ++x) n += c.at(x, y) == colour;
  return n;
}

}  // namespace

TEST(Report, DrawsTheCurvesAndWritesThePage) {
  if (!gnuplot_installed()) GTEST_SKIP() << "gnuplot is not installed (scripts/setup.sh)";
  train_test::TrainFixture fx;
  json cfg = fx.config("r", 12);
  cfg["eval"]["interval"] = 4;
  Trainer(TrainConfig::from_json(cfg), "").run();
  const std::string log = fx.dir + "/log.txt";
  ASSERT_EQ(train_test::wait_exit(train_test::spawn_binary({"report", fx.run("r")}, log)), 0)
      << train_test::read_text(log);
  EXPECT_TRUE(has(train_test::read_text(log), "report: ")) << train_test::read_text(log);
  EXPECT_FALSE(has(train_test::read_text(log), "built-in")) << train_test::read_text(log);
  for (const char* name : {"loss", "lr", "grad_norm", "throughput"})
    expect_valid_png(fx.run("r") + "/report/" + name + ".png");

  const std::string html = train_test::read_text(fx.run("r") + "/report/index.html");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_TRUE(has(html, "</html>"));
  for (const char* name : {"loss", "lr", "grad_norm", "throughput"})
    EXPECT_TRUE(has(html, std::string("<img src=\"") + name + ".png\"")) << name;
  EXPECT_TRUE(has(html, "<td>steps done</td><td>12</td>")) << html;
  EXPECT_TRUE(has(html, "<td>steps planned</td><td>12</td>"));
  EXPECT_TRUE(has(html, "last validation loss"));
  EXPECT_TRUE(has(html, "&quot;micro_batch&quot;: 4"));  // the config, escaped
  // The page's tags open and close in pairs.
  for (const char* tag : {"table", "pre", "body", "html", "head"}) {
    size_t opens = 0, closes = 0;
    for (size_t at = 0; (at = html.find(std::string("<") + tag, at)) != std::string::npos; ++at)
      opens++;
    for (size_t at = 0; (at = html.find(std::string("</") + tag + ">", at)) != std::string::npos;
         ++at)
      closes++;
    EXPECT_EQ(opens, closes) << tag;
  }
  // The data behind the curves: a header and one row per step.
  const std::string tsv = train_test::read_text(fx.run("r") + "/report/train.tsv");
  EXPECT_EQ(std::count(tsv.begin(), tsv.end(), '\n'), 13);
}

TEST(Report, ClearErrorsWithoutGnuplotOrMetrics) {
  train_test::TrainFixture fx;
  Trainer(TrainConfig::from_json(fx.config("r", 3)), "").run();
  ReportOptions o;
  o.gnuplot = fx.dir + "/no-such-gnuplot";
  o.plotter = Plotter::Gnuplot;
  try {
    write_report(fx.run("r"), o);
    FAIL() << "a report without gnuplot";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "no-such-gnuplot") && has(e.what(), "gnuplot-nox")) << e.what();
  }
  // auto (the default) draws with the built-in plotter instead.
  o.plotter = Plotter::Auto;
  const ReportSummary r = write_report(fx.run("r"), o);
  EXPECT_EQ(r.plotter, "builtin");
  ASSERT_EQ(r.files.size(), 5u);
  for (size_t i = 0; i < 4; ++i) read_builtin_png(r.files[i]);
  try {
    write_report(fx.dir + "/a");
    FAIL() << "a report of a folder that is no run";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "metrics.jsonl")) << e.what();
  }
}

TEST(Report, PlotterFlagThroughTheBinary) {
  train_test::TrainFixture fx;
  json cfg = fx.config("r", 8);
  cfg["eval"]["interval"] = 4;
  Trainer(TrainConfig::from_json(cfg), "").run();
  const std::string report = fx.run("r") + "/report", missing = fx.dir + "/no-such-gnuplot";
  auto run = [&](const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {"report", fx.run("r")});
    const std::string log = fx.dir + "/" + name + ".txt";
    const int rc = train_test::wait_exit(train_test::spawn_binary(args, log));
    return std::make_pair(rc, train_test::read_text(log));
  };
  // builtin: gnuplot is not even tried (a missing one does not matter, nor is it mentioned).
  auto [rc, log] = run("builtin", {"--plotter", "builtin", "--gnuplot", missing});
  ASSERT_EQ(rc, 0) << log;
  EXPECT_TRUE(has(log, "report: ")) << log;
  EXPECT_FALSE(has(log, "gnuplot not found")) << log;
  for (const char* name : {"loss", "lr", "grad_norm", "throughput"}) {
    const Png png = read_builtin_png(report + "/" + name + ".png");
    EXPECT_EQ(png.width, 960u);
    EXPECT_EQ(png.height, 540u);
  }
  // The data and the script stay, to redraw with gnuplot later; the page shows the pictures.
  for (const char* name : {"train.tsv", "val.tsv", "plot.gp"})
    EXPECT_TRUE(file_exists(report + "/" + name)) << name;
  EXPECT_TRUE(has(train_test::read_text(report + "/index.html"), "<img src=\"loss.png\""));
  EXPECT_EQ(read_builtin_png(report + "/loss.png").raw.size(), 540u * (1 + 3 * 960));

  // auto without gnuplot: one line says so, and the pictures come all the same.
  std::remove((report + "/loss.png").c_str());
  std::tie(rc, log) = run("auto", {"--gnuplot", missing});
  ASSERT_EQ(rc, 0) << log;
  EXPECT_TRUE(has(log, "gnuplot not found: drawing with the built-in plotter\n")) << log;
  read_builtin_png(report + "/loss.png");

  // gnuplot asked for and missing: the clear error, and no picture passes for new.
  std::tie(rc, log) = run("gnuplot", {"--plotter", "gnuplot", "--gnuplot", missing});
  EXPECT_NE(rc, 0);
  EXPECT_TRUE(has(log, "no-such-gnuplot") && has(log, "gnuplot-nox")) << log;
  EXPECT_FALSE(file_exists(report + "/loss.png"));

  std::tie(rc, log) = run("bad", {"--plotter", "matplotlib"});
  EXPECT_NE(rc, 0);
  EXPECT_TRUE(has(log, "matplotlib")) << log;
}

TEST(Report, BuiltinPlotterTakesMissingValues) {
  train_test::TrainFixture fx;
  const std::string run = write_run(fx.dir + "/hand", 12);
  ReportOptions o;
  o.plotter = Plotter::Builtin;
  o.gnuplot = fx.dir + "/no-such-gnuplot";
  const ReportSummary r = write_report(run, o);
  EXPECT_EQ(r.plotter, "builtin");
  for (const char* name : {"loss", "lr", "grad_norm", "throughput"}) {
    const Png png = read_builtin_png(run + "/report/" + name + ".png");
    // Drawn on: more than the background and the ink of the axes.
    std::set<uint32_t> colours;
    for (uint32_t y = 0; y < png.height; ++y)
      for (uint32_t x = 0; x < png.width; ++x) {
        const Rgb c = png.at(int(x), int(y));
        colours.insert(uint32_t(c.r) << 16 | c.g << 8 | c.b);
      }
    EXPECT_GE(colours.size(), 4u) << name;
  }
  EXPECT_TRUE(has(train_test::read_text(run + "/report/train.tsv"), "\t?\t"));  // gnuplot's missing
}

TEST(ReportPlot, PngHoldsTheCanvasPixelForPixel) {
  train_test::TrainFixture fx;
  const Plot p = draw_plot(falling_line());
  const std::string path = fx.dir + "/line.png";
  std::ofstream(path, std::ios::binary) << encode_png(p.canvas);
  const Png png = read_builtin_png(path);
  ASSERT_EQ(png.width, uint32_t(p.canvas.width()));
  ASSERT_EQ(png.height, uint32_t(p.canvas.height()));
  size_t differ = 0;
  for (int y = 0; y < p.canvas.height(); ++y)
    for (int x = 0; x < p.canvas.width(); ++x) differ += !(png.at(x, y) == p.canvas.at(x, y));
  EXPECT_EQ(differ, 0u);
}

TEST(ReportPlot, DrawsTheSeriesWhereItsValuesAreAndBreaksAtMissingOnes) {
  const Plot p = draw_plot(falling_line());
  const Canvas& c = p.canvas;
  EXPECT_EQ(c.width(), 960);
  EXPECT_EQ(c.height(), 540);
  for (int i : {0, 10, 30, 49, 51, 70, 90, 100})
    EXPECT_EQ(c.at(p.x.pixel(i), p.y.pixel(5 - 0.03 * i)), kBlue) << "step " << i;
  // Step 50 is missing: no line across it, as gnuplot's '?'.
  for (double at : {49.6, 50.0, 50.4})
    EXPECT_FALSE(c.at(p.x.pixel(at), p.y.pixel(5 - 0.03 * at)) == kBlue) << at;
  // Far from the line, the grid and the text (below it, between grid lines): background.
  const double gx = (p.x.ticks[0] + p.x.ticks[1]) / 2, gy = (p.y.ticks[0] + p.y.ticks[1]) / 2;
  EXPECT_EQ(c.at(p.x.pixel(gx), p.y.pixel(gy)), kWhite);
  EXPECT_FALSE(c.at(p.x.pixel(p.x.ticks[1]), p.y.pixel(gy)) == kWhite);  // a grid line
  EXPECT_FALSE(c.at(p.x.p0, p.y.pixel(gy)) == kWhite);                   // the axis box
  // The ranges hold the values and end on ticks; the legend shows the series' colour too.
  EXPECT_LE(p.x.lo, 0);
  EXPECT_GE(p.x.hi, 100);
  EXPECT_LE(p.y.lo, 2);
  EXPECT_GE(p.y.hi, 5);
  EXPECT_EQ(p.y.ticks.front(), p.y.lo);
  EXPECT_EQ(p.y.ticks.back(), p.y.hi);
  const size_t blue = count(c, kBlue);
  EXPECT_GT(blue, 800u);  // the line spans ~850 columns
  PlotSpec untitled = falling_line();
  untitled.series[0].title.clear();
  EXPECT_LT(count(draw_plot(untitled).canvas, kBlue), blue);  // no legend sample
  // Text: the title is drawn above the box, the tick labels left of it.
  size_t ink = 0;
  for (int y = 0; y < p.y.p1; ++y)
    for (int x = 0; x < c.width(); ++x) ink += !(c.at(x, y) == kWhite);
  EXPECT_GT(ink, 20u);
  EXPECT_LT(ink, 2000u);
}

TEST(ReportPlot, LogAxisAndSecondAxis) {
  PlotSpec spec{.title = "gradient norm", .ylabel = "L2 norm", .log_y = true};
  PlotSeries g{"grad norm", {}, {}, kBlue};
  for (int i = 0; i <= 100; ++i) g.x.push_back(i), g.y.push_back(std::pow(10.0, i / 50.0));
  g.y[20] = 0, g.y[21] = -1;  // not on a log axis: gaps
  spec.series.push_back(g);
  const Plot p = draw_plot(spec);
  EXPECT_TRUE(p.y.log);
  EXPECT_DOUBLE_EQ(p.y.lo, 1);
  EXPECT_DOUBLE_EQ(p.y.hi, 100);
  EXPECT_EQ(p.y.ticks, (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
  EXPECT_NEAR(p.y.pixel(10), (p.y.p0 + p.y.p1) / 2.0, 1);  // a decade is a decade
  EXPECT_EQ(p.canvas.at(p.x.pixel(50), p.y.pixel(10)), kBlue);
  EXPECT_EQ(p.canvas.at(p.x.pixel(75), p.y.pixel(std::pow(10.0, 1.5))), kBlue);
  EXPECT_FALSE(p.canvas.at(p.x.pixel(20), p.y.pixel(std::pow(10.0, 0.4))) == kBlue);

  // tokens/s on the left, MFU against its own axis on the right.
  PlotSpec tp{.title = "throughput", .ylabel = "tokens/s", .y2label = "MFU"};
  PlotSeries t{"tokens/s", {}, {}, kBlue}, m{"MFU", {}, {}, kRed, 1, false, true};
  for (int i = 1; i <= 60; ++i) {
    t.x.push_back(i), t.y.push_back(150000 + 100 * i);
    m.x.push_back(i), m.y.push_back(0.5 - 0.005 * i);
  }
  tp.series = {t, m};
  const Plot q = draw_plot(tp);
  EXPECT_LE(q.y.lo, 150100);
  EXPECT_GE(q.y.hi, 156000);
  EXPECT_GT(q.y.lo, 100000);  // the left axis is not stretched to MFU's values
  EXPECT_LE(q.y2.lo, 0.2);
  EXPECT_GE(q.y2.hi, 0.495);
  EXPECT_LT(q.y2.hi, 1);
  EXPECT_EQ(q.canvas.at(q.x.pixel(10), q.y2.pixel(0.45)), kRed);
  EXPECT_EQ(q.canvas.at(q.x.pixel(20), q.y.pixel(152000)), kBlue);
  EXPECT_LT(q.x.p1, 960 - 60);  // room for the right axis' labels
}

TEST(ReportPlot, NiceTicksAndLabels) {
  for (auto [a, b] : std::vector<std::pair<double, double>>{{0.13, 0.87},
                                                            {0, 12},
                                                            {1, 300},
                                                            {2.31, 2.37},
                                                            {-3, 7},
                                                            {3e-5, 3e-4},
                                                            {147000, 153000},
                                                            {4, 4}}) {
    SCOPED_TRACE(std::to_string(a) + ".." + std::to_string(b));
    double lo = a, hi = b;
    const std::vector<double> t = nice_ticks(lo, hi, false);
    ASSERT_GE(t.size(), 3u);
    EXPECT_LE(t.size(), 12u);
    EXPECT_LE(lo, a);
    EXPECT_GE(hi, b);
    EXPECT_EQ(t.front(), lo);
    EXPECT_EQ(t.back(), hi);
    const double step = t[1] - t[0];
    const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    EXPECT_TRUE(std::fabs(mantissa - 1) < 1e-6 || std::fabs(mantissa - 2) < 1e-6 ||
                std::fabs(mantissa - 5) < 1e-6)
        << step;
    for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], step, step * 1e-6);
  }
  double lo = 0.13, hi = 0.87;
  EXPECT_EQ(nice_ticks(lo, hi, false).size(), 9u);  // 0.1, 0.2, ... 0.9
  EXPECT_DOUBLE_EQ(lo, 0.1);
  lo = 0.3, hi = 7;
  EXPECT_EQ(nice_ticks(lo, hi, true), (std::vector<double>{0.1, 0.2, 0.5, 1, 2, 5, 10}));
  lo = 1e-3, hi = 1e9;  // many decades: every other one or so
  EXPECT_LE(nice_ticks(lo, hi, true).size(), 9u);
  EXPECT_EQ(tick_label(0.30000000000000004, 0.1), "0.3");
  EXPECT_EQ(tick_label(0.00005, 0.00005), "0.00005");
  EXPECT_EQ(tick_label(150000, 1000), "150000");
  EXPECT_EQ(tick_label(-2.5, 0.5), "-2.5");
  EXPECT_EQ(tick_label(10, 2), "10");
  EXPECT_EQ(tick_label(0, 0.1), "0");
  EXPECT_EQ(tick_label(1e-7, 1e-7), "1e-7");
  EXPECT_EQ(tick_label(2e9, 1e9), "2e+9");
}
