// Causal grouped-query attention, FlashAttention-2 algorithm, bf16 tensor cores (mma.sync),
// head dims 64 and 128. Layouts as in attention_internal.h; query head h reads kv head h/(H/K)
// by indexing (K/V never repeated). Scores are kept in the log2 domain: p = 2^(s*c - m*c) with
// c = log2(e)/sqrt(D), so one FFMA and one EX2 per score.
//
// Kernels (// kernels), then launchers (// launchers):
//  forward_kernel      grid (B*H, q blocks): a Q block against the K/V blocks up to its
//                      diagonal, online softmax in f32, writes out and lse.
//  preprocess_kernel   Dsum = rowsum(dO * O) per (b, h, t); zeroes the dQ accumulator.
//  bwd_kv_kernel       grid (B*K, kv blocks): one block of keys of one kv head against every
//                      query block at or after it, for all H/K query heads of the group: dK, dV
//                      summed over the group in registers, written once (no atomics).
//                      ATOMIC_DQ: also dQ += dS K into an f32 accumulator with atomics.
//  bwd_dq_kernel       (deterministic mode) grid (B*H, q blocks): dQ for a Q block by
//                      recomputing P and dP against its K/V blocks; no atomics.
//  dq_convert_kernel   f32 dQ accumulator * scale -> bf16 into dqkv (atomic mode).
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/backend.h"
#include "backend/cuda/attention_fa2.cuh"
#include "backend/cuda/attention_internal.h"
#include "backend/cuda/cuda_common.h"

namespace tl::gpu {
namespace fa2 {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kBlockKV = 64;  // keys per K/V tile (forward and dQ pass)

struct FwdParams {
  const bf16* qkv;  // [B,T,(H+2K)*D]
  bf16* out;        // [B,T,H*D]
  float* lse;       // [B,H,T]
  int T, H, K;
  int64_t qkv_row, out_row;
  float scale, scale_log2;
};

struct BwdParams {
  const bf16* qkv;    // [B,T,(H+2K)*D]
  const bf16* dout;   // [B,T,H*D]
  const float* lse;   // [B,H,T]
  const float* dsum;  // [B,H,T]  rowsum(dO * O)
  bf16* dqkv;         // [B,T,(H+2K)*D]
  float* dq_acc;      // [B,T,H*D] f32, atomic mode only
  int T, H, K;
  int64_t qkv_row, out_row;
  float scale, scale_log2;
};

// ---------------------------------------------------------------------------------------------
// kernels

// Forward. 4 warps; warp w owns query rows [q0 + 16*MT*w, +16*MT): MT m-tiles per warp let one
// K/V fragment from shared memory feed MT MMAs (MT=2 keeps D=64 off the shared-memory limit).
template <int D, int MT>
__global__ void __launch_bounds__(128, 2) forward_kernel(const FwdParams p) {
  constexpr int BR = 64 * MT, BC = kBlockKV;
  constexpr int KS = D / 16, NTS = BC / 8, NTO = D / 8;
  constexpr uint32_t kTileKV = BC * D * 2;  // bytes of one K or V tile
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s0 = smem_addr(smem);
  const Tile<D> sQ{s0};                    // [BR][D], reused to stage the output
  const uint32_t sK0 = s0 + BR * D * 2;    // [2][BC][D]
  const uint32_t sV0 = sK0 + 2 * kTileKV;  // [2][BC][D]

  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int T = p.T;
  const int bh = int(blockIdx.x), b = bh / p.H, h = bh % p.H, g = h / (p.H / p.K);
  const int q0 = int(gridDim.y - 1 - blockIdx.y) * BR;  // longest rows first (causal imbalance)
  const bf16* qg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(h) * D;
  const bf16* kg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(p.H + g) * D;
  const bf16* vg = kg + int64_t(p.K) * D;
  const int n_blocks = (min(T, q0 + BR) + BC - 1) / BC;  // causal: keys < q0 + BR

  load_tile_async<BR, D, 128>(sQ, qg, p.qkv_row, q0, T);
  load_tile_async<BC, D, 128>(Tile<D>{sK0}, kg, p.qkv_row, 0, T);
  load_tile_async<BC, D, 128>(Tile<D>{sV0}, vg, p.qkv_row, 0, T);
  cp_async_commit();

  const int row_w = q0 + warp * 16 * MT;  // first query row of this warp
  float o[MT][NTO][4] = {};
  float m[MT][2], l[MT][2];  // running max (raw score units) and partial row sums, rows g, g+8
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) m[mt][r] = -INFINITY, l[mt][r] = 0.f;
  uint32_t qf[MT][KS][4];

