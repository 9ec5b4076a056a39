// Attention benchmark: causal grouped-query attention forward and backward at the TinyLlama
// training shape (B=8 T=2048 H=32 K=4 D=64 by default), for every implementation that runs the
// shape; ends with which is fastest and what Auto (the default) picks.
//   tinyllama_attention_bench [B=8] [T=2048] [H=32] [K=4] [D=64] [reps=20]
// FLOP convention (as the FlashAttention-2 paper and PyTorch's attention benchmarks count a
// causal problem): forward = 4*B*H*T^2*D / 2 (two matmuls over the unmasked half of the
// scores), backward = 2.5 x forward (five matmuls), fwd+bwd = 3.5 x forward.
// Times: CUDA events around each call after 3 warm-up rounds, median of `reps` calls.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "backend/cuda/attention.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"

using namespace tl;
using namespace tl::gpu;

namespace {

#define CK(expr)                                                      \
  do {                                                                \
    cudaError_t e_ = (expr);                                          \
    if (e_ != cudaSuccess) fail(#expr, ": ", cudaGetErrorString(e_)); \
  } while (0)

struct Variant {
  const char* name;
  AttentionOptions opt;
  const char* kv_warps;  // TL_FA2_BWD_KV_WARPS for the fa2 atomic backward
};

struct Timing {
  std::string name;
  AttentionImpl impl;
  double fwd_ms, bwd_ms;
};

AttentionOptions only(AttentionImpl impl, bool deterministic = true) {
  AttentionOptions o;
  o.impl = impl, o.strict = true, o.deterministic = deterministic;
  return o;
}

template <class F>
double median_ms(cudaStream_t stream, int reps, F&& call) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a, stream));
    call();
    CK(cudaEventRecord(b, stream));
    CK(cudaEventSynchronize(b));
    float t = 0;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, int> arg = {{"B", 8}, {"T", 2048}, {"H", 32},
                                    {"K", 4}, {"D", 64},   {"reps", 20}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    if (eq == std::string::npos || !arg.count(a.substr(0, eq))) {
      std::fprintf(stderr, "usage: %s [B=8] [T=2048] [H=32] [K=4] [D=64] [reps=20]\n", argv[0]);
      return 2;
    }
    arg[a.substr(0, eq)] = std::atoi(a.c_str() + eq + 1);
  }
  const int B = arg["B"], T = arg["T"], H = arg["H"], K = arg["K"], D = arg["D"],
            reps = std::max(arg["reps"], 1);
  try {
    CudaContext ctx;
    CK(cudaSetDevice(0));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    ctx.sm_count = prop.multiProcessorCount, ctx.cc_major = prop.major, ctx.cc_minor = prop.minor;
    CK(cudaStreamCreate(&ctx.stream));

    const int64_t W = int64_t(H + 2 * K) * D;
    const int64_t n_qkv = int64_t(B) * T * W, n_out = int64_t(B) * T * H * D,
                  n_lse = int64_t(B) * H * T;
    std::vector<uint16_t> h_qkv(static_cast<size_t>(n_qkv)), h_dout(static_cast<size_t>(n_out));
    Rng rng(1234);
    for (auto& x : h_qkv) x = f32_to_bf16(float(rng.normal()));
    for (auto& x : h_dout) x = f32_to_bf16(float(rng.normal()));
    void *qkv, *out, *lse, *dout, *dqkv;
    CK(cudaMalloc(&qkv, size_t(n_qkv) * 2));
    CK(cudaMalloc(&dqkv, size_t(n_qkv) * 2));
    CK(cudaMalloc(&out, size_t(n_out) * 2));
    CK(cudaMalloc(&dout, size_t(n_out) * 2));
    CK(cudaMalloc(&lse, size_t(n_lse) * 4));
    CK(cudaMemcpy(qkv, h_qkv.data(), size_t(n_qkv) * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dout, h_dout.data(), size_t(n_out) * 2, cudaMemcpyHostToDevice));
    const Tensor t_qkv(qkv, DType::BF16, Device::CUDA, {B, T, W});
    const Tensor t_dqkv(dqkv, DType::BF16, Device::CUDA, {B, T, W});
    const Tensor t_out(out, DType::BF16, Device::CUDA, {B, T, int64_t(H) * D});
    const Tensor t_dout(dout, DType::BF16, Device::CUDA, {B, T, int64_t(H) * D});
    const Tensor t_lse(lse, DType::F32, Device::CUDA, {B, H, T});

    const double fwd_flop = 4.0 * B * H * double(T) * T * D / 2, bwd_flop = 2.5 * fwd_flop;
    std::printf("attention bench: %s, %d SMs, cc %d.%d\n", prop.name, prop.multiProcessorCount,
                prop.major, prop.minor);
    std::printf(
        "shape B=%d T=%d H=%d K=%d D=%d, causal; FLOP convention: fwd = 4*B*H*T^2*D/2 = %.1f "
        "GFLOP, "
        "bwd = 2.5 x fwd, fwd+bwd = 3.5 x fwd\n",
        B, T, H, K, D, fwd_flop * 1e-9);
    std::printf(
        "timing: CUDA events, median of %d calls after 3 warm-up rounds; targets (H100): fa2 >= "
        "250 "
        "fwd / 190 fwd+bwd TFLOP/s, cudnn >= 300 / 250\n\n",
        reps);

    const AttentionOptions fa2 = only(AttentionImpl::Fa2), atomic = only(AttentionImpl::Fa2, false);
    const std::vector<Variant> variants = {
        {"fa2 (deterministic bwd)", fa2, "4"},
        {"fa2 (atomic dQ, 64-key blocks)", atomic, "4"},
        {"fa2 (atomic dQ, 128-key blocks)", atomic, "8"},
        {"cudnn", only(AttentionImpl::Cudnn), "4"},
        {"generic (f32 CUDA cores)", only(AttentionImpl::Generic), "4"},
    };
    std::vector<Timing> timings;
    std::printf("%-34s %9s %9s %9s %9s %12s\n", "implementation", "fwd ms", "fwd TF/s", "bwd ms",
                "bwd TF/s", "fwd+bwd TF/s");
    std::vector<uint16_t> first_dq;
    for (const Variant& v : variants) {
      setenv("TL_FA2_BWD_KV_WARPS", v.kv_warps, 1);
      try {
        attention_impl_for(v.opt, T, H, K, D);  // throws with the reason if it cannot run this
      } catch (const Error& e) {
        std::printf("%-34s n/a: %s\n", v.name, e.what());
        continue;
      }
      try {
        auto fwd = [&] { attention_forward_cuda(ctx, v.opt, t_out, t_lse, t_qkv, H, K); };
        auto bwd = [&] {
          attention_backward_cuda(ctx, v.opt, t_dqkv, t_dout, t_qkv, t_out, t_lse, H, K);
        };
        for (int i = 0; i < 3; ++i) fwd(), bwd();
        CK(cudaStreamSynchronize(ctx.stream));
        const double tf = median_ms(ctx.stream, reps, fwd);
        fwd();  // the backward reads this implementation's own forward
        const double tb = median_ms(ctx.stream, reps, bwd);
        std::printf("%-34s %9.3f %9.1f %9.3f %9.1f %12.1f", v.name, tf, fwd_flop / tf * 1e-9, tb,
                    bwd_flop / tb * 1e-9, (fwd_flop + bwd_flop) / (tf + tb) * 1e-9);
        timings.push_back({v.name, v.opt.impl, tf, tb});
        // Agreement with the first variant's gradient (relative L2 over dqkv).
        std::vector<uint16_t> dq(static_cast<size_t>(n_qkv));
        CK(cudaMemcpy(dq.data(), dqkv, size_t(n_qkv) * 2, cudaMemcpyDeviceToHost));
        if (first_dq.empty()) {
          first_dq = dq;
          std::printf("\n");
        } else {
          double num = 0, den = 0;
          for (size_t i = 0; i < dq.size(); ++i) {
            const double a = bf16_to_f32(dq[i]), b = bf16_to_f32(first_dq[i]);
            num += (a - b) * (a - b), den += b * b;
          }
          std::printf("   (dqkv vs first: rel L2 %.1e)\n", std::sqrt(num / std::max(den, 1e-300)));
        }
      } catch (const Error& e) {
        std::printf("%-34s failed: %s\n", v.name, e.what());
        CK(cudaStreamSynchronize(ctx.stream));
      }
    }
    unsetenv("TL_FA2_BWD_KV_WARPS");

    // Verdict: the fastest variant, fa2 (deterministic) against cuDNN, and Auto's pick.
    const AttentionImpl picked = attention_impl_for(AttentionOptions{}, T, H, K, D);
    std::printf("\nauto (the default) runs this shape with: %s\n", attention_impl_name(picked));
    if (!timings.empty()) {
      const Timing* best = &timings[0];
      for (const Timing& t : timings)
        if (t.fwd_ms + t.bwd_ms < best->fwd_ms + best->bwd_ms) best = &t;
      std::printf("fastest fwd+bwd: %s (%.3f ms)\n", best->name.c_str(),
                  best->fwd_ms + best->bwd_ms);
      const Timing *f = nullptr, *c = nullptr;
      for (const Timing& t : timings) {
        if (t.impl == AttentionImpl::Fa2 && !f) f = &t;  // the first fa2 row: deterministic
        if (t.impl == AttentionImpl::Cudnn) c = &t;
      }
      if (f && c) {
        const double ff = f->fwd_ms + f->bwd_ms, cc = c->fwd_ms + c->bwd_ms;
        std::printf(
            "fa2 (deterministic) vs cudnn, fwd+bwd: %.3f vs %.3f ms: %s is faster by %.1f%% "
            "(fwd %s, bwd %s)\n",
            ff, cc, cc < ff ? "cudnn" : "fa2", 100.0 * (std::max(ff, cc) / std::min(ff, cc) - 1),
            c->fwd_ms < f->fwd_ms ? "cudnn" : "fa2", c->bwd_ms < f->bwd_ms ? "cudnn" : "fa2");
        if (cc < ff && picked != AttentionImpl::Cudnn)
          std::printf(
              "to make cuDNN the default: put AttentionImpl::Cudnn first in kAutoOrder "
              "(src/backend/cuda/attention.cpp)\n");
      }
    }
    attention_release(ctx);
    CK(cudaStreamSynchronize(ctx.stream));
    for (void* p : {qkv, out, lse, dout, dqkv}) CK(cudaFree(p));
    CK(cudaStreamDestroy(ctx.stream));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
