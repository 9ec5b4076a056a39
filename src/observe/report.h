// tinyllama report RUN_DIR: a run's curves and figures for people, from its metrics.jsonl
// and config.json, into RUN_DIR/report/:
//   loss.png (train and validation), lr.png, grad_norm.png, throughput.png (tokens/s, and
//   MFU where known), drawn by gnuplot (pngcairo when it has it, else png), or where gnuplot
//   cannot run (GPU clusters) by the built-in plotter (observe/plot_png.h);
//   index.html showing them with the run's figures and its config;
//   train.tsv, val.tsv, plot.gp: the data and script, to redraw by hand.
#pragma once
#include <string>
#include <vector>

#include "core/json_reader.h"

namespace tl {

// Auto: gnuplot when it runs and draws, else the built-in plotter (saying so on stderr).
enum class Plotter { Auto, Gnuplot, Builtin };

struct ReportOptions {
  std::string gnuplot = "gnuplot";  // program name (looked up in PATH) or path
  Plotter plotter = Plotter::Auto;
};

struct ReportSummary {
  nlohmann::ordered_json figures;  // what index.html shows, in order
  std::vector<std::string> files;  // written, full paths
  std::string plotter;             // what drew the PNGs: "gnuplot" or "builtin"
};

// Throws naming the problem: no metrics, no steps logged, and with Plotter::Gnuplot gnuplot
// missing or failing.
ReportSummary write_report(const std::string& run_dir, const ReportOptions& opts = {});

}  // namespace tl
