// tinyllama report's additions: zero-shot accuracy from the trainer's eval-task records (the
// series, the table, the chart), and --reference: CSV and jsonl references read (and every
// bad input refused naming file, line and field), aligned by step or tokens, compared in a
// table, drawn over the run's losses, and nothing written when the reference is bad.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "ckpt_test_util.h"
#include "observe/report.h"
#include "observe/report_reference.h"
#include "observe/report_zero_shot.h"
#include "report_test_util.h"

using namespace tl;
using namespace tl::report_test;

namespace {

const Rgb kOrange{235, 150, 0}, kPurple{128, 60, 170};

// An eval-task record as the trainer writes it (train/trainer.cpp, record_task_evals).
json eval_record(int step, const std::string& task, double acc, double acc_norm = NAN) {
  json j{{"step", step}, {"tokens", 64 * step}, {"eval_task", task}, {"n", 100},
         {"acc", acc},   {"acc_stderr", 0.04},  {"seconds", 0.5}};
  if (!std::isnan(acc_norm)) j["acc_norm"] = acc_norm;
  return j;
}

// write_run's folder with hellaswag (acc and acc_norm) and, unless one_task, winogrande (acc
// only) evaluated at steps 4, 8 and 12.
std::string write_run_with_evals(const std::string& dir, bool one_task = false) {
  write_run(dir, 12);
  std::ofstream m(dir + "/metrics.jsonl", std::ios::app);
  for (int k = 1; k <= 3; ++k) {
    m << eval_record(4 * k, "hellaswag", 0.25 + 0.01 * k, 0.28 + 0.02 * k).dump() << "\n";
    if (!one_task) m << eval_record(4 * k, "winogrande", 0.5 + 0.01 * k).dump() << "\n";
  }
  return dir;
}

std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// A reference for write_run's run: at every step 0.3 above its training loss, and its
// validation loss 1.1 times the run's, with the same tokens per step.
std::string write_reference_csv(const std::string& path) {
  std::string t = "step,tokens,loss,val_loss\n";
  for (int i = 1; i <= 12; ++i)
    t += cat(i, ",", 64 * i, ",", 4.3 - 0.1 * i, ",",
             i % 4 ? std::string() : cat(1.1 * (3.9 - 0.1 * i)), "\n");
  return write_text(path, t);
}

ReportSummary builtin_report(const std::string& run, const std::string& reference = "",
                             const std::string& label = "") {
  ReportOptions o;
  o.plotter = Plotter::Builtin;
  o.reference = reference;
  o.reference_label = label;
  return write_report(run, o);
}

}  // namespace

TEST(ReportZeroShot, SeriesPerTaskWithAccNormWhereTheTaskHasIt) {
  const std::vector<json> records = {
      {{"step", 4}, {"loss", 3.6}, {"tokens", 256}},  // not an eval record
      eval_record(4, "hellaswag", 0.25, 0.30),
      eval_record(4, "winogrande", 0.50),
      {{"step", 4}, {"val_loss", 3.5}},
      eval_record(8, "hellaswag", 0.27, 0.32),
      eval_record(8, "winogrande", 0.52),
      eval_record(12, "hellaswag", 0.29, 0.35),  // winogrande not evaluated at 12
  };
  const std::vector<AccuracySeries> s = accuracy_series(records);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].task, "hellaswag");
  EXPECT_EQ(s[0].metric, "acc_norm");
  EXPECT_EQ(s[0].title(), "hellaswag (acc_norm)");
  EXPECT_EQ(s[0].step, (std::vector<double>{4, 8, 12}));
  EXPECT_EQ(s[0].tokens, (std::vector<double>{256, 512, 768}));
  ASSERT_EQ(s[0].value.size(), 3u);
  EXPECT_NEAR(s[0].value[0], 30, 1e-9);  // in %
  EXPECT_NEAR(s[0].value[2], 35, 1e-9);
  EXPECT_EQ(s[1].task, "winogrande");
  EXPECT_EQ(s[1].metric, "acc");
  ASSERT_EQ(s[1].value.size(), 2u);
  EXPECT_NEAR(s[1].value[1], 52, 1e-9);

  const ReportTable t = accuracy_table(s);
  EXPECT_EQ(t.header, (std::vector<std::string>{"step", "tokens", "hellaswag (acc_norm)",
                                                "winogrande (acc)"}));
  ASSERT_EQ(t.rows.size(), 3u);
  EXPECT_EQ(t.rows[0], (std::vector<std::string>{"4", "256", "30.00", "50.00"}));
  EXPECT_EQ(t.rows[2], (std::vector<std::string>{"12", "768", "35.00", "-"}));
  EXPECT_TRUE(accuracy_series({{{"step", 1}, {"loss", 2.0}}}).empty());
}

