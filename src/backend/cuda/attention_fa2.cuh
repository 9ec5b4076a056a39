// Device building blocks for the FlashAttention-2 kernels (attention_fa2.cu): bf16 tensor-core
// MMA (mma.sync m16n8k16), ldmatrix, cp.async, and 64-row shared-memory tiles with an XOR
// swizzle. Fragment layouts are those of the PTX ISA for m16n8k16 (g = lane/4, t = lane%4):
//   A 16x16: a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//   B 16x8 : b0 (k 2t..2t+1, n g)  b1 (k 2t+8.., n g)
//   C 16x8 : c0,c1 (g, 2t..2t+1)   c2,c3 (g+8, 2t..2t+1)
// so the C fragments of two adjacent n-tiles are exactly the A fragment of one k-step: scores
// turn into the left operand of the next product without leaving registers.
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>

namespace tl::gpu::fa2 {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; with valid == false the destination is zero-filled.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
// 4-byte copy, for f32 rows that need not be 16-byte aligned; valid == false writes 0.
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void st_shared_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v));
}
__device__ __forceinline__ uint4 ld_shared_v4(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr));
  return v;
}
__device__ __forceinline__ float2 ld_shared_f2(uint32_t addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0,%1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(addr));
  return v;
}

// d += a * b (bf16 inputs, f32 accumulators).
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats -> bf16x2, the first in the low half (the lower column of a fragment pair).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ float fast_exp2(float x) {  // ex2.approx(-inf) = +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// The A fragment of k-step kk from C fragments c[2kk], c[2kk+1] (rows x 16 columns).
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c0)[4],
                                       const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// A shared-memory tile of ROWS x COLS bf16 (COLS a multiple of 64), row-major, the 16-byte
// chunk c of row r stored at chunk c ^ (r & 7): the 8 rows an ldmatrix reads at one logical
// column land in 8 different bank groups (no conflicts), and so do 16-byte cp.async stores.
template <int COLS>
struct Tile {
  static constexpr int kChunks = COLS / 8;  // 16-byte chunks per row
  uint32_t base;                            // shared address of element (0, 0)
  __device__ __forceinline__ uint32_t at(int row, int chunk) const {
    return base + uint32_t(row * COLS * 2 + ((chunk ^ (row & 7)) << 4));
  }
};

// Copies rows [row0, row0 + ROWS) of a strided global matrix (ld elements between rows, COLS
// contiguous) into a tile; rows at or past n_rows are zero-filled.
template <int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void load_tile_async(Tile<COLS> t, const bf16* g, int64_t ld, int row0,
                                                int n_rows) {
  constexpr int kChunks = ROWS * COLS / 8;
  static_assert(kChunks % THREADS == 0, "tile chunks must divide among the threads");
#pragma unroll
  for (int i = 0; i < kChunks / THREADS; ++i) {
    const int idx = int(threadIdx.x) + i * THREADS;
    const int r = idx / Tile<COLS>::kChunks, c = idx % Tile<COLS>::kChunks;
    const bool valid = row0 + r < n_rows;
    const bf16* src = valid ? g + int64_t(row0 + r) * ld + c * 8 : g;
    cp_async16(t.at(r, c), src, valid);
  }
}

// Lane addresses for ldmatrix.x4 (see the layouts above):
// - A operand (16 rows x 16 cols starting at row r0, chunk 2kk), and B operand stored k-major
//   ([k][n], loaded with .trans: rows k, two n-tiles):   row r0 + lane%16, chunk + lane/16.
// - B operand stored n-major ([n][k], plain): two n-tiles (16 rows n) x one k-step:
//   row r0 + (lane&7) + 8*(lane>>4), chunk + ((lane>>3)&1).
__device__ __forceinline__ int lane_row_a(int lane) { return lane & 15; }
__device__ __forceinline__ int lane_chunk_a(int lane) { return lane >> 4; }
__device__ __forceinline__ int lane_row_bn(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
__device__ __forceinline__ int lane_chunk_bn(int lane) { return (lane >> 3) & 1; }

}  // namespace tl::gpu::fa2