  for (int j = 0; j < n_blocks; ++j) {
    const int st = j & 1;
    __syncthreads();  // every warp is done with block j-1, whose stage we refill now
    if (j + 1 < n_blocks) {
      load_tile_async<BC, D, 128>(Tile<D>{sK0 + (st ^ 1) * kTileKV}, kg, p.qkv_row, (j + 1) * BC,
                                  T);
      load_tile_async<BC, D, 128>(Tile<D>{sV0 + (st ^ 1) * kTileKV}, vg, p.qkv_row, (j + 1) * BC,
                                  T);
    }
    cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning block j
    cp_async_wait<1>();
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int kk = 0; kk < KS; ++kk)
          ldsm_x4(qf[mt][kk],
                  sQ.at(warp * 16 * MT + mt * 16 + lane_row_a(lane), 2 * kk + lane_chunk_a(lane)));
    }
    const int k0 = j * BC;
    if (k0 > row_w + 16 * MT - 1) continue;  // all keys after all rows of this warp
    const Tile<D> sK{sK0 + st * kTileKV}, sV{sV0 + st * kTileKV};

    // S = Q K^T  (16*MT x BC per warp)
    float s[MT][NTS][4] = {};
#pragma unroll
    for (int kk = 0; kk < KS; ++kk)
#pragma unroll
      for (int np = 0; np < NTS / 2; ++np) {
        uint32_t bk[4];
        ldsm_x4(bk, sK.at(np * 16 + lane_row_bn(lane), 2 * kk + lane_chunk_bn(lane)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816(s[mt][2 * np], qf[mt][kk], bk[0], bk[1]);
          mma16816(s[mt][2 * np + 1], qf[mt][kk], bk[2], bk[3]);
        }
      }
    if (k0 + BC - 1 > row_w) {  // the block crosses this warp's diagonal
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NTS; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = k0 + nt * 8 + 2 * (lane & 3) + (e & 1);
            const int row = row_w + mt * 16 + (lane >> 2) + 8 * (e >> 1);
            if (key > row) s[mt][nt][e] = -INFINITY;
          }
    }

    // Online softmax: rescale what we have by 2^((m_old - m_new) c), add this block.
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = m[mt][r];
#pragma unroll
        for (int nt = 0; nt < NTS; ++nt)
          mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float ms = mx == -INFINITY ? 0.f : mx * p.scale_log2;  // row fully masked so far
        const float corr = fast_exp2(m[mt][r] * p.scale_log2 - ms);
        m[mt][r] = mx;
        l[mt][r] *= corr;
#pragma unroll
        for (int nt = 0; nt < NTO; ++nt) o[mt][nt][2 * r] *= corr, o[mt][nt][2 * r + 1] *= corr;
#pragma unroll
        for (int nt = 0; nt < NTS; ++nt)
#pragma unroll
          for (int e = 2 * r; e < 2 * r + 2; ++e) {
            const float pv = fast_exp2(fmaf(s[mt][nt][e], p.scale_log2, -ms));
            s[mt][nt][e] = pv;
            l[mt][r] += pv;
          }
      }

#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      // O += P V: P (bf16) straight from the score registers, V via ldmatrix.trans.
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) c_to_a(a[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
      for (int dp = 0; dp < NTO / 2; ++dp) {
        uint32_t bv[4];
        ldsm_x4_t(bv, sV.at(kk * 16 + lane_row_a(lane), 2 * dp + lane_chunk_a(lane)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816(o[mt][2 * dp], a[mt], bv[0], bv[1]);
          mma16816(o[mt][2 * dp + 1], a[mt], bv[2], bv[3]);
        }
      }
    }
  }

  // Epilogue: finish the row sums, normalize, lse = m*scale + ln(l); stage this warp's rows
  // of O in its own rows of sQ (only this warp read them) for 16-byte coalesced stores.
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float lt = l[mt][r];
      lt += __shfl_xor_sync(0xffffffffu, lt, 1);
      lt += __shfl_xor_sync(0xffffffffu, lt, 2);
      const float inv = 1.f / lt;
      const int row_l = warp * 16 * MT + mt * 16 + (lane >> 2) + 8 * r;
      if ((lane & 3) == 0 && q0 + row_l < T)
        p.lse[int64_t(bh) * T + q0 + row_l] = m[mt][r] * p.scale + logf(lt);
#pragma unroll
      for (int nt = 0; nt < NTO; ++nt)
        st_shared_u32(sQ.at(row_l, nt) + 4 * (lane & 3),
                      pack_bf16(o[mt][nt][2 * r] * inv, o[mt][nt][2 * r + 1] * inv));
    }
  __syncwarp();
  constexpr int kWarpChunks = 16 * MT * (D / 8);