TEST(ReportZeroShot, FormatTableAlignsColumns) {
  const ReportTable t{"title", {"step", "loss"}, {{"4", "3.5000"}, {"1000", "-"}}};
  EXPECT_EQ(format_table(t),
            "title\n"
            "step    loss\n"
            "   4  3.5000\n"
            "1000       -\n");
  EXPECT_EQ(format_fixed(NAN, 2), "-");
  EXPECT_EQ(format_fixed(-9.0909, 2), "-9.09");
}

TEST(ReportZeroShot, ChartFiguresAndTableThroughTheReport) {
  train_test::TrainFixture fx;
  const std::string run = write_run_with_evals(fx.dir + "/run");
  const ReportSummary r = builtin_report(run);
  ASSERT_EQ(r.files.size(), 6u);  // five charts and the page
  EXPECT_EQ(r.files[4], run + "/report/zero_shot.png");
  const Png both = read_builtin_png(run + "/report/zero_shot.png");
  EXPECT_GT(count(both, kBlue), 300u);  // hellaswag
  EXPECT_GT(count(both, kRed), 300u);   // winogrande
  // One task fewer: its colour is gone, the other's stays.
  const std::string one = write_run_with_evals(fx.dir + "/one", true);
  builtin_report(one);
  const Png single = read_builtin_png(one + "/report/zero_shot.png");
  EXPECT_GT(count(single, kBlue), 300u);
  EXPECT_EQ(count(single, kRed), 0u);

  ASSERT_TRUE(r.figures.contains("zero-shot hellaswag acc_norm (%)")) << r.figures.dump(1);
  EXPECT_NEAR(r.figures["zero-shot hellaswag acc_norm (%)"].get<double>(), 34, 1e-9);
  EXPECT_EQ(r.figures["zero-shot hellaswag step"], 12);
  EXPECT_NEAR(r.figures["zero-shot winogrande acc (%)"].get<double>(), 53, 1e-9);
  ASSERT_EQ(r.tables.size(), 1u);
  EXPECT_EQ(r.tables[0].rows.size(), 3u);
  const std::string html = train_test::read_text(run + "/report/index.html");
  EXPECT_TRUE(has(html, "<img src=\"zero_shot.png\"")) << html;
  EXPECT_TRUE(has(html, "<th>hellaswag (acc_norm)</th>")) << html;
  EXPECT_TRUE(has(html, "<td class=\"n\">34.00</td>")) << html;
  const std::string tsv = train_test::read_text(run + "/report/zero_shot.tsv");
  EXPECT_TRUE(has(tsv, "# step\ttokens\thellaswag (acc_norm)\twinogrande (acc)\n")) << tsv;
  EXPECT_TRUE(has(tsv, "\n12\t768\t34.00\t53.00\n")) << tsv;

  // Without eval records: no chart, no table, no zero-shot figure, and the earlier
  // report's chart does not stay behind.
  write_run(run, 12);
  const ReportSummary plain = builtin_report(run);
  EXPECT_EQ(plain.files.size(), 5u);
  EXPECT_TRUE(plain.tables.empty());
  EXPECT_FALSE(has(plain.figures.dump(), "zero-shot"));
  EXPECT_FALSE(file_exists(run + "/report/zero_shot.png"));
  EXPECT_FALSE(file_exists(run + "/report/zero_shot.tsv"));
  EXPECT_FALSE(has(train_test::read_text(run + "/report/index.html"), "zero_shot"));
}

