// tinyllama report: valid PNG curves (signature, IHDR with its CRC, IEND) and an HTML page
// that shows them with the run's figures and config; a clear error without gnuplot.
#include <gtest/gtest.h>

#include <cstring>

#include "core/hash.h"
#include "train/report.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace tl;

namespace {

uint32_t be32(const std::string& s, size_t at) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + at);
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

void expect_valid_png(const std::string& path) {
  SCOPED_TRACE(path);
  const std::string b = train_test::read_text(path);
  ASSERT_GT(b.size(), 8u + 25u + 12u);
  EXPECT_EQ(b.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(be32(b, 8), 13u);  // IHDR comes first and holds 13 bytes
  EXPECT_EQ(b.substr(12, 4), "IHDR");
  EXPECT_GE(be32(b, 16), 200u);  // width
  EXPECT_GE(be32(b, 20), 100u);  // height
  EXPECT_EQ(be32(b, 29), crc32_update(0, b.data() + 12, 17));  // over type and data
  EXPECT_EQ(b.substr(b.size() - 8, 4), "IEND");
}

bool gnuplot_installed() { return std::system("command -v gnuplot > /dev/null 2>&1") == 0; }

bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
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
    for (size_t at = 0; (at = html.find(std::string("<") + tag, at)) != std::string::npos; ++at) opens++;
    for (size_t at = 0; (at = html.find(std::string("</") + tag + ">", at)) != std::string::npos; ++at) closes++;
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
  try {
    write_report(fx.run("r"), o);
    FAIL() << "a report without gnuplot";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "no-such-gnuplot") && has(e.what(), "gnuplot-nox")) << e.what();
  }
  try {
    write_report(fx.dir + "/a");
    FAIL() << "a report of a folder that is no run";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), "metrics.jsonl")) << e.what();
  }
}
