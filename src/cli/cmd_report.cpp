// tinyllama report RUN_DIR [--plotter auto|gnuplot|builtin] [--gnuplot PROGRAM]
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
  cmd->callback([o] {
    o->report.plotter = o->plotter == "gnuplot"   ? Plotter::Gnuplot
                        : o->plotter == "builtin" ? Plotter::Builtin
                                                  : Plotter::Auto;
    ReportSummary r = write_report(o->run_dir, o->report);
    for (auto it = r.figures.begin(); it != r.figures.end(); ++it) {
      const auto& v = it.value();
      if (v.is_number_float())
        std::printf("%-32s %.6g\n", it.key().c_str(), v.get<double>());
      else
        std::printf("%-32s %s\n", it.key().c_str(),
                    v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
    }
    std::printf("report: %s/report/index.html\n", o->run_dir.c_str());
  });
}

}  // namespace tl::cli
