// Linear layers without bias, on a packed, register-tiled GEMM.
//
// gemm() follows the classic BLIS layout: for each block of KC reduction steps, B is
// packed into panels of NR columns and A into panels of MR rows (both then stay in cache),
// and a micro-kernel keeps an MR x NR tile of C in registers (plain loops that gcc -O3
// vectorizes).
// Determinism: every element of C is the sum over k in ascending order, in KC blocks added
// to C in ascending order. KC is a constant and tiles never share an element, so results
// are bitwise the same for any number of threads and any schedule.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/ops/parallel.h"

namespace tl::cpu {

// A read-only strided matrix: element (r, c) is p[r * rs + c * cs]. Transposes are free.
template <class T>
struct MatView {
  const T* p;
  int64_t rs, cs;
  T at(int64_t r, int64_t c) const { return p[r * rs + c * cs]; }
};

template <class T>
struct GemmTile {
  static constexpr int MR = 8;                     // rows of a register tile
  static constexpr int NR = 128 / int(sizeof(T));  // columns: two 64-byte vectors
  static constexpr int64_t KC = 256;               // reduction block (fixes sum order)
  static constexpr int64_t MC = 64;                // rows of A per task
  static constexpr int64_t PANELS_PER_TASK = 2;    // NR-column panels of B per task
};

// c[m, n] (= or +=) sum_k a[k, :MR] * b[k, :NR] for the valid m x n corner of the tile.
// a: (kc, MR) packed; b: (kc, NR) packed; c: row stride ldc.
template <class T, int MR, int NR>
inline void gemm_micro(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c,
                       int64_t ldc, int64_t m, int64_t n, bool add) {
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const T* ak = a + k * MR;
    const T* bk = b + k * NR;
    for (int r = 0; r < MR; ++r) {
#pragma omp simd
      for (int j = 0; j < NR; ++j) acc[r][j] += ak[r] * bk[j];
    }
  }
  if (m == MR && n == NR) {
    for (int r = 0; r < MR; ++r) {
      T* cr = c + r * ldc;
#pragma omp simd
      for (int j = 0; j < NR; ++j) cr[j] = add ? cr[j] + acc[r][j] : acc[r][j];
    }
    return;
  }
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) c[r * ldc + j] = add ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

// ap: (ceil(mc/MR), kc, MR) = a[i0 : i0+mc, k0 : k0+kc], zero-padded to whole panels.
template <class T, int MR>
void gemm_pack_a(T* ap, MatView<T> a, int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
  for (int64_t p = 0; p * MR < mc; ++p) {
    T* dst = ap + p * kc * MR;
    const int64_t rows = std::min<int64_t>(MR, mc - p * MR);
    for (int64_t k = 0; k < kc; ++k)
      for (int r = 0; r < MR; ++r)
        dst[k * MR + r] = r < rows ? a.at(i0 + p * MR + r, k0 + k) : T(0);
  }
}

// bp: (kc, NR) = b[k0 : k0+kc, j0 : j0+NR], zero-padded past column n.
template <class T, int NR>
void gemm_pack_b(T* bp, MatView<T> b, int64_t k0, int64_t kc, int64_t j0, int64_t n) {
  const int64_t cols = std::min<int64_t>(NR, n - j0);
  if (b.cs == 1) {  // rows of b are contiguous: read along them
    for (int64_t k = 0; k < kc; ++k)
      for (int j = 0; j < NR; ++j) bp[k * NR + j] = j < cols ? b.at(k0 + k, j0 + j) : T(0);
  } else {  // columns of b are contiguous (b is a transposed row-major matrix)
    for (int j = 0; j < NR; ++j)
      for (int64_t k = 0; k < kc; ++k) bp[k * NR + j] = j < cols ? b.at(k0 + k, j0 + j) : T(0);
  }
}

// c[M,N] (= or += when accumulate) a[M,K] @ b[K,N]; c is row-major with row stride ldc.
template <class T>
void gemm(T* c, int64_t ldc, MatView<T> a, MatView<T> b, int64_t M, int64_t N, int64_t K,
          bool accumulate) {
  using G = GemmTile<T>;
  constexpr int MR = G::MR, NR = G::NR;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, T(0));
    return;
  }
  constexpr int64_t kP = G::PANELS_PER_TASK;
  const int64_t n_panels = (N + NR - 1) / NR;
  const int64_t m_blocks = (M + G::MC - 1) / G::MC, n_groups = (n_panels + kP - 1) / kP;
  // Each task owns one MC x (kP * NR) tile of C and runs the whole reduction for it, so the
  // threads never wait on each other until the end. Which thread takes a tile does not
  // change its arithmetic, so dynamic scheduling is safe (and copes with busy cores).
#pragma omp parallel if (worth_threads(M * N * K / 8))
  {
    std::vector<T> ap(size_t(G::MC * G::KC));    // (MC/MR, kc, MR) this task's A block
    std::vector<T> bp(size_t(kP * G::KC * NR));  // (kP, kc, NR) this task's B panels
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t ib = 0; ib < m_blocks; ++ib) {
      for (int64_t jg = 0; jg < n_groups; ++jg) {
        const int64_t i0 = ib * G::MC, mc = std::min(G::MC, M - i0);
        const int64_t q0 = jg * kP, nq = std::min(n_panels, q0 + kP) - q0;
        for (int64_t k0 = 0; k0 < K; k0 += G::KC) {
          const int64_t kc = std::min(G::KC, K - k0);
          gemm_pack_a<T, MR>(ap.data(), a, i0, mc, k0, kc);
          for (int64_t q = 0; q < nq; ++q)
            gemm_pack_b<T, NR>(bp.data() + q * kc * NR, b, k0, kc, (q0 + q) * NR, N);
          for (int64_t q = 0; q < nq; ++q)
            for (int64_t ir = 0; ir < mc; ir += MR)
              gemm_micro<T, MR, NR>(kc, ap.data() + (ir / MR) * kc * MR, bp.data() + q * kc * NR,
                                    c + (i0 + ir) * ldc + (q0 + q) * NR, ldc,
                                    std::min<int64_t>(MR, mc - ir),
                                    std::min<int64_t>(NR, N - (q0 + q) * NR), accumulate || k0 > 0);
        }
      }
    }
  }
}

// out: (N, O) = inp (N, I) @ weight (O, I)^T
template <class T>
void matmul_forward(T* out, const T* inp, const T* weight, int64_t N, int64_t I, int64_t O) {
  gemm<T>(out, O, {inp, I, 1}, {weight, 1, I}, N, O, I, false);
}

// dinp: (N, I) (= or +=) dout (N, O) @ weight (O, I); skipped when null.
// dweight: (O, I) (= or +=) dout^T @ inp (N, I); skipped when null.
template <class T>
void matmul_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int64_t N,
                     int64_t I, int64_t O, bool accumulate_dinp, bool accumulate_dweight) {
  if (dinp) gemm<T>(dinp, I, {dout, O, 1}, {weight, I, 1}, N, I, O, accumulate_dinp);
  if (dweight) gemm<T>(dweight, I, {dout, 1, O}, {inp, I, 1}, O, I, N, accumulate_dweight);
}

}  // namespace tl::cpu
