// FP8 against bf16 on the 12 linear-layer GEMMs of a TinyLlama-1.1B training step (issue #16's
// first measurement): qkv, wo, gate_up, down x forward, dgrad (input gradient), wgrad (weight
// gradient), for a micro-batch of `rows` tokens.
//
// bf16 runs each product in the layout our backend uses (forward TN, dgrad NN, wgrad NT in
// cuBLAS's column-major terms). cuBLASLt's FP8 kernels on Hopper take only TN (both operands
// contiguous along k), so FP8 also pays what that needs beyond the GEMM:
//   forward  casts of X (fusable into the RMSNorm/SwiGLU/attention kernel that writes X) and W
//   dgrad    a cast of dY (fusable into the kernel that writes it) and W^T (a cast-transpose)
//   wgrad    X^T and dY^T: activation-sized cast-transposes (fusable only into a producer that
//            writes two layouts)
// Every cast and amax is timed with the backend's own kernels (backend/cuda/fp8.cu), and the
// table shows the GEMM alone and the GEMM plus the passes that cannot be fused away. Per-tensor
// scales are passed (1.0): their value does not change the speed. Best of the heuristic's top
// algorithms.
//
//   build/tinyllama_fp8_gemm_bench [--rows 16384] [--iters 20] [--algos 8]
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"

namespace {

using tl::gpu::cublas_status_name;

__global__ void fill_kernel(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u ^ seed;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    p[i] = __float2bfloat16((float(x & 0xffff) / 65536.0f - 0.5f) * 0.5f);
  }
}

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    TL_CUDA_CHECK(cudaEventCreate(&a));
    TL_CUDA_CHECK(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  template <class Fn>
  float ms(Fn fn, int iters) {  // mean of iters calls after 3 warm-ups
    for (int i = 0; i < 3; ++i) fn();
    TL_CUDA_CHECK(cudaEventRecord(a));
    for (int i = 0; i < iters; ++i) fn();
    TL_CUDA_CHECK(cudaEventRecord(b));
    TL_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    TL_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    return t / float(iters);
  }
};

struct Lt {
  cublasLtHandle_t h;
  void* ws;
  size_t ws_bytes = 64ull << 20;
  float* scales;  // device: A's scale at [0], B's at [64] (each 256-byte aligned), both 1
  Lt() {
    TL_CUBLAS_CHECK(cublasLtCreate(&h));
    TL_CUDA_CHECK(cudaMalloc(&ws, ws_bytes));
    TL_CUDA_CHECK(cudaMalloc(&scales, 128 * sizeof(float)));
    std::vector<float> one(128, 1.0f);
    TL_CUDA_CHECK(
        cudaMemcpy(scales, one.data(), one.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  ~Lt() {
    cublasLtDestroy(h);
    cudaFree(ws);
    cudaFree(scales);
  }
};

// Best time of the heuristic's top `algos` algorithms for D[m,n] (bf16) = op(A) op(B), k deep.
// Returns < 0 when cuBLASLt has no algorithm for the combination.
float time_gemm(Lt& lt, Timer& timer, int iters, int algos, cudaDataType_t ta_type,
                cudaDataType_t tb_type, bool ta, bool tb, int m, int n, int k, const void* A,
                const void* B, void* D, int fast_accum, std::string* algo_note,
                bool scale_pointers = true) {
  cublasLtMatmulDesc_t desc;
  TL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  TL_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa));
  TL_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob));
  const bool fp8 = ta_type != CUDA_R_16BF;
  if (fp8 && scale_pointers) {
    const float* sa = lt.scales;
    const float* sb = lt.scales + 64;
    TL_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa, sizeof sa));
    TL_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb, sizeof sb));
  }
  if (fp8) {
    const int8_t fa = int8_t(fast_accum);
    TL_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fa, sizeof fa));
  }
  cublasLtMatrixLayout_t la, lb, ld;
  TL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, ta_type, ta ? k : m, ta ? m : k, ta ? k : m));
  TL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, tb_type, tb ? n : k, tb ? k : n, tb ? n : k));
  TL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, m, n, m));
  cublasLtMatmulPreference_t pref;
  TL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  TL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt.ws_bytes, sizeof lt.ws_bytes));
  std::vector<cublasLtMatmulHeuristicResult_t> res(size_t(std::max(1, algos)));
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt.h, desc, la, lb, ld, ld, pref,
                                                     int(res.size()), res.data(), &found);
  float best = -1;
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t last = CUBLAS_STATUS_SUCCESS;  // why the last refused algorithm failed
  for (int i = 0; st == CUBLAS_STATUS_SUCCESS && i < found; ++i) {
    const cublasLtMatmulAlgo_t* algo = &res[size_t(i)].algo;
    last = cublasLtMatmul(lt.h, desc, &alpha, A, la, B, lb, &beta, D, ld, D, ld, algo, lt.ws,
                          lt.ws_bytes, 0);
    if (last != CUBLAS_STATUS_SUCCESS) continue;
    const float t = timer.ms(
        [&] {
          TL_CUBLAS_CHECK(cublasLtMatmul(lt.h, desc, &alpha, A, la, B, lb, &beta, D, ld, D, ld,
                                         algo, lt.ws, lt.ws_bytes, 0));
        },
        iters);
    if (best < 0 || t < best) {
      best = t;
      if (algo_note) *algo_note = "algo #" + std::to_string(i);
    }
  }
  if (algo_note && best < 0)  // say why there is no time: no algorithm, or every one refused
    *algo_note = st != CUBLAS_STATUS_SUCCESS ? std::string("heuristic: ") + cublas_status_name(st)
                                             : "heuristic found " + std::to_string(found) +
                                                   ", matmul: " + cublas_status_name(last);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(ld);
  cublasLtMatmulDescDestroy(desc);
  return best;
}