#pragma unroll
  for (int i = 0; i < kWarpChunks / 32; ++i) {
    const int idx = lane + 32 * i;
    const int row_l = warp * 16 * MT + idx / (D / 8), c = idx % (D / 8);
    if (q0 + row_l < T) {
      const uint4 v = ld_shared_v4(sQ.at(row_l, c));
      *reinterpret_cast<uint4*>(p.out + (int64_t(b) * T + q0 + row_l) * p.out_row + int64_t(h) * D +
                                c * 8) = v;
    }
  }
}

// Dsum[b,h,t] = sum_d dout*out in f32 (D/8 threads per row of D, 16 bytes each); zeroes the
// f32 dQ accumulator rows (same [B,T,H,D] indexing as out) when dq_acc is given.
template <int D>
__global__ void preprocess_kernel(const bf16* __restrict__ dout, const bf16* __restrict__ out,
                                  float* __restrict__ dsum, float* __restrict__ dq_acc, int T,
                                  int H, int64_t n_rows) {
  constexpr int TPR = D / 8;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = tid / TPR;  // (b*T + t)*H + h
  const int c = int(tid % TPR);
  float acc = 0.f;
  if (row < n_rows) {
    const uint4 a = reinterpret_cast<const uint4*>(dout + row * D)[c];
    const uint4 o = reinterpret_cast<const uint4*>(out + row * D)[c];
    const __nv_bfloat162* a2 = reinterpret_cast<const __nv_bfloat162*>(&a);
    const __nv_bfloat162* o2 = reinterpret_cast<const __nv_bfloat162*>(&o);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 x = __bfloat1622float2(a2[i]), y = __bfloat1622float2(o2[i]);
      acc = fmaf(x.x, y.x, fmaf(x.y, y.y, acc));
    }
    if (dq_acc) {
      float4* z = reinterpret_cast<float4*>(dq_acc + row * D + c * 8);
      z[0] = make_float4(0.f, 0.f, 0.f, 0.f);
      z[1] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
#pragma unroll
  for (int off = TPR / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (c == 0 && row < n_rows) {
    const int64_t bt = row / H;
    const int h = int(row % H);
    const int64_t b = bt / T, t = bt % T;
    dsum[(b * H + h) * T + t] = acc;
  }
}

// Shared-memory layout of bwd_kv_kernel (bytes).
template <int D, int NW, bool ATOMIC_DQ>
struct KvLayout {
  static constexpr int BKV = 16 * NW, BQ = 64;
  static constexpr uint32_t kK = 0;                     // [BKV][D]
  static constexpr uint32_t kV = kK + BKV * D * 2;      // [BKV][D]
  static constexpr uint32_t kQ = kV + BKV * D * 2;      // [2][BQ][D]
  static constexpr uint32_t kdO = kQ + 2 * BQ * D * 2;  // [2][BQ][D]
  static constexpr uint32_t kL = kdO + 2 * BQ * D * 2;  // [2][BQ] f32 lse
  static constexpr uint32_t kDs = kL + 2 * BQ * 4;      // [2][BQ] f32 Dsum
  static constexpr uint32_t kdS = kDs + 2 * BQ * 4;     // [BKV][BQ] bf16 dS^T
  static constexpr uint32_t kBytes = kdS + (ATOMIC_DQ ? BKV * BQ * 2 : 0);
};

// Backward over one block of BKV = 16*NW keys of kv head g. Warp w owns keys
// [k0 + 16w, +16) and computes S^T = K Q^T directly, so P^T and dS^T come out of the MMAs in
// the A-operand layout that dV += P^T dO and dK += dS^T Q consume from registers.
template <int D, int NW, bool ATOMIC_DQ>
__global__ void __launch_bounds__(NW * 32, 8 / NW) bwd_kv_kernel(const BwdParams p) {
  using L = KvLayout<D, NW, ATOMIC_DQ>;
  constexpr int BKV = L::BKV, BQ = L::BQ, THREADS = NW * 32;
  constexpr int KS = D / 16, NTQ = BQ / 8, NTD = D / 8;
  constexpr bool kKvInRegs = D <= 64;  // D=128: A fragments re-read from shared memory
  constexpr uint32_t kTileQ = BQ * D * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s0 = smem_addr(smem);
  const Tile<D> sK{s0 + L::kK}, sV{s0 + L::kV};

  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int T = p.T, G = p.H / p.K;
  const int b = int(blockIdx.x) / p.K, g = int(blockIdx.x) % p.K;
  const int k0 = int(blockIdx.y) * BKV;  // block 0 first: it has the most query blocks
  const int qb0 = k0 / BQ, per_head = (T + BQ - 1) / BQ - qb0, n_iter = G * per_head;
  const bf16* kg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(p.H + g) * D;
  const bf16* vg = kg + int64_t(p.K) * D;

  auto load_q = [&](int it, int stage) {  // Q, dO, lse, Dsum of iteration it
    const int h = g * G + it / per_head, qs = (qb0 + it % per_head) * BQ;
    load_tile_async<BQ, D, THREADS>(Tile<D>{s0 + L::kQ + stage * kTileQ},
                                    p.qkv + int64_t(b) * T * p.qkv_row + int64_t(h) * D, p.qkv_row,
                                    qs, T);
    load_tile_async<BQ, D, THREADS>(Tile<D>{s0 + L::kdO + stage * kTileQ},
                                    p.dout + int64_t(b) * T * p.out_row + int64_t(h) * D, p.out_row,
                                    qs, T);
    const int i = int(threadIdx.x);
    if (i < 2 * BQ) {
      const float* src = (i < BQ ? p.lse : p.dsum) + (int64_t(b) * p.H + h) * T + qs + (i % BQ);
      const uint32_t dst = s0 + (i < BQ ? L::kL : L::kDs) + stage * BQ * 4 + (i % BQ) * 4;
      cp_async4(dst, qs + (i % BQ) < T ? src : p.lse, qs + (i % BQ) < T);
    }
  };
  load_tile_async<BKV, D, THREADS>(sK, kg, p.qkv_row, k0, T);
  load_tile_async<BKV, D, THREADS>(sV, vg, p.qkv_row, k0, T);
  load_q(0, 0);
  cp_async_commit();

  const int key_w = k0 + warp * 16;  // first key of this warp
  float dk[NTD][4] = {}, dv[NTD][4] = {};
  uint32_t kf[kKvInRegs ? KS : 1][4], vf[kKvInRegs ? KS : 1][4];

  for (int it = 0; it < n_iter; ++it) {
    const int st = it & 1;
    __syncthreads();  // iteration it-1 is done with stage st^1 and with dS^T
    if (it + 1 < n_iter) load_q(it + 1, st ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if constexpr (kKvInRegs) {
      if (it == 0) {
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) {
          ldsm_x4(kf[kk], sK.at(warp * 16 + lane_row_a(lane), 2 * kk + lane_chunk_a(lane)));
          ldsm_x4(vf[kk], sV.at(warp * 16 + lane_row_a(lane), 2 * kk + lane_chunk_a(lane)));
        }
      }
    }
    const int h = g * G + it / per_head, qs = (qb0 + it % per_head) * BQ;
    const Tile<D> sQ{s0 + L::kQ + st * kTileQ}, sdO{s0 + L::kdO + st * kTileQ};
    const uint32_t sL = s0 + L::kL + st * BQ * 4, sDs = s0 + L::kDs + st * BQ * 4;
    const bool active = key_w <= qs + BQ - 1;  // some key of this warp sees some query

    float s[NTQ][4] = {}, dp[NTQ][4] = {};  // S^T then P^T; dP^T then dS^T (16 keys x BQ)
    if (active) {
      // S^T = K Q^T and dP^T = V dO^T (Q and dO are [n][k] in shared memory: plain ldmatrix)
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        uint32_t ak[4], av[4];
        if constexpr (kKvInRegs) {
#pragma unroll
          for (int i = 0; i < 4; ++i) ak[i] = kf[kk][i], av[i] = vf[kk][i];
        } else {
          ldsm_x4(ak, sK.at(warp * 16 + lane_row_a(lane), 2 * kk + lane_chunk_a(lane)));
          ldsm_x4(av, sV.at(warp * 16 + lane_row_a(lane), 2 * kk + lane_chunk_a(lane)));
        }
#pragma unroll
        for (int np = 0; np < NTQ / 2; ++np) {
          uint32_t bq[4], bo[4];
          ldsm_x4(bq, sQ.at(np * 16 + lane_row_bn(lane), 2 * kk + lane_chunk_bn(lane)));
          ldsm_x4(bo, sdO.at(np * 16 + lane_row_bn(lane), 2 * kk + lane_chunk_bn(lane)));
          mma16816(s[2 * np], ak, bq[0], bq[1]);
          mma16816(s[2 * np + 1], ak, bq[2], bq[3]);
          mma16816(dp[2 * np], av, bo[0], bo[1]);
          mma16816(dp[2 * np + 1], av, bo[2], bo[3]);
        }
      }
      // P^T = 2^(S^T c - lse log2 e), zero where key > query or query >= T;
      // dS^T = P^T (dP^T - Dsum).
      const bool mask = key_w + 15 > qs || qs + BQ > T;
#pragma unroll
      for (int nt = 0; nt < NTQ; ++nt) {
        const int col = nt * 8 + 2 * (lane & 3);
        const float2 lse = ld_shared_f2(sL + col * 4), ds = ld_shared_f2(sDs + col * 4);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int q = qs + col + (e & 1), key = key_w + (lane >> 2) + 8 * (e >> 1);
          float pv = fast_exp2(fmaf(s[nt][e], p.scale_log2, -((e & 1) ? lse.y : lse.x) * kLog2e));
          if (mask && (key > q || q >= T)) pv = 0.f;
          s[nt][e] = pv;
          dp[nt][e] = pv * (dp[nt][e] - ((e & 1) ? ds.y : ds.x));
        }
      }
      // dV += P^T dO and dK += dS^T Q (dO and Q are [k][n] here: ldmatrix.trans)
#pragma unroll
      for (int kq = 0; kq < BQ / 16; ++kq) {
        uint32_t ap[4], as[4];
        c_to_a(ap, s[2 * kq], s[2 * kq + 1]);
        c_to_a(as, dp[2 * kq], dp[2 * kq + 1]);
#pragma unroll
        for (int dd = 0; dd < NTD / 2; ++dd) {
          uint32_t bo[4], bq[4];
          ldsm_x4_t(bo, sdO.at(kq * 16 + lane_row_a(lane), 2 * dd + lane_chunk_a(lane)));
          ldsm_x4_t(bq, sQ.at(kq * 16 + lane_row_a(lane), 2 * dd + lane_chunk_a(lane)));
          mma16816(dv[2 * dd], ap, bo[0], bo[1]);
          mma16816(dv[2 * dd + 1], ap, bo[2], bo[3]);
          mma16816(dk[2 * dd], as, bq[0], bq[1]);
          mma16816(dk[2 * dd + 1], as, bq[2], bq[3]);
        }
      }
    }

    if constexpr (ATOMIC_DQ) {
      // dQ (BQ x D) += dS (BQ x BKV) K (BKV x D): dS^T goes through shared memory (inactive
      // warps store zeros); warp w computes query rows 16(w%4).. and a D*4/NW wide column slice.
      const Tile<BQ> sdS{s0 + L::kdS};
#pragma unroll
      for (int nt = 0; nt < NTQ; ++nt)
#pragma unroll
        for (int r = 0; r < 2; ++r)
          st_shared_u32(sdS.at(warp * 16 + (lane >> 2) + 8 * r, nt) + 4 * (lane & 3),
                        pack_bf16(dp[nt][2 * r], dp[nt][2 * r + 1]));
      __syncthreads();
      constexpr int WD = D * 4 / NW, NTW = WD / 8;
      const int mq = warp & 3, d0 = (warp >> 2) * WD;
      float dq[NTW][4] = {};
#pragma unroll
      for (int kk = 0; kk < BKV / 16; ++kk) {
        uint32_t a[4];
        ldsm_x4_t(a, sdS.at(kk * 16 + lane_row_bn(lane), 2 * mq + lane_chunk_bn(lane)));
#pragma unroll
        for (int dd = 0; dd < NTW / 2; ++dd) {
          uint32_t bk[4];
          ldsm_x4_t(bk, sK.at(kk * 16 + lane_row_a(lane), d0 / 8 + 2 * dd + lane_chunk_a(lane)));
          mma16816(dq[2 * dd], a, bk[0], bk[1]);
          mma16816(dq[2 * dd + 1], a, bk[2], bk[3]);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int q = qs + mq * 16 + (lane >> 2) + 8 * r;
        if (q >= T) continue;
        float* row =
            p.dq_acc + (int64_t(b) * T + q) * p.out_row + int64_t(h) * D + d0 + 2 * (lane & 3);
#pragma unroll
        for (int nt = 0; nt < NTW; ++nt) {
#if __CUDA_ARCH__ >= 900
          atomicAdd(reinterpret_cast<float2*>(row + nt * 8),
                    make_float2(dq[nt][2 * r], dq[nt][2 * r + 1]));
#else
          atomicAdd(row + nt * 8, dq[nt][2 * r]);
          atomicAdd(row + nt * 8 + 1, dq[nt][2 * r + 1]);
#endif
        }
      }
    }
  }

  // dK (times the softmax scale: S = scale * Q K^T) and dV of this warp's 16 keys.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key_w + (lane >> 2) + 8 * r;
    if (key >= T) continue;
    bf16* row = p.dqkv + (int64_t(b) * T + key) * p.qkv_row + int64_t(p.H + g) * D + 2 * (lane & 3);
#pragma unroll
    for (int nt = 0; nt < NTD; ++nt) {
      *reinterpret_cast<uint32_t*>(row + nt * 8) =
          pack_bf16(dk[nt][2 * r] * p.scale, dk[nt][2 * r + 1] * p.scale);
      *reinterpret_cast<uint32_t*>(row + int64_t(p.K) * D + nt * 8) =
          pack_bf16(dv[nt][2 * r], dv[nt][2 * r + 1]);
    }
  }
}

