// tinyllama comm-check [--hybrid-group N] [--elements N] [--iters N]
// Run under a launcher (torchrun-style variables, mpirun, srun): one process per GPU.
#include <cstdio>

#include "cli/commands.h"
#include "parallel/bootstrap.h"
#include "parallel/comm_check.h"

namespace tl::cli {

void add_comm_check_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "comm-check", "Check every collective FSDP uses on this job's GPUs, and their bandwidth");
  struct Opts {
    int hybrid_group = 0;
    int64_t elements = 44'040'192;  // one TinyLlama-1.1B layer
    int iters = 10;
    double timeout = 120;
    std::string device = "auto";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--hybrid-group", o->hybrid_group,
                  "Also check groups of this many ranks (0 = ranks per node)");
  cmd->add_option("--elements", o->elements,
                  "Elements per collective in the bandwidth runs (0 = skip)");
  cmd->add_option("--iters", o->iters, "Timed iterations per collective");
  cmd->add_option("--timeout", o->timeout, "Seconds before a missing rank is an error");
  cmd->add_option("--device", o->device, "cpu, cuda or auto");
  cmd->callback([o] {
    LaunchInfo li = detect_launch();
    auto be = make_backend(device_for_rank(o->device, li));
    auto session = start_session(li, *be, o->timeout);
    const int group = o->hybrid_group > 0 ? o->hybrid_group : session->ranks_per_node;
    CommCheckResult r = run_comm_check(*be, *session->world, group, o->elements, o->iters);
    if (session->health) session->health->finish();
    if (li.rank != 0) return;
    std::printf("comm-check: %s\n", session->describe().c_str());
    for (const auto& p : r.passed) std::printf("  ok  %s\n", p.c_str());
    if (r.bench_elements > 0)
      std::printf(
          "  bus bandwidth at %lld elements: all_gather bf16 %.1f GB/s, reduce_scatter f32 %.1f "
          "GB/s\n",
          static_cast<long long>(r.bench_elements), r.all_gather_busbw, r.reduce_scatter_busbw);
    std::printf("comm-check passed on %d rank(s)\n", li.world);
  });
}

}  // namespace tl::cli
