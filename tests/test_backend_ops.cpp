// The backend-ops table: every case of the registry (backend_ops.h) on every backend this
// machine has, against the CPU backend (the fp32 reference twin). One line per case is
// printed, as ggml's test-backend-ops does; a failing case names the op, the shape and the
// output.
//   cpu                    the CPU backend on 2 threads against the reference on 1: the
//                          table checks itself here (poisoned outputs, every op and shape)
//   cuda                   every case, big ones included (the default attention choice)
//   cuda attention=IMPL    attention_forward/backward through the Backend interface with
//                          TL_ATTENTION=IMPL (fa2, cudnn, generic), on the shapes IMPL runs
// Perf mode (BackendOpsPerf.Table, GPU only unless TL_BACKEND_OPS_PERF=cpu): every op at
// the TinyLlama-1.1B micro-batch; the table bench/NOTES.md quotes.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "backend_ops.h"
#include "core/timer.h"
#ifdef TL_WITH_CUDA
#include "backend/cuda/attention.h"
#endif

using namespace tl;
using backend_ops::OpCase;
using backend_ops::OpRun;
using backend_ops::Output;

namespace {

double tolerance(const Output& o) {
  if (o.tol >= 0) return o.tol;
  return o.dtype == DType::BF16 ? 1e-2 : 1e-3;
}

bool attention_case(const OpCase& c) { return c.attn_D > 0; }

// Whether the attention implementation `impl` runs this case's shape itself (not Auto's
// choice in its place).
bool runs_shape(const std::string& impl, const OpCase& c) {
#ifdef TL_WITH_CUDA
  using gpu::AttentionImpl;
  gpu::AttentionOptions o;
  o.impl = impl == "fa2"     ? AttentionImpl::Fa2
           : impl == "cudnn" ? AttentionImpl::Cudnn
                             : AttentionImpl::Generic;
  return gpu::attention_impl_for(o, c.attn_T, c.attn_H, c.attn_K, c.attn_D) == o.impl;
#else
  (void)impl, (void)c;
  return false;
#endif
}

// Runs the cases `pick` selects on `be` and on the reference, comparing every output.
void run_table(const std::string& name, Backend& be, bool accelerator,
               const std::function<bool(const OpCase&)>& pick) {
  // The CPU twin's results do not depend on its thread count (BackendOps.Cpu: 2 threads
  // against 1, bit for bit), so the accelerator tables use every core for the reference: the
  // 1.1B attention case alone is minutes on one thread.
  auto ref = make_backend("cpu", accelerator ? 0 : 1);  // 0: every core
  int ran = 0, skipped = 0;
  std::printf("backend-ops: %s (%s) against %s\n", name.c_str(), be.describe().c_str(),
              ref->describe().c_str());
  for (const OpCase& c : backend_ops::op_cases()) {
    if (!pick(c)) continue;
    if (c.big && !accelerator) {
      ++skipped;
      continue;
    }
    SCOPED_TRACE(c.op + " " + c.shape);
    const uint64_t seed = hash_mix(0x7e57, ran);
    OpRun want_run(*ref, seed), got_run(be, seed);
    std::vector<Output> want, got;
    try {
      c.run(want_run);
      want = want_run.results();
      c.run(got_run);
      got = got_run.results();
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.op << " " << c.shape << " threw: " << e.what();
      continue;
    }
    ++ran;
    ASSERT_EQ(got.size(), want.size());
    bool ok = true;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const auto r = backend_test::close(c.op + " " + got[i].name, got[i].values, want[i].values,
                                         tolerance(got[i]));
      EXPECT_TRUE(r) << c.shape;
      ok = ok && bool(r);
      double max_ref = 0, max_err = 0;
      for (size_t j = 0; j < got[i].values.size(); ++j) {
        max_ref = std::max(max_ref, double(std::fabs(want[i].values[j])));
        max_err = std::max(max_err, double(std::fabs(got[i].values[j] - want[i].values[j])));
      }
      if (max_ref > 0) worst = std::max(worst, max_err / max_ref);
    }
    if (c.check) c.check(got);
    std::printf("  %-38s %-34s %s (max rel err %.1e)\n", c.op.c_str(), c.shape.c_str(),
                ok ? "OK  " : "FAIL", worst);
  }
  std::printf("backend-ops: %s: %d cases ran, %d big ones left to accelerators\n", name.c_str(),
              ran, skipped);
  EXPECT_GT(ran, 0) << "no case ran";
}

}  // namespace