// Deterministic dQ: 4 warps x 16 query rows against the K/V blocks up to the diagonal,
// recomputing P = 2^(Q K^T c - lse) and dP = dO V^T; dQ += dS K stays in registers.
template <int D>
__global__ void __launch_bounds__(128, 2) bwd_dq_kernel(const BwdParams p) {
  constexpr int BQ = 64, BC = kBlockKV, KS = D / 16, NTS = BC / 8, NTD = D / 8;
  constexpr uint32_t kTile = 64 * D * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t s0 = smem_addr(smem);
  const Tile<D> sQ{s0}, sdO{s0 + kTile};
  const uint32_t sK0 = s0 + 2 * kTile, sV0 = s0 + 4 * kTile;  // [2][BC][D] each

  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int T = p.T;
  const int bh = int(blockIdx.x), b = bh / p.H, h = bh % p.H, g = h / (p.H / p.K);
  const int q0 = int(gridDim.y - 1 - blockIdx.y) * BQ;
  const bf16* kg = p.qkv + int64_t(b) * T * p.qkv_row + int64_t(p.H + g) * D;
  const bf16* vg = kg + int64_t(p.K) * D;
  const int n_blocks = (min(T, q0 + BQ) + BC - 1) / BC;

  load_tile_async<BQ, D, 128>(sQ, p.qkv + int64_t(b) * T * p.qkv_row + int64_t(h) * D, p.qkv_row,
                              q0, T);
  load_tile_async<BQ, D, 128>(sdO, p.dout + int64_t(b) * T * p.out_row + int64_t(h) * D, p.out_row,
                              q0, T);
  load_tile_async<BC, D, 128>(Tile<D>{sK0}, kg, p.qkv_row, 0, T);
  load_tile_async<BC, D, 128>(Tile<D>{sV0}, vg, p.qkv_row, 0, T);
  cp_async_commit();

  const int row_w = q0 + warp * 16;
  float lse2[2], dsum[2];  // rows g and g+8 of this warp
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_w + (lane >> 2) + 8 * r;
    const int64_t i = int64_t(bh) * T + row;
    lse2[r] = row < T ? p.lse[i] * kLog2e : 0.f;
    dsum[r] = row < T ? p.dsum[i] : 0.f;
  }
  uint32_t qf[KS][4], of[KS][4];
  float dq[NTD][4] = {};

  for (int j = 0; j < n_blocks; ++j) {
    const int st = j & 1;
    __syncthreads();
    if (j + 1 < n_blocks) {
      load_tile_async<BC, D, 128>(Tile<D>{sK0 + (st ^ 1) * kTile}, kg, p.qkv_row, (j + 1) * BC, T);
      load_tile_async<BC, D, 128>(Tile<D>{sV0 + (st ^ 1) * kTile}, vg, p.qkv_row, (j + 1) * BC, T);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        ldsm_x4(qf[kk], sQ.at(warp * 16 + lane_row_a(lane), 2 * kk + lane_chunk_a(lane)));
        ldsm_x4(of[kk], sdO.at(warp * 16 + lane_row_a(lane), 2 * kk + lane_chunk_a(lane)));
      }
    }
    const int k0 = j * BC;
    if (k0 > row_w + 15) continue;
    const Tile<D> sK{sK0 + st * kTile}, sV{sV0 + st * kTile};

    float s[NTS][4] = {}, dp[NTS][4] = {};