TEST(ReportReference, ReadsCsv) {
  train_test::TrainFixture fx;
  const LossCurves c = read_reference(write_text(fx.dir + "/ref.csv",
                                                 "step, loss ,val_loss\r\n"
                                                 "1,4.10,\r\n"
                                                 "2,4.00,\r\n"
                                                 "\r\n"
                                                 "3,nan,\r\n"
                                                 "4,3.8,3.6\r\n"));
  ASSERT_EQ(c.train.size(), 3u);
  EXPECT_EQ(c.train[2].step, 4);
  EXPECT_DOUBLE_EQ(c.train[2].loss, 3.8);
  EXPECT_TRUE(std::isnan(c.train[2].tokens));
  ASSERT_EQ(c.val.size(), 1u);
  EXPECT_EQ(c.val[0].step, 4);
  EXPECT_DOUBLE_EQ(c.val[0].loss, 3.6);
  // Tab-separated, by tokens only.
  const LossCurves t =
      read_reference(write_text(fx.dir + "/ref.tsv", "tokens\tloss\n1024\t3.2\n2048\t3.1\n"));
  ASSERT_EQ(t.train.size(), 2u);
  EXPECT_EQ(t.train[1].tokens, 2048);
  EXPECT_TRUE(std::isnan(t.train[1].step));
  EXPECT_TRUE(t.val.empty());
}

TEST(ReportReference, ReadsPytorchTrainerJsonlAsItWritesIt) {
  train_test::TrainFixture fx;
  // bench/pytorch_trainer.py: json.dumps of a start event, step records and validation
  // records (with tokens); Python writes NaN and Infinity for non-finite floats.
  const std::string path = write_text(
      fx.dir + "/ref.jsonl",
      "{\"event\": \"start\", \"hf\": \"/x/NaN-hf\", \"args\": {\"hf\": \"hf\", \"steps\": 8, "
      "\"clip\": 1.0}, \"torch\": \"2.11.0\", \"device\": \"NVIDIA H100 80GB HBM3\"}\n"
      "{\"step\": 1, \"loss\": 4.2, \"lr\": 4e-05, \"grad_norm\": 1.5, \"tokens\": 4096, "
      "\"seconds\": 0.5}\n"
      "{\"step\": 2, \"loss\": NaN, \"lr\": 8e-05, \"grad_norm\": Infinity, \"tokens\": 8192, "
      "\"seconds\": 0.9}\n"
      "{\"step\": 2, \"val_loss\": 4.05, \"val_perplexity\": 57.4, \"tokens\": 8192}\n");
  const LossCurves c = read_reference(path);
  ASSERT_EQ(c.train.size(), 1u);
  EXPECT_EQ(c.train[0].step, 1);
  EXPECT_EQ(c.train[0].tokens, 4096);
  EXPECT_DOUBLE_EQ(c.train[0].loss, 4.2);
  ASSERT_EQ(c.val.size(), 1u);
  EXPECT_EQ(c.val[0].step, 2);
  EXPECT_EQ(c.val[0].tokens, 8192);
  EXPECT_DOUBLE_EQ(c.val[0].loss, 4.05);
}

TEST(ReportReference, ReadsAnotherRunsMetrics) {
  train_test::TrainFixture fx;
  const std::string run = write_run_with_evals(fx.dir + "/other");
  std::ofstream(run + "/metrics.jsonl", std::ios::app) << "{\"step\": 13, \"lo";  // cut short
  const LossCurves c = read_reference(run + "/metrics.jsonl");
  EXPECT_EQ(c.train.size(), 11u);  // step 3's loss is null
  ASSERT_EQ(c.val.size(), 3u);     // eval-task records pass over
  EXPECT_EQ(c.val[1].step, 8);
  EXPECT_EQ(c.val[1].tokens, 512);  // from the step record of step 8
  EXPECT_DOUBLE_EQ(c.val[1].loss, 3.9 - 0.8);
}