TEST(BackendOps, Cpu) {
  auto be = make_backend("cpu", 2);
  run_table("cpu", *be, false, [](const OpCase&) { return true; });
}

TEST(BackendOps, Cuda) {
  if (!cuda_available())
    GTEST_SKIP() << "CUDA backend not available (built without CUDA, or no GPU)";
  backend_test::ScopedEnv env("TL_ATTENTION", "");
  auto be = make_backend("cuda");
  // TL_BACKEND_OPS_ONLY=fp8 runs the cases whose op name contains "fp8" (a device call that
  // checks one kernel family need not spend two minutes on the whole table); a comma-separated
  // list ("decode,prefetch") runs the cases that match any of them.
  const char* only = std::getenv("TL_BACKEND_OPS_ONLY");
  std::vector<std::string> wants;
  std::stringstream list(only ? only : "");
  for (std::string w; std::getline(list, w, ',');) wants.push_back(w);
  if (wants.empty()) wants.push_back("");
  run_table("cuda", *be, true, [&](const OpCase& c) {
    for (const std::string& w : wants)
      if (c.op.find(w) != std::string::npos) return true;
    return false;
  });
}

class BackendOpsAttention : public ::testing::TestWithParam<const char*> {};

TEST_P(BackendOpsAttention, EachImplementation) {
  if (!cuda_available())
    GTEST_SKIP() << "CUDA backend not available (built without CUDA, or no GPU)";
  const std::string impl = GetParam();
  backend_test::ScopedEnv env("TL_ATTENTION",
                              impl);  // read by the backend at its first attention call
  auto be = make_backend("cuda");
  run_table("cuda attention=" + impl, *be, true,
            [&](const OpCase& c) { return attention_case(c) && runs_shape(impl, c); });
}

INSTANTIATE_TEST_SUITE_P(Impl, BackendOpsAttention, ::testing::Values("fa2", "cudnn", "generic"));

// Device time per op (profiling events where the backend has them, else wall time), the
// effective bandwidth or TFLOP/s, and the prediction of bench/NOTES.md (3 TB/s, 750 TFLOP/s).
TEST(BackendOpsPerf, Table) {
  const char* env = std::getenv("TL_BACKEND_OPS_PERF");
  const std::string device = env && *env ? env : "cuda";
  if (device == "cuda" && !cuda_available())
    GTEST_SKIP() << "perf mode runs on the GPU (TL_BACKEND_OPS_PERF=cpu for the CPU backend)";
  auto be = make_backend(device);
  Backend& g = *be;
  std::vector<backend_test::Arr> keep;
  std::vector<backend_ops::PerfOp> ops = backend_ops::perf_ops(g, keep);
  const int reps = 10;
  double total_us = 0;
  std::printf("\n%-42s %10s %9s %9s %11s %6s %12s\n", "op (1.1B, micro-batch 8x2048)", "time us",
              "GB/s", "TFLOP/s", "pred us", "calls", "us/microbatch");
  for (const backend_ops::PerfOp& op : ops) {
    op.run();  // warm-up: plans, scratch
    g.synchronize();
    g.take_profile();
    g.set_profiling(true);
    Timer wall;
    for (int i = 0; i < reps; ++i) op.run();
    g.synchronize();
    const double wall_s = wall.seconds();
    double sec = 0;
    for (auto& [k, v] : g.take_profile()) sec += v;
    g.set_profiling(false);
    if (sec == 0) sec = wall_s;  // no device profile (the CPU backend)
    const double us = sec / reps * 1e6 * op.scale;
    const double pred = op.bytes > 0 ? op.bytes / 3e12 * 1e6 : op.flops / 750e12 * 1e6;
    std::printf("%-42s %10.1f %9.0f %9.1f %11.1f %6d %12.0f\n", op.name.c_str(), us,
                op.bytes > 0 ? op.bytes / (us * 1e-6) / 1e9 : 0.0,
                op.flops > 0 ? op.flops / (us * 1e-6) / 1e12 : 0.0, pred, op.calls, us * op.calls);
    total_us += us * op.calls;
    EXPECT_TRUE(std::isfinite(us) && us > 0) << op.name;
  }
  std::printf(
      "non-attention device time per micro-batch: %.1f ms (%.0f tokens/s before attention"
      " and the optimizer)\n\n",
      total_us / 1e3, double(8 * 2048) / (total_us * 1e-6));
}