// The casts and amaxes are the backend's own kernels (backend/cuda/fp8.cu), the passes
// train.precision fp8 runs today; `scalars` holds amax (1.0: the value does not change the
// speed) and scale_inv on the device.
float time_cast(Timer& timer, int iters, void* out, const __nv_bfloat16* in, int R, int C,
                bool transpose, float* scalars, void* out_t = nullptr) {
  using namespace tl;
  const Tensor src(const_cast<__nv_bfloat16*>(in), DType::BF16, Device::CUDA, Shape{R, C});
  const Tensor dst(out, DType::U8, Device::CUDA, transpose ? Shape{C, R} : Shape{R, C});
  // out_t: both layouts from one read (dst [R, C] and dst_t [C, R]), as the backward casts dY.
  const Tensor dst_t = out_t ? Tensor(out_t, DType::U8, Device::CUDA, Shape{C, R}) : Tensor();
  const Tensor amax(scalars, DType::F32, Device::CUDA, Shape{1});
  const Tensor scale_inv(scalars + 64, DType::F32, Device::CUDA, Shape{1});
  return timer.ms(
      [&] {
        gpu::fp8_quantize(transpose ? Tensor() : dst, transpose ? dst : dst_t, scale_inv, src,
                          amax, Fp8Format::E4M3, Tensor(), 0);
      },
      iters);
}

float time_amax(Timer& timer, int iters, const __nv_bfloat16* in, int64_t n, float* scalars) {
  using namespace tl;
  const Tensor src(const_cast<__nv_bfloat16*>(in), DType::BF16, Device::CUDA, Shape{n});
  const Tensor out(scalars + 128, DType::F32, Device::CUDA, Shape{1});
  return timer.ms([&] { gpu::amax(out, src, 0); }, iters);
}

struct Linear {
  const char* name;
  int O, I;  // weight [O, I]
};

}  // namespace