TEST(ReportReference, BadInputNamesFileLineAndField) {
  train_test::TrainFixture fx;
  const std::string missing = fx.dir + "/none.csv";
  EXPECT_EQ(ckpt_test::error_of([&] { read_reference(missing); }),
            "reference '" + missing + "': no such file");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"step,lr,loss\n1,0.1,3\n",
       "line 1, field 'lr': unknown column (accepted: step, tokens, loss, val_loss)"},
      {"step,loss\n1,3.0\n2,abc\n", "line 3, field 'loss': 'abc' is not a number"},
      {"step,loss\n1.5,3.0\n", "line 2, field 'step': '1.5' is not a whole number >= 0"},
      {"tokens,loss\n-4,3.0\n", "line 2, field 'tokens': '-4' is not a whole number >= 0"},
      {"loss,val_loss\n3,4\n", "line 1: no step or tokens column"},
      {"step,tokens\n1,2\n", "line 1: no loss or val_loss column"},
      {"step,step,loss\n", "line 1, field 'step': a second column of that name"},
      {"step,loss\n1,3.0,7\n", "line 2: 3 fields where the header has 2"},
      {"step,loss,val_loss\n1,,\n,3.0,\n", "line 3: a loss without step or tokens"},
      {"{\"step\": 1, \"loss\": 3.0}\n{\"step\": 2, \"loss\": \"abc\"}\n",
       "line 2, field 'loss': \"abc\" is not a number"},
      {"{\"step\": 1, \"loss\": 3.0}\n{\"step\": 2, \"loss\": 3.\n{\"step\": 3, \"loss\": 2.9}\n",
       "line 2: not a JSON object"},
      {"{\"tokens\": 1e3, \"val_loss\": 3.0}\n{\"step\": \"2\", \"loss\": 3.0}\n",
       "line 2, field 'step': \"2\" is not a number"},
      {"{\"event\": \"x\"}\n{\"loss\": 3.0}\n", "line 2: a loss without step or tokens"},
      {"{\"event\": \"start\"}\n", "holds no loss or val_loss values"},
      {"step,loss\n", "holds no loss or val_loss values"},
      {" \n", "is empty"},
  };
  int i = 0;
  for (const auto& [text, want] : cases) {
    const std::string path = write_text(cat(fx.dir, "/bad", i++, ".txt"), text);
    const std::string got = ckpt_test::error_of([&] { read_reference(path); });
    EXPECT_TRUE(has(got, "reference '" + path + "'") && has(got, want))
        << "input:\n"
        << text << "\nwant: " << want << "\ngot:  " << got;
  }
}

TEST(ReportReference, AlignsByTokensWhereBothHaveThemElseBySteps) {
  LossCurves run;  // 100 tokens a step; validation at steps 0 and 4, without tokens
  for (int s = 1; s <= 4; ++s) run.train.push_back({double(s), 100.0 * s, 4 - 0.1 * s});
  run.train[2].loss = NAN;  // a skipped step
  run.val = {{0, NAN, 4.5}, {4, NAN, 3.5}};
  fill_val_tokens(run);
  EXPECT_EQ(run.val[0].tokens, 0);
  EXPECT_EQ(run.val[1].tokens, 400);

  // Twice the tokens a step: step 2 of the reference meets step 4 of the run.
  LossCurves twice;
  twice.train = {{1, 200, 3.9}, {2, 400, 3.7}};
  twice.val = {{2, 400, 3.4}};
  Comparison c = compare_curves(run, twice);
  EXPECT_EQ(c.key, "tokens");
  EXPECT_EQ(c.tokens_per_step, 100);
  ASSERT_EQ(c.train.size(), 2u);
  EXPECT_EQ(c.train[0].step, 2);
  EXPECT_DOUBLE_EQ(c.train[0].ref, 3.9);
  EXPECT_EQ(c.train[1].step, 4);  // the run's step 3 (tokens 300) has no loss, nor a match
  ASSERT_EQ(c.val.size(), 1u);
  EXPECT_EQ(c.val[0].step, 4);
  EXPECT_NEAR(c.val[0].rel(), (3.5 - 3.4) / 3.4, 1e-12);
  EXPECT_EQ(reference_x(twice.train, c), (std::vector<double>{2, 4}));  // on the run's axis

  // Steps only: aligned by step, whatever the tokens.
  LossCurves steps;
  steps.train = {{1, NAN, 3.8}, {3, NAN, 3.6}, {4, NAN, 3.5}, {9, NAN, 3.0}};
  steps.val = {{4, NAN, 3.3}};
  c = compare_curves(run, steps);
  EXPECT_EQ(c.key, "step");
  ASSERT_EQ(c.train.size(), 2u);  // steps 1 and 4 (3 has no loss in the run; 9 no run step)
  EXPECT_EQ(c.train[1].step, 4);
  EXPECT_EQ(c.train[1].tokens, 400);
  EXPECT_DOUBLE_EQ(c.train[1].ref, 3.5);
  EXPECT_EQ(reference_x(steps.train, c), (std::vector<double>{1, 3, 4, 9}));

  // Tokens only, and a run that does not log them: nothing to align by.
  LossCurves tokens_only;
  tokens_only.train = {{NAN, 100, 3.8}};
  LossCurves no_tokens = run;
  no_tokens.train[0].tokens = NAN;
  EXPECT_TRUE(
      has(ckpt_test::error_of([&] { compare_curves(no_tokens, tokens_only); }), "tokens only"));
}

