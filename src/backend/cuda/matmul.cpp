#include "backend/cuda/matmul.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"

namespace tl::gpu {
namespace {

// Largest power of two (<= 256) dividing the address: what the heuristic may assume.
int alignment(const void* p) {
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && (u % uintptr_t(a)) != 0) a /= 2;
  return a;
}

// Shapes of a linear layer: inp [rows..., I], w [O, I]; returns {rows, I, O}.
struct LinearDims {
  int64_t rows, I, O;
};
LinearDims check_linear(const char* op, const char* inp_name, const Tensor& inp, const Tensor& w,
                        DType w_dtype) {
  gpu::check_cuda(op, w_dtype == DType::F32 ? "dweight" : "weight", w, w_dtype);
  TL_CHECK(w.ndim() == 2, op, ": weight must be [O, I], got ", w.str());
  gpu::check_cuda(op, inp_name, inp, DType::BF16);
  gpu::check_rows(op, inp_name, inp);
  check_shape(op, inp_name, inp, gpu::with_last(inp.shape, w.dim(1)));
  const LinearDims d{gpu::rows_of(inp), w.dim(1), w.dim(0)};
  gpu::check_int_range(op, "rows", d.rows);
  gpu::check_int_range(op, "I", d.I);
  gpu::check_int_range(op, "O", d.O);
  return d;
}

// Candidates timed per shape when TL_GEMM_AUTOTUNE=1 (0/unset: the heuristic's first).
int autotune_candidates() {
  static const int n = [] {
    const char* v = std::getenv("TL_GEMM_AUTOTUNE");
    return v && v[0] == '1' ? 8 : 1;
  }();
  return n;
}

// Whether the gradients' FP8 products (dgrad, wgrad) take Hopper's fast accumulation too, as
// the forward's do. On by default: it gained 2.9% a step (98.2k -> 101.0k tokens/s, H100,
// 2026-12-07) and the 1,000-step FP8 curve with it stayed within the seed-to-seed spread of the
// one without (validation loss 3.484 against 3.498 at step 1000; bench/RESULTS.md), though
// Transformer Engine keeps them at full precision and wgrad sums 16384 tokens.
// TL_FP8_FAST_ACCUM=fprop keeps the gradients' products at full precision (the fp8_matmul
// test into f32 measures 2.3e-3 of the largest output with it on, 2.5e-4 off); any other value
// (`all`, the lever's name while it was off by default) leaves the default.
bool fast_accum_gradients() {
  static const bool on = [] {
    const char* v = std::getenv("TL_FP8_FAST_ACCUM");
    return !(v && std::string(v) == "fprop");
  }();
  return on;
}

}  // namespace

CublasGemm::CublasGemm(CudaContext& ctx) : ctx_(ctx) {}

CublasGemm::~CublasGemm() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.d);
    cublasLtMatmulDescDestroy(p.desc);
  }
}

