// tinyllama report RUN_DIR [--plotter auto|gnuplot|builtin] [--gnuplot PROGRAM]
//                         [--reference FILE [--reference-label NAME]]
#include <algorithm>
#include <cstdio>

#include "cli/commands.h"
#include "observe/report.h"

namespace tl::cli {

void add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report",
      "Draw a run's curves (loss, lr, grad norm, throughput) to PNG and write an "
      "HTML page with them, the run's figures and its config, into RUN_DIR/report/");
  struct Opts {
    std::string run_dir;
    ReportOptions report;
    std::string plotter = "auto";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("run_dir", o->run_dir, "The run folder (train.run_dir)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--gnuplot", o->report.gnuplot, "gnuplot program (default: gnuplot in PATH)");
  cmd->add_option("--plotter", o->plotter,
                  "What draws the PNGs: auto (gnuplot when it runs, else the built-in plotter), "
                  "gnuplot (an error without it) or builtin")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "gnuplot", "builtin"}));
  cmd->add_option("--reference", o->report.reference,
                  "A reference run's losses to draw over this run's and compare with: CSV "
                  "(columns step and/or tokens, loss and/or val_loss) or jsonl (another run's "
                  "metrics.jsonl, bench/pytorch_trainer.py's output)");
  auto* label = cmd->add_option("--reference-label", o->report.reference_label,
                                "The reference's name in legends and tables (default: the "
                                "file's name without its extension)");
  label->needs("--reference");
  cmd->callback([o] {
    o->report.plotter = o->plotter == "gnuplot"   ? Plotter::Gnuplot
                        : o->plotter == "builtin" ? Plotter::Builtin
                                                  : Plotter::Auto;
    ReportSummary r = write_report(o->run_dir, o->report);
    int width = 32;  // the names' column: 32 wide, or the longest name (a long task's)
    for (auto it = r.figures.begin(); it != r.figures.end(); ++it)
      width = std::max(width, int(it.key().size()));
    for (auto it = r.figures.begin(); it != r.figures.end(); ++it) {
      const auto& v = it.value();
      if (v.is_number_float())
        std::printf("%-*s %.6g\n", width, it.key().c_str(), v.get<double>());
      else
        std::printf("%-*s %s\n", width, it.key().c_str(),
                    v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
    }
    for (const ReportTable& t : r.tables) std::printf("\n%s", format_table(t).c_str());
    if (!r.tables.empty()) std::printf("\n");
    std::printf("report: %s/report/index.html\n", o->run_dir.c_str());
  });
}

}  // namespace tl::cli