TEST(ReportReference, ComparisonTable) {
  std::vector<LossMatch> m;
  for (int s = 1; s <= 100; ++s) m.push_back({double(s), 64.0 * s, 3.3, 3.0});
  const ReportTable all = comparison_table(
      {{250, 1.6e7, 3.3, 3.0}, {500, 3.2e7, 2.9, 3.0}, {1000, 6.4e7, 2.7, 2.7}}, "val", "pt", 99);
  EXPECT_EQ(all.header, (std::vector<std::string>{"step", "tokens", "run", "pt", "rel. diff (%)"}));
  ASSERT_EQ(all.rows.size(), 3u);
  EXPECT_EQ(all.rows[0],
            (std::vector<std::string>{"250", "16000000", "3.3000", "3.0000", "10.00"}));
  EXPECT_EQ(all.rows[1][4], "-3.33");
  EXPECT_EQ(all.rows[2][4], "0.00");
  const ReportTable ten = comparison_table(m, "train", "pt", 10);
  ASSERT_EQ(ten.rows.size(), 10u);
  EXPECT_EQ(ten.rows.front()[0], "1");
  EXPECT_EQ(ten.rows.back()[0], "100");
  EXPECT_EQ(ten.rows[1][0], "12");  // evenly spread: 1 + 99/9 rounded down
  EXPECT_EQ(comparison_table(m, "train", "pt", 1).rows.at(0)[0], "100");
}

TEST(ReportReference, DrawnOverTheLossesAndComparedInTheReport) {
  train_test::TrainFixture fx;
  const std::string run = write_run(fx.dir + "/run", 12);
  builtin_report(run);
  const Png plain = read_builtin_png(run + "/report/loss.png");
  EXPECT_EQ(count(plain, kOrange), 0u);
  EXPECT_EQ(count(plain, kPurple), 0u);

  const std::string ref = write_reference_csv(fx.dir + "/pytorch-ref.csv");
  const ReportSummary r = builtin_report(run, ref);
  const Png with = read_builtin_png(run + "/report/loss.png");
  EXPECT_GT(count(with, kOrange), 300u);  // the reference's training loss
  EXPECT_GT(count(with, kPurple), 50u);   // and its validation points
  size_t changed = 0;
  for (uint32_t y = 0; y < with.height; ++y)
    for (uint32_t x = 0; x < with.width; ++x)
      changed += !(with.at(int(x), int(y)) == plain.at(int(x), int(y)));
  EXPECT_GT(changed, 1000u);

  EXPECT_EQ(r.figures["reference"], "pytorch-ref (" + ref + ")");  // the file's stem
  EXPECT_EQ(r.figures["reference aligned by"], "tokens");
  EXPECT_EQ(r.figures["points shared with reference"], "11 train, 3 validation");
  EXPECT_EQ(r.figures["last shared validation step"], 12);
  EXPECT_NEAR(r.figures["reference validation loss"].get<double>(), 2.97, 1e-12);
  EXPECT_NEAR(r.figures["validation loss vs reference (%)"].get<double>(), 100 * (1 / 1.1 - 1),
              1e-9);
  // Means over the 11 shared steps (step 3's loss is missing: 75 is the sum of the others).
  EXPECT_NEAR(r.figures["train loss vs reference (%)"].get<double>(),
              100 * -0.3 / (4.3 - 0.1 * 75 / 11), 1e-9);
  ASSERT_EQ(r.tables.size(), 2u);
  EXPECT_EQ(r.tables[0].title, "validation loss vs pytorch-ref (aligned by tokens)");
  ASSERT_EQ(r.tables[0].rows.size(), 3u);
  EXPECT_EQ(r.tables[0].rows[0],
            (std::vector<std::string>{"4", "256", "3.5000", "3.8500", "-9.09"}));
  EXPECT_EQ(r.tables[1].rows.size(), 10u);  // of the 11 steps both have
  const std::string cmp = train_test::read_text(run + "/report/compare.tsv");
  EXPECT_EQ(std::count(cmp.begin(), cmp.end(), '\n'), 1 + 11 + 3) << cmp;
  EXPECT_TRUE(has(train_test::read_text(run + "/report/index.html"),
                  "<h3>validation loss vs pytorch-ref (aligned by tokens)</h3>"));

  // A label of one's own; and without the reference again, nothing of it stays behind.
  EXPECT_EQ(builtin_report(run, ref, "torch").tables[0].header[3], "torch");
  const ReportSummary again = builtin_report(run);
  EXPECT_FALSE(again.figures.contains("reference"));
  EXPECT_TRUE(again.tables.empty());
  for (const char* name : {"ref_train.tsv", "ref_val.tsv", "compare.tsv"})
    EXPECT_FALSE(file_exists(run + "/report/" + name)) << name;
}