CublasGemm::Plan& CublasGemm::plan(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const auto [m, n, k, lda, ldb, ldd, ta, tb, dt, has_beta, al_a, al_b, al_d, at, bt] = key;
  const cudaDataType_t d_type = cudaDataType_t(dt);
  const cudaDataType_t a_type = cudaDataType_t(at), b_type = cudaDataType_t(bt);
  Plan p;
  TL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  TL_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  TL_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  // Layouts describe the stored matrices (before op): A is [k,m] when transposed, else [m,k].
  TL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, a_type, ta ? k : m, ta ? m : k, lda));
  TL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, b_type, tb ? n : k, tb ? k : n, ldb));
  if (a_type != CUDA_R_16BF) {
    // FP8: the scale pointers are set per call (set_scales); they must be in the descriptor
    // before the heuristic is asked (placeholders that satisfy the alignment rules).
    static float* const kPlaceholder = reinterpret_cast<float*>(uintptr_t(256));
    TL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                   &kPlaceholder, sizeof(kPlaceholder)));
    TL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                   &kPlaceholder, sizeof(kPlaceholder)));
    // The forward's product (E4M3 x E4M3 into bf16) takes Hopper's fast accumulation, as
    // Transformer Engine's fprop does (1.69x -> 1.95x over bf16 in fp8_gemm_bench); the
    // gradients' products (E5M2 operands, or into f32) too unless TL_FP8_FAST_ACCUM=fprop
    // (fast_accum_gradients).
    if ((a_type == CUDA_R_8F_E4M3 && b_type == CUDA_R_8F_E4M3 && d_type == CUDA_R_16BF) ||
        fast_accum_gradients()) {
      const int8_t fast = 1;
      TL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast,
                                                     sizeof(fast)));
    }
  }
  TL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, d_type, m, n, ldd));

  cublasLtMatmulPreference_t pref;
  TL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = ctx_.cublas_workspace_bytes;
  const uint32_t align[4] = {uint32_t(al_a), uint32_t(al_b), uint32_t(al_d), uint32_t(al_d)};
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && st == CUBLAS_STATUS_SUCCESS; ++i)
    st = cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &align[i], sizeof(align[i]));
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(autotune_candidates()));
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(ctx_.cublaslt, p.desc, p.a, p.b, p.d, p.d, pref,
                                        int(results.size()), results.data(), &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.d);
    cublasLtMatmulDescDestroy(p.desc);
    fail("cuBLASLt found no algorithm (", cublas_status_name(st), ") for D[", m, ",", n, "] = op",
         ta ? "T" : "N", "(A) op", tb ? "T" : "N", "(B), k = ", k, ", ld ", lda, "/", ldb, "/", ldd,
         ", D ", d_type == CUDA_R_32F ? "f32" : "bf16", ", alignments ", al_a, "/", al_b, "/", al_d,
         " bytes");
  }
  p.algo = results[0].algo;
  if (found > 1)
    for (int i = 0; i < found; ++i) p.candidates.push_back(results[size_t(i)].algo);
  return plans_.emplace(key, p).first->second;
}

void CublasGemm::set_scales(Plan& p, const float* a_scale, const float* b_scale) {
  TL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                 &a_scale, sizeof(a_scale)));
  TL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                 &b_scale, sizeof(b_scale)));
}

void CublasGemm::gemm(void* d, cudaDataType_t d_type, int ldd, const void* a, int lda, bool trans_a,
                      const void* b, int ldb, bool trans_b, int m, int n, int k, float beta,
                      cudaDataType_t a_type, cudaDataType_t b_type, const float* a_scale,
                      const float* b_scale) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: D = beta * D, and beta is 0 or 1 here
    TL_ASSERT(beta == 0.0f || beta == 1.0f);
    if (beta == 0.0f) {
      const size_t elem = d_type == CUDA_R_32F ? 4 : 2;
      TL_CUDA_CHECK(
          cudaMemset2DAsync(d, size_t(ldd) * elem, 0, size_t(m) * elem, size_t(n), ctx_.stream));
    }
    return;
  }
  const Key key{
      m,          n,           k,         lda,          ldb,          ldd,          trans_a,
      trans_b,    int(d_type), beta != 0, alignment(a), alignment(b), alignment(d), int(a_type),
      int(b_type)};
  Plan& p = plan(key);
  if (a_scale) set_scales(p, a_scale, b_scale);
  if (!p.candidates.empty()) autotune(p, d_type, m, n, a, b, beta);
  const float alpha = 1.0f;
  TL_CUBLAS_CHECK(cublasLtMatmul(ctx_.cublaslt, p.desc, &alpha, a, p.a, b, p.b, &beta, d, p.d, d,
                                 p.d, &p.algo, ctx_.cublas_workspace, ctx_.cublas_workspace_bytes,
                                 ctx_.stream));
}

