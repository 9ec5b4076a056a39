// tinyllama report RUN_DIR: a run's curves and figures for people, from its metrics.jsonl
// and config.json, into RUN_DIR/report/:
//   loss.png (train and validation), lr.png, grad_norm.png, throughput.png (tokens/s, and
//   MFU where known), drawn by gnuplot (pngcairo when it has it, else png), or where gnuplot
//   cannot run (GPU clusters) by the built-in plotter (observe/plot_png.h);
//   zero_shot.png where metrics.jsonl holds eval-task records (the trainer's eval.tasks):
//   accuracy against tokens seen, one line per task (acc_norm where the task has it, else acc);
//   with a reference (--reference FILE, observe/report_reference.h) its losses drawn over the
//   run's on loss.png, and the two compared where both have a value;
//   index.html showing them with the run's figures, tables and config;
//   train.tsv, val.tsv, zero_shot.tsv, ref_train.tsv, ref_val.tsv, compare.tsv, plot.gp: the
//   data and script, to redraw by hand.
// Every input is read and checked before anything is written; each file is written whole
// (a temporary file renamed over it).
#pragma once
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "observe/report_table.h"

namespace tl {

// Auto: gnuplot when it runs and draws, else the built-in plotter (saying so on stderr).
enum class Plotter { Auto, Gnuplot, Builtin };

struct ReportOptions {
  std::string gnuplot = "gnuplot";  // program name (looked up in PATH) or path
  Plotter plotter = Plotter::Auto;
  std::string reference;        // a reference run's losses to compare with; "" for none
  std::string reference_label;  // its name in legends and tables; "" for the file's stem
};

struct ReportSummary {
  nlohmann::ordered_json figures;   // what index.html shows, in order
  std::vector<std::string> files;   // written, full paths
  std::vector<ReportTable> tables;  // zero-shot accuracy; losses against the reference
  std::string plotter;              // what drew the PNGs: "gnuplot" or "builtin"
};

// Throws naming the problem: no metrics, no steps logged, a reference that cannot be read
// (observe/report_reference.h, read_reference), and with Plotter::Gnuplot gnuplot missing or
// failing.
ReportSummary write_report(const std::string& run_dir, const ReportOptions& opts = {});

}  // namespace tl