TEST(ReportReference, GnuplotDrawsTheSameCharts) {
  if (!gnuplot_installed()) GTEST_SKIP() << "gnuplot is not installed (scripts/setup.sh)";
  train_test::TrainFixture fx;
  const std::string run = write_run_with_evals(fx.dir + "/run");
  ReportOptions o;
  o.plotter = Plotter::Gnuplot;
  o.reference = write_reference_csv(fx.dir + "/ref.csv");
  o.reference_label = "it's";  // a quote, doubled in gnuplot's string
  const ReportSummary r = write_report(run, o);
  EXPECT_EQ(r.plotter, "gnuplot");
  ASSERT_EQ(r.files.size(), 6u);
  for (size_t i = 0; i < 5; ++i) expect_valid_png(r.files[i]);
  const std::string gp = train_test::read_text(run + "/report/plot.gp");
  EXPECT_TRUE(
      has(gp, "'ref_val.tsv' using 1:2 with linespoints lw 2 pt 6 title 'it''s validation'"))
      << gp;
  EXPECT_TRUE(has(gp, "'' using 2:4 with linespoints lw 2 pt 7 title 'winogrande (acc)'")) << gp;
}

TEST(ReportReference, ThroughTheBinaryAndNothingWrittenOnBadInput) {
  train_test::TrainFixture fx;
  const std::string run = write_run_with_evals(fx.dir + "/run");
  auto report = [&](const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {"report", run, "--plotter", "builtin"});
    const std::string log = fx.dir + "/" + name + ".txt";
    const int rc = train_test::wait_exit(train_test::spawn_binary(args, log));
    return std::make_pair(rc, train_test::read_text(log));
  };
  const std::string ref = write_reference_csv(fx.dir + "/ref.csv");
  auto [rc, log] = report("good", {"--reference", ref, "--reference-label", "pytorch"});
  ASSERT_EQ(rc, 0) << log;
  for (const char* want : {"validation loss vs pytorch (aligned by tokens)\n", "rel. diff (%)",
                           "3.5000   3.8500          -9.09\n", "zero-shot accuracy (%)\n",
                           "hellaswag (acc_norm)  winogrande (acc)\n", "report: "})
    EXPECT_TRUE(has(log, want)) << want << "\n" << log;

  const std::string page = train_test::read_text(run + "/report/index.html");
  const std::string loss = train_test::read_text(run + "/report/loss.png");
  const std::string bad = write_text(fx.dir + "/bad.csv", "step,loss\n1,3.0\n2,abc\n");
  std::tie(rc, log) = report("bad", {"--reference", bad});
  EXPECT_NE(rc, 0);
  EXPECT_TRUE(has(log, "reference '" + bad + "' line 3, field 'loss': 'abc' is not a number"))
      << log;
  EXPECT_EQ(train_test::read_text(run + "/report/index.html"), page);  // untouched
  EXPECT_EQ(train_test::read_text(run + "/report/loss.png"), loss);
  EXPECT_TRUE(file_exists(run + "/report/compare.tsv"));

  std::tie(rc, log) = report("missing", {"--reference", fx.dir + "/none.jsonl"});
  EXPECT_NE(rc, 0);
  EXPECT_TRUE(has(log, "none.jsonl': no such file")) << log;
  std::tie(rc, log) = report("label", {"--reference-label", "x"});
  EXPECT_NE(rc, 0);
  EXPECT_TRUE(has(log, "--reference")) << log;
}
