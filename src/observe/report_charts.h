// The pictures of `tinyllama report` and the data behind them (observe/report.h): the
// tables (train.tsv, val.tsv, and where the run has them zero_shot.tsv and the reference's
// ref_train.tsv, ref_val.tsv, compare.tsv), gnuplot's plot.gp, and the same charts drawn by
// the built-in plotter.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "observe/report_reference.h"
#include "observe/report_zero_shot.h"

namespace tl {

struct ReferenceRun {
  std::string path, label;
  LossCurves curves;
  Comparison cmp;  // against the run's curves
};

// Everything the report shows, read and checked before anything is written.
struct ReportData {
  std::vector<json> train, val, evals;  // metrics.jsonl's step, validation, eval-task records
  int restarts = 0, checkpoints = 0;
  int64_t redone = 0;
  bool with_mfu = false;                 // some step logged MFU
  std::vector<AccuracySeries> accuracy;  // empty: no zero-shot chart
  std::optional<ReferenceRun> ref;
  // The charts' names (their PNG without ".png"): loss, lr, grad_norm, throughput, and
  // zero_shot where the run evaluated tasks.
  std::vector<std::string> charts() const;
};

// Every name a report may write besides index.html: a file of an earlier report that this
// one does not write again is removed, so that nothing stale passes for new.
std::vector<std::string> report_file_names();

void write_tables(const std::string& dir, const ReportData& d);
std::string plot_script(const ReportData& d);
// Runs gnuplot on dir/plot.gp: "" when it ran and wrote every chart, else why not.
// missing: the program was not found.
std::string run_gnuplot(const std::string& program, const std::string& dir, const ReportData& d,
                        bool& missing);
void draw_builtin(const std::string& dir, const ReportData& d);

}  // namespace tl
