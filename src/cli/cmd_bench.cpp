// tinyllama bench --preset tinyllama-1.1b --micro-batch 8
#include <cstdio>

#include "bench/sharded_bench.h"
#include "bench/train_bench.h"
#include "cli/commands.h"
#include "model/fp8_linear.h"
#include "model/memory_estimate.h"

namespace tl::cli {

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "Training throughput on synthetic tokens: tokens/s, MFU, peak memory, phases");
  struct Opts {
    BenchOptions b;
    std::string preset = "tinyllama-1.1b";
    std::string json_out;
    std::string precision = "bf16";
    std::string fp8_scaling = "current";
    ShardedBenchOptions sharded;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--preset", o->preset, "Model preset");
  cmd->add_option("--micro-batch", o->b.micro_batch, "Sequences per micro-batch")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seq-len", o->b.seq_len, "Sequence length (default: the model's context)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--grad-accum", o->b.grad_accum, "Micro-batches per optimizer step")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", o->b.steps, "Timed optimizer steps")->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o->b.warmup_steps, "Untimed steps first")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--recompute", o->b.recompute, "Recompute norms and SwiGLU in the backward");
  cmd->add_option("--precision", o->precision,
                  "bf16 (the device's compute dtype) or fp8 (the layers' linears in FP8)")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  cmd->add_option("--fp8-scaling", o->fp8_scaling,
                  "--precision fp8: current (each tensor's own amax) or delayed (the max of "
                  "the last --fp8-amax-history passes', recorded in the cast)")
      ->check(CLI::IsMember({"current", "delayed"}));
  cmd->add_option("--fp8-amax-history", o->b.fp8_options.amax_history,
                  "Delayed scaling: passes in the amax history")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--device", o->b.device, "cpu, cuda or auto");
  cmd->add_option("--threads", o->b.threads, "CPU threads (0 = all cores)");
  cmd->add_option("--json", o->json_out, "Also write the result as JSON to this file");
  cmd->add_option("--strategy", o->sharded.dist.strategy,
                  "Sharded bench (multi-GPU under torchrun/mpirun/srun): full_shard, "
                  "shard_grad_op, no_shard or hybrid_shard");
  cmd->add_option("--hybrid-group", o->sharded.dist.hybrid_group_size,
                  "hybrid_shard: ranks per group (0 = per node)");
  cmd->add_option("--reduce-dtype", o->sharded.dist.reduce_dtype,
                  "Sharded bench: gradients reduce-scattered in f32 (default) or bf16")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--all-gather", o->sharded.dist.all_gather,
                  "Sharded bench: weights all-gathered by NCCL kernels (default) or the copy "
                  "engines (copy_engines; NCCL >= 2.28)")
      ->check(CLI::IsMember({"kernels", "copy_engines"}));
  cmd->callback([o] {
    o->b.model = ModelConfig::from_preset(o->preset);
    o->b.fp8 = o->precision == "fp8";
    o->b.fp8_options.scaling = fp8_scaling_from_name(o->fp8_scaling);
    if (o->b.fp8)
      check_fp8_shapes(o->b.model,
                       int64_t(o->b.micro_batch) * o->b.model.seq_len_or_context(o->b.seq_len));
    o->sharded.bench = o->b;
    if (run_sharded_bench_cli(o->sharded, o->json_out)) return;
    BenchResult r = run_bench(o->b);
    const int T = o->b.model.seq_len_or_context(o->b.seq_len);
    std::printf("device       %s\n", r.device.c_str());
    std::printf("model        %s, micro-batch %d x %d, grad accum %d%s%s\n", o->preset.c_str(),
                o->b.micro_batch, T, o->b.grad_accum, o->b.recompute ? ", recompute" : "",
                o->b.fp8 ? (std::string(", fp8 linears, ") +
                            fp8_scaling_name(o->b.fp8_options.scaling) + " scaling")
                               .c_str()
                         : "");
    std::printf("tokens/s     %.0f\n", r.tokens_per_s);
    std::printf("step         %.1f ms\n", r.step_seconds * 1e3);
    if (r.peak_flops > 0)
      std::printf("MFU          %.1f%% of %.0f TFLOP/s\n", 100 * r.mfu, r.peak_flops / 1e12);
    if (r.peak_memory > 0)
      std::printf("peak memory  %s\n", format_bytes(double(r.peak_memory)).c_str());
    print_phases(r.phase_seconds);
    std::printf("loss         %.4f -> %.4f over %zu steps (grad norm %.3f -> %.3f), %d skipped\n",
                r.losses.front(), r.losses.back(), r.losses.size(), r.grad_norms.front(),
                r.grad_norms.back(), r.skipped_steps);
    if (!o->json_out.empty()) {
      FILE* f = std::fopen(o->json_out.c_str(), "w");
      TL_CHECK(f, "cannot write '", o->json_out, "'");
      std::fprintf(f, "%s\n", r.to_json().dump().c_str());
      std::fclose(f);
    }
  });
}

}  // namespace tl::cli