// Times each candidate (one warm-up, three runs) into a scratch output, so an accumulating
// product (beta = 1) leaves D untouched; keeps the fastest. Skipped while the stream is being
// captured into a graph (events cannot be waited on there): the next plain call tunes.
void CublasGemm::autotune(Plan& p, cudaDataType_t d_type, int m, int n, const void* a,
                          const void* b, float beta) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  TL_CUDA_CHECK(cudaStreamIsCapturing(ctx_.stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return;
  const size_t bytes = size_t(m) * size_t(n) * (d_type == CUDA_R_32F ? 4 : 2);
  void* scratch = nullptr;
  TL_CUDA_CHECK(cudaMallocAsync(&scratch, bytes, ctx_.stream));
  cudaEvent_t start, stop;
  TL_CUDA_CHECK(cudaEventCreate(&start));
  TL_CUDA_CHECK(cudaEventCreate(&stop));
  const float alpha = 1.0f;
  float best = -1;
  for (const cublasLtMatmulAlgo_t& algo : p.candidates) {
    auto run = [&] {
      return cublasLtMatmul(ctx_.cublaslt, p.desc, &alpha, a, p.a, b, p.b, &beta, scratch, p.d,
                            scratch, p.d, &algo, ctx_.cublas_workspace, ctx_.cublas_workspace_bytes,
                            ctx_.stream);
    };
    if (run() != CUBLAS_STATUS_SUCCESS) continue;  // a candidate may refuse these pointers
    TL_CUDA_CHECK(cudaEventRecord(start, ctx_.stream));
    for (int i = 0; i < 3; ++i) TL_CUBLAS_CHECK(run());
    TL_CUDA_CHECK(cudaEventRecord(stop, ctx_.stream));
    TL_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    TL_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (best < 0 || ms < best) best = ms, p.algo = algo;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  TL_CUDA_CHECK(cudaFreeAsync(scratch, ctx_.stream));
  p.candidates.clear();
}

void CublasGemm::forward(const char* op, Tensor out, Tensor inp, Tensor w) {
  const LinearDims s = check_linear(op, "inp", inp, w, DType::BF16);
  gpu::check_cuda(op, "out", out, DType::BF16);
  check_shape(op, "out", out, gpu::with_last(inp.shape, s.O));
  gemm(out.data, CUDA_R_16BF, int(s.O), w.data, int(s.I), true, inp.data, int(s.I), false, int(s.O),
       int(s.rows), int(s.I), 0.0f);
}

void CublasGemm::backward_input(const char* op, Tensor dinp, Tensor dout, Tensor w,
                                bool accumulate) {
  const LinearDims s = check_linear(op, "dinp", dinp, w, DType::BF16);
  gpu::check_cuda(op, "dout", dout, DType::BF16);
  check_shape(op, "dout", dout, gpu::with_last(dinp.shape, s.O));
  gemm(dinp.data, CUDA_R_16BF, int(s.I), w.data, int(s.I), false, dout.data, int(s.O), false,
       int(s.I), int(s.rows), int(s.O), accumulate ? 1.0f : 0.0f);
}

void CublasGemm::backward_weight(const char* op, Tensor dw, Tensor dout, Tensor inp,
                                 bool accumulate) {
  const LinearDims s = check_linear(op, "inp", inp, dw, DType::F32);
  gpu::check_cuda(op, "dout", dout, DType::BF16);
  check_shape(op, "dout", dout, gpu::with_last(inp.shape, s.O));
  gemm(dw.data, CUDA_R_32F, int(s.I), inp.data, int(s.I), false, dout.data, int(s.O), true,
       int(s.I), int(s.O), int(s.rows), accumulate ? 1.0f : 0.0f);
}

}  // namespace tl::gpu

namespace tl::gpu {

void CublasGemm::fp8(const char* op, Tensor out, Tensor a, Tensor b, const float* a_inv,
                     const float* b_inv, Fp8Format fa, Fp8Format fb, bool accumulate) {
  // The operands were checked by the backend (backend/fp8_args.h); what is CUDA's own:
  const int64_t N = a.dim(0), M = b.dim(0), K = a.dim(1);
  // cuBLASLt's FP8 kernels want every leading dimension a multiple of 16 bytes.
  TL_CHECK(K % 16 == 0 && M % 16 == 0, op, ": FP8 products need K (", K, ") and M (", M,
           ") to be multiples of 16");
  TL_CHECK(alignment(a_inv) >= 16 && alignment(b_inv) >= 16, op,
           ": the scale pointers must be 16-byte aligned");
  gpu::check_int_range(op, "N", N);
  const auto type = [](Fp8Format f) {
    return f == Fp8Format::E4M3 ? CUDA_R_8F_E4M3 : CUDA_R_8F_E5M2;
  };
  // Column-major out^T[M,N] = op_T(b^T[K,M]) . a^T[K,N], as forward(): cuBLASLt's A is our b.
  gemm(out.data, out.dtype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF, int(M), b.data, int(K), true,
       a.data, int(K), false, int(M), int(N), int(K), accumulate ? 1.0f : 0.0f, type(fb), type(fa),
       b_inv, a_inv);
}

}  // namespace tl::gpu