#pragma unroll
    for (int kk = 0; kk < KS; ++kk)
#pragma unroll
      for (int np = 0; np < NTS / 2; ++np) {
        uint32_t bk[4], bv[4];
        ldsm_x4(bk, sK.at(np * 16 + lane_row_bn(lane), 2 * kk + lane_chunk_bn(lane)));
        ldsm_x4(bv, sV.at(np * 16 + lane_row_bn(lane), 2 * kk + lane_chunk_bn(lane)));
        mma16816(s[2 * np], qf[kk], bk[0], bk[1]);
        mma16816(s[2 * np + 1], qf[kk], bk[2], bk[3]);
        mma16816(dp[2 * np], of[kk], bv[0], bv[1]);
        mma16816(dp[2 * np + 1], of[kk], bv[2], bv[3]);
      }
    const bool mask = k0 + BC - 1 > row_w;
#pragma unroll
    for (int nt = 0; nt < NTS; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        const int key = k0 + nt * 8 + 2 * (lane & 3) + (e & 1), row = row_w + (lane >> 2) + 8 * r;
        float pv = fast_exp2(fmaf(s[nt][e], p.scale_log2, -lse2[r]));
        if (mask && key > row) pv = 0.f;
        dp[nt][e] = pv * (dp[nt][e] - dsum[r]);
      }
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      uint32_t a[4];
      c_to_a(a, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int dd = 0; dd < NTD / 2; ++dd) {
        uint32_t bk[4];
        ldsm_x4_t(bk, sK.at(kk * 16 + lane_row_a(lane), 2 * dd + lane_chunk_a(lane)));
        mma16816(dq[2 * dd], a, bk[0], bk[1]);
        mma16816(dq[2 * dd + 1], a, bk[2], bk[3]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_w + (lane >> 2) + 8 * r;
    if (row >= T) continue;
    bf16* dst = p.dqkv + (int64_t(b) * T + row) * p.qkv_row + int64_t(h) * D + 2 * (lane & 3);
#pragma unroll
    for (int nt = 0; nt < NTD; ++nt)
      *reinterpret_cast<uint32_t*>(dst + nt * 8) =
          pack_bf16(dq[nt][2 * r] * p.scale, dq[nt][2 * r + 1] * p.scale);
  }
}

