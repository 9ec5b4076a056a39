// Linear layers on cuBLASLt: bf16 A/B, f32 compute; bf16 outputs, or f32 weight gradients
// accumulated in place (beta = 1) straight from the bf16 operands.
//
// Row-major <-> column-major. cuBLASLt is column-major; a row-major X[r, c] is, byte for
// byte, the column-major X^T[c, r] with leading dimension c. So each row-major product is
// issued as the column-major product of the transposes, Y^T = B^T A^T:
//   forward  out[N,O] = inp[N,I] @ W[O,I]^T   ->  out^T[O,N] = op_T(W^T[I,O]) · inp^T[I,N]
//            m = O, n = N, k = I; A = W (ld I, transposed), B = inp (ld I), D ld O
//   dinp     dinp[N,I] = dout[N,O] @ W[O,I]   ->  dinp^T[I,N] = W^T[I,O] · dout^T[O,N]
//            m = I, n = N, k = O; A = W (ld I), B = dout (ld O), D ld I
//   dweight  dW[O,I] += dout^T[O,N] @ inp[N,I] -> dW^T[I,O] += inp^T[I,N] · op_T(dout^T[O,N])
//            m = I, n = O, k = N; A = inp (ld I), B = dout (ld O, transposed), D ld I (f32)
#pragma once
#include <cublasLt.h>

#include <map>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "core/fp8.h"
#include "core/tensor.h"

namespace tl::gpu {

class CublasGemm {
 public:
  explicit CublasGemm(CudaContext& ctx);
  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  // out[rows..., O] (bf16) = inp[rows..., I] @ w[O,I]^T
  void forward(const char* op, Tensor out, Tensor inp, Tensor w);
  // dinp[rows..., I] (bf16) = (or += when accumulate) dout[rows..., O] @ w[O,I]
  void backward_input(const char* op, Tensor dinp, Tensor dout, Tensor w, bool accumulate);
  // dw[O,I] (f32) = (or += when accumulate) dout[rows..., O]^T @ inp[rows..., I]
  void backward_weight(const char* op, Tensor dw, Tensor dout, Tensor inp, bool accumulate);
  // out[N,M] (bf16 or f32; f32 += when accumulate) = (a[N,K] @ b[M,K]^T) * *a_inv * *b_inv with a,
  // b FP8 codes (Backend::fp8_matmul): the forward layout, the only one Hopper's FP8 kernels take.
  // a_inv, b_inv: device f32 scalars, 16-byte aligned. Operands as backend/fp8_args.h's matmul()
  // checked them.
  void fp8(const char* op, Tensor out, Tensor a, Tensor b, const float* a_inv, const float* b_inv,
           Fp8Format fa, Fp8Format fb, bool accumulate);

  // Column-major D[m,n] = op(A) op(B) + beta * D, with A bf16 [m,k] (stored [k,m] when
  // trans_a), B bf16 [k,n] (stored [n,k] when trans_b), D bf16 or f32. Plans (descriptors
  // and the heuristic's algorithm) are cached per shape, layout and pointer alignment.
  void gemm(void* d, cudaDataType_t d_type, int ldd, const void* a, int lda, bool trans_a,
            const void* b, int ldb, bool trans_b, int m, int n, int k, float beta,
            cudaDataType_t a_type = CUDA_R_16BF, cudaDataType_t b_type = CUDA_R_16BF,
            const float* a_scale = nullptr, const float* b_scale = nullptr);

 private:
  // m, n, k, lda, ldb, ldd, trans_a, trans_b, d_type, beta != 0, alignments of a, b, d,
  // a_type, b_type
  using Key =
      std::tuple<int, int, int, int, int, int, bool, bool, int, bool, int, int, int, int, int>;
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    // TL_GEMM_AUTOTUNE=1: the heuristic's top candidates, timed on the first call outside a
    // graph capture; `algo` is then the fastest and the list is dropped.
    std::vector<cublasLtMatmulAlgo_t> candidates;
  };
  Plan& plan(const Key& key);
  void autotune(Plan& p, cudaDataType_t d_type, int m, int n, const void* a, const void* b,
                float beta);
  void set_scales(Plan& p, const float* a_scale, const float* b_scale);

  CudaContext& ctx_;
  std::map<Key, Plan> plans_;
};

}  // namespace tl::gpu