int main(int argc, char** argv) {
  int rows = 16384, iters = 20, algos = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rows"))
      rows = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters"))
      iters = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--algos"))
      algos = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s (--rows N --iters N --algos N)\n", argv[i]);
      return 2;
    }
  }
  if (rows <= 0 || rows % 16 || iters <= 0 || algos <= 0) {
    std::fprintf(stderr, "--rows must be a positive multiple of 16; --iters, --algos positive\n");
    return 2;
  }
  try {
    cudaDeviceProp prop{};
    TL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device %s, cuBLASLt %zu, rows %d, iters %d, best of %d algorithms\n", prop.name,
                cublasLtGetVersion(), rows, iters, algos);
    const Linear layers[] = {
        {"qkv", 2560, 2048}, {"wo", 2048, 2048}, {"gate_up", 11264, 2048}, {"down", 2048, 5632}};
    size_t max_act = 0, max_w = 0;
    for (const Linear& l : layers) {
      max_act = std::max(max_act, size_t(rows) * size_t(std::max(l.O, l.I)));
      max_w = std::max(max_w, size_t(l.O) * size_t(l.I));
    }
    __nv_bfloat16 *x, *dy, *w, *d;
    void *x8, *dy8, *w8;
    TL_CUDA_CHECK(cudaMalloc(&x, max_act * 2));
    TL_CUDA_CHECK(cudaMalloc(&dy, max_act * 2));
    TL_CUDA_CHECK(cudaMalloc(&d, std::max(max_act, max_w) * 2));
    TL_CUDA_CHECK(cudaMalloc(&w, max_w * 2));
    TL_CUDA_CHECK(cudaMalloc(&x8, max_act));
    TL_CUDA_CHECK(cudaMalloc(&dy8, max_act));
    TL_CUDA_CHECK(cudaMalloc(&w8, max_w));
    float* scalars = nullptr;  // amax (1.0) at 0, scale_inv at 64, amax out at 128 (floats)
    TL_CUDA_CHECK(cudaMalloc(&scalars, 256 * sizeof(float)));
    const float one = 1.0f;
    TL_CUDA_CHECK(cudaMemcpy(scalars, &one, sizeof(float), cudaMemcpyHostToDevice));
    fill_kernel<<<1024, 256>>>(x, max_act, 1);
    fill_kernel<<<1024, 256>>>(dy, max_act, 2);
    fill_kernel<<<1024, 256>>>(w, max_w, 3);
    TL_CUDA_LAUNCH_CHECK();
    Lt lt;
    Timer timer;
    std::printf("\n%-8s %-6s %6s %6s %6s | %8s %7s | %8s %7s %8s | %8s %8s | %7s %7s\n", "layer",
                "pass", "m", "n", "k", "bf16 ms", "TFLOP/s", "fp8 ms", "TFLOP/s", "fp8 !fa",
                "casts", "transp.", "x gemm", "x all");
    double tot_bf16 = 0, tot_fp8 = 0, tot_fp8_slow = 0, tot_cast = 0, tot_tr = 0, tot_amax = 0;
    double tot_dy_apart = 0, tot_dy_pair = 0;  // dY's two layouts: two casts, or one pass
    for (const Linear& l : layers) {
      const int R = rows, O = l.O, I = l.I;
      struct Pass {
        const char* name;
        int m, n, k;
        bool ta, tb;            // bf16 layout (our backend's)
        const void *A16, *B16;  // bf16 operands (W, X or dY as stored)
        cudaDataType_t a8, b8;  // FP8 operand types (TN)
        const void *A8, *B8;    // FP8 operands (cast, transposed where TN needs it)
        double cast_ms, tr_ms;  // filled below
      };
      // Column-major terms, as src/backend/cuda/matmul.cpp calls cuBLASLt: forward
      // D[O,R] = W^T-op x X; dgrad D[I,R] = W x dY; wgrad D[I,O] = X x dY^T-op.
      Pass passes[3] = {
          {"fwd", O, R, I, true, false, w, x, CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, w8, x8, 0, 0},
          {"dgrad", I, R, O, false, false, w, dy, CUDA_R_8F_E4M3, CUDA_R_8F_E5M2, w8, dy8, 0, 0},
          {"wgrad", I, O, R, false, true, x, dy, CUDA_R_8F_E4M3, CUDA_R_8F_E5M2, x8, dy8, 0, 0},
      };
      // The extra passes FP8 needs (bf16 source [rows, cols]); e4m3 and e5m2 cost the same.
      auto cast = [&](const __nv_bfloat16* src, void* dst, int r, int c, bool tr) {
        return double(time_cast(timer, iters, dst, src, r, c, tr, scalars));
      };
      auto amax = [&](const __nv_bfloat16* src, int64_t n) {
        return double(time_amax(timer, iters, src, n, scalars));
      };
      // Current scaling reads each tensor once more for its amax: X and W before the forward,
      // dY before dgrad (wgrad reuses them).
      tot_amax += amax(x, int64_t(R) * I) + amax(w, int64_t(O) * I) + amax(dy, int64_t(R) * O);
      passes[0].cast_ms = cast(x, x8, R, I, false) + cast(w, w8, O, I, false);
      passes[1].cast_ms = cast(dy, dy8, R, O, false);
      passes[1].tr_ms = cast(w, w8, O, I, true);
      const double dy_t = cast(dy, dy8, R, O, true);
      passes[2].tr_ms = cast(x, x8, R, I, true) + dy_t;
      tot_dy_apart += passes[1].cast_ms + dy_t;
      tot_dy_pair += double(time_cast(timer, iters, dy8, dy, R, O, false, scalars, d));
      for (Pass& p : passes) {
        const double flop = 2.0 * p.m * p.n * p.k;
        std::string note16, note8, note8s;
        const float t16 = time_gemm(lt, timer, iters, algos, CUDA_R_16BF, CUDA_R_16BF, p.ta, p.tb,
                                    p.m, p.n, p.k, p.A16, p.B16, d, 0, &note16);
        float t8 = time_gemm(lt, timer, iters, algos, p.a8, p.b8, true, false, p.m, p.n, p.k, p.A8,
                             p.B8, d, 1, &note8);
        float t8s = time_gemm(lt, timer, iters, algos, p.a8, p.b8, true, false, p.m, p.n, p.k, p.A8,
                              p.B8, d, 0, &note8s);
        if (t8 < 0) {  // diagnosis: do the scale pointers make the difference? (speed does not
                       // depend on the scale values)
          std::string n2;
          t8 = time_gemm(lt, timer, iters, algos, p.a8, p.b8, true, false, p.m, p.n, p.k, p.A8,
                         p.B8, d, 1, &n2, false);
          t8s = time_gemm(lt, timer, iters, algos, p.a8, p.b8, true, false, p.m, p.n, p.k, p.A8,
                          p.B8, d, 0, &n2, false);
          note8 += t8 < 0 ? "; without scale pointers too" : "; ran without scale pointers";
        }
        const double all = t8 + p.tr_ms;
        std::printf(
            "%-8s %-6s %6d %6d %6d | %8.3f %7.0f | %8.3f %7.0f %8.3f | %8.3f %8.3f | %6.2fx "
            "%6.2fx%s%s\n",
            l.name, p.name, p.m, p.n, p.k, t16, flop / t16 / 1e9, t8, flop / t8 / 1e9, t8s,
            p.cast_ms, p.tr_ms, t16 / t8, t16 / all, note8.rfind("algo", 0) ? "  (fp8: " : "",
            note8.rfind("algo", 0) ? (note8 + ")").c_str() : "");
        tot_bf16 += t16;
        tot_fp8 += t8;
        tot_fp8_slow += t8s;
        tot_cast += p.cast_ms;
        tot_tr += p.tr_ms;
      }
    }
    std::printf(
        "\nper layer of the step (12 GEMMs): bf16 %.3f ms; fp8 %.3f ms (fast accumulation), "
        "%.3f ms (without); casts %.3f ms (fusable into producers); transposes %.3f ms; amax "
        "passes %.3f ms\n",
        tot_bf16, tot_fp8, tot_fp8_slow, tot_cast, tot_tr, tot_amax);
    std::printf(
        "speed-up: GEMMs alone %.2fx; with the transposes %.2fx; with casts and transposes "
        "as separate passes %.2fx; with the amax passes too (train.precision fp8 today) %.2fx\n",
        tot_bf16 / tot_fp8, tot_bf16 / (tot_fp8 + tot_tr), tot_bf16 / (tot_fp8 + tot_tr + tot_cast),
        tot_bf16 / (tot_fp8 + tot_tr + tot_cast + tot_amax));
    std::printf("dY in both layouts (what the backward casts): %.3f ms a layer as two casts, "
                "%.3f ms in one pass (train.precision fp8 today)\n",
                tot_dy_apart, tot_dy_pair);
    cudaFree(x);
    cudaFree(dy);
    cudaFree(d);
    cudaFree(w);
    cudaFree(x8);
    cudaFree(dy8);
    cudaFree(w8);
    cudaFree(scalars);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fp8_gemm_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