// dqkv[b,t, h*D + d] = scale * dq_acc[b,t,h,d]; 8 elements per thread.
__global__ void dq_convert_kernel(const float* __restrict__ dq_acc, bf16* __restrict__ dqkv,
                                  int64_t n_chunks, int out_row, int64_t qkv_row, float scale) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_chunks) return;
  const int64_t e = i * 8, token = e / out_row;
  const int col = int(e % out_row);
  const float4 a = reinterpret_cast<const float4*>(dq_acc + e)[0];
  const float4 c = reinterpret_cast<const float4*>(dq_acc + e)[1];
  uint4 v;
  v.x = pack_bf16(a.x * scale, a.y * scale);
  v.y = pack_bf16(a.z * scale, a.w * scale);
  v.z = pack_bf16(c.x * scale, c.y * scale);
  v.w = pack_bf16(c.z * scale, c.w * scale);
  *reinterpret_cast<uint4*>(dqkv + token * qkv_row + col) = v;
}

// ---------------------------------------------------------------------------------------------
// launchers

template <class Kernel, class Params>
void launch(Kernel kernel, dim3 grid, int threads, uint32_t smem, cudaStream_t stream,
            const Params& params) {
  // Above 48 KiB a block needs the opt-in; cheap, so set it on every call.
  TL_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  kernel<<<grid, threads, smem, stream>>>(params);
  TL_CUDA_LAUNCH_CHECK();
}

template <int D, int MT>
void forward_d(const AttnShape& s, const FwdParams& p, cudaStream_t stream) {
  constexpr int BR = 64 * MT;
  const uint32_t smem = (BR + 4 * kBlockKV) * D * 2;
  launch(forward_kernel<D, MT>, dim3(unsigned(s.B * s.H), unsigned((s.T + BR - 1) / BR)), 128, smem,
         stream, p);
}

template <int D, int NW, bool ATOMIC_DQ>
void bwd_kv(const AttnShape& s, const BwdParams& p, cudaStream_t stream) {
  using L = KvLayout<D, NW, ATOMIC_DQ>;
  launch(bwd_kv_kernel<D, NW, ATOMIC_DQ>,
         dim3(unsigned(s.B * s.K), unsigned((s.T + L::BKV - 1) / L::BKV)), NW * 32, L::kBytes,
         stream, p);
}

template <int D>
void backward_d(const AttnShape& s, const BwdParams& p, const bf16* out, float* dsum,
                bool deterministic, int kv_warps, cudaStream_t stream) {
  const int64_t n_rows = int64_t(s.B) * s.T * s.H, threads = n_rows * (D / 8);
  preprocess_kernel<D><<<unsigned((threads + 255) / 256), 256, 0, stream>>>(
      p.dout, out, dsum, deterministic ? nullptr : p.dq_acc, s.T, s.H, n_rows);
  TL_CUDA_LAUNCH_CHECK();
  if (deterministic) {
    bwd_kv<D, 4, false>(s, p, stream);
    const uint32_t smem = 6 * 64 * D * 2;  // Q, dO, 2 x K, 2 x V tiles
    launch(bwd_dq_kernel<D>, dim3(unsigned(s.B * s.H), unsigned((s.T + 63) / 64)), 128, smem,
           stream, p);
    return;
  }
  if constexpr (D == 64) {
    if (kv_warps == 8)
      bwd_kv<D, 8, true>(s, p, stream);
    else
      bwd_kv<D, 4, true>(s, p, stream);
  } else {
    bwd_kv<D, 4, true>(s, p, stream);
  }
  const int64_t n_chunks = int64_t(s.B) * s.T * s.out_row() / 8;
  dq_convert_kernel<<<unsigned((n_chunks + 255) / 256), 256, 0, stream>>>(
      p.dq_acc, p.dqkv, n_chunks, int(s.out_row()), s.qkv_row(), p.scale);
  TL_CUDA_LAUNCH_CHECK();
}

// Warps per block of the atomic-dQ backward kernel at D=64: 4 (64 keys, two blocks per SM) or
// 8 (128 keys, half the dQ atomics). TL_FA2_BWD_KV_WARPS=4|8 picks one for benchmarking.
int kv_warps_from_env() {
  const char* v = std::getenv("TL_FA2_BWD_KV_WARPS");
  return v != nullptr && std::strcmp(v, "8") == 0 ? 8 : 4;
}

}  // namespace
}  // namespace fa2

bool fa2_supports_head_dim(int D) { return D == 64 || D == 128; }

size_t fa2_workspace_bytes(const AttnShape& s, bool deterministic) {
  const size_t rows = size_t(s.B) * s.H * s.T;
  return round_up_256(rows * sizeof(float)) + (deterministic ? 0 : rows * s.D * sizeof(float));
}

void fa2_forward(const AttnShape& s, void* out, float* lse, const void* qkv, cudaStream_t stream) {
  fa2::FwdParams p{};
  p.qkv = static_cast<const fa2::bf16*>(qkv);
  p.out = static_cast<fa2::bf16*>(out);
  p.lse = lse;
  p.T = s.T, p.H = s.H, p.K = s.K;
  p.qkv_row = s.qkv_row(), p.out_row = s.out_row();
  p.scale = 1.f / std::sqrt(float(s.D));
  p.scale_log2 = p.scale * fa2::kLog2e;
  if (s.D == 64)
    fa2::forward_d<64, 2>(s, p, stream);
  else
    fa2::forward_d<128, 1>(s, p, stream);
}

void fa2_backward(const AttnShape& s, void* dqkv, const void* dout, const void* qkv,
                  const void* out, const float* lse, void* workspace, bool deterministic,
                  cudaStream_t stream) {
  float* dsum = static_cast<float*>(workspace);
  fa2::BwdParams p{};
  p.qkv = static_cast<const fa2::bf16*>(qkv);
  p.dout = static_cast<const fa2::bf16*>(dout);
  p.lse = lse;
  p.dsum = dsum;
  p.dqkv = static_cast<fa2::bf16*>(dqkv);
  p.dq_acc = deterministic
                 ? nullptr
                 : reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                            round_up_256(size_t(s.B) * s.H * s.T * sizeof(float)));
  p.T = s.T, p.H = s.H, p.K = s.K;
  p.qkv_row = s.qkv_row(), p.out_row = s.out_row();
  p.scale = 1.f / std::sqrt(float(s.D));
  p.scale_log2 = p.scale * fa2::kLog2e;
  const auto* o = static_cast<const fa2::bf16*>(out);
  if (s.D == 64)
    fa2::backward_d<64>(s, p, o, dsum, deterministic, fa2::kv_warps_from_env(), stream);
  else
    fa2::backward_d<128>(s, p, o, dsum, deterministic, 4, stream);
}

}  // namespace tl::gpu
