// attention_decode: attention of a few new tokens per row over a KV cache, for generation.
// Block = (query row, KV head with up to HPB of its query heads, split of the keys), 128
// threads (512 when decoding few rows: see "wide" in the launcher); HPB = 8, or 2 or 1 when
// there are too few rows to fill the GPU otherwise (a batch-1 step: 4 KV heads x 3 splits were
// 12 blocks for 132 SMs, each doing 8 heads' work in series). TL_DECODE_ATTN_HEADS=8|2|1 fixes
// it and TL_DECODE_ATTN_SPLITS=N caps the key splits, for measurements. It rotates its query
// heads (RoPE at the row's position) into shared memory, then walks the split's keys a block's
// width at a time: thread j scores key j against the block's heads, one warp per head turns the
// scores into an online softmax (the whole block by block-wide reductions when it has one
// head; TL_DECODE_ATTN_BLOCK_SOFTMAX=0 keeps that in one warp), then every thread accumulates a few
// (head, 2 dims) of p.V. Decoding (few query rows) splits the keys over enough blocks to fill the
// GPU (flash-decoding); prefill (many rows) keeps one split per row. With several splits they merge
// in split order: each block writes its (max, sum, output) to global memory and the last of a
// row's splits to finish (a counter per row and head block) merges them. With
// TL_DECODE_ATTN_CLUSTER=1 on sm_90 a row's splits are one thread block cluster instead and
// split 0 reads the others' from their shared memory: the same bits, but off by default, as it
// lost on an H100 (2026-12-07: batch 32 -8.5%, batch 1 unchanged; bench/RESULTS.md). The new k
// (rotated) and v go into the caches. With one new token a row (decoding) the blocks whose
// split holds its position write them and use them from shared memory, so a decode step's
// attention is one launch; with more (prefill), whose queries read each other's keys,
// append_kernel writes them first. Launched through launch_pdl (pdl.cuh: a programmatic
// dependent on sm_90 unless TL_PDL=0).
// Any even head dim; deterministic (fixed orders, no float atomics); qkv is only read.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#include <cooperative_groups.h>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/decode_attention.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {
constexpr int kChunk = 128;  // keys per pass = threads per block (see kWideChunk)
// Decoding few rows (batch 1-4 at 1.1B): one block per query head taking up to 512 keys a
// pass, so that a short context needs no split merge ("wide" in the launcher).
constexpr int kWideChunk = 512;
constexpr int kHeadsPerBlock = 8;  // query heads (of one KV group) sharing a block's keys
// Head dims up to ~500 at 128 keys a pass; the device's opt-in limit is lower on some cards
// (99 KB on sm_86 and sm_89: the launcher's smem_optin).
constexpr size_t kMaxSmem = 160 * 1024;
// Head dims up to 2 * kMaxPreHalf keep the rope row in shared memory; with 16-byte loads a
// key's first kPreDims dims of k and v are loaded into registers at once (see the kernel).
constexpr int kMaxPreHalf = 64;
constexpr int kPreDims = 64;
// A row's splits merge through distributed shared memory when they fit one cluster (sm_90).
constexpr int kMaxClusterSplits = 8;
// Step 3 of the kernel gives each (head, dim pair) item `ways` consecutive threads, as many as
// the block's `ch` threads allow (a power of two, at most a warp): at 8 heads of 64 dims 1
// with 128 threads, 2 with 512.
__host__ __device__ constexpr int pv_ways(int heads, int D, int ch) {
  int ways = 1;
  while (ways < kWarp && heads * (D / 2) * ways * 2 <= ch) ways *= 2;
  return ways;
}
// v_s's row stride (elements): D plus a pad that puts the rows the `ways` threads of one item
// read at once in different banks (rows of 64 dims all start in bank 0); 16-byte rows.
__host__ __device__ constexpr int v_stride(int D, int ways) {
  return ways == 1 ? D : D + 2 * (kWarp / ways > 4 ? kWarp / ways : 4);
}
// The kernel's dynamic shared memory (see its comment) at hpb heads a block, ch keys a pass.
size_t smem_bytes(int hpb, int D, int ch) {
  return sizeof(float) * size_t(hpb) * size_t(2 * D + ch) +
         sizeof(bf16) * (2 * size_t(D) + size_t(ch) * size_t(v_stride(D, pv_ways(hpb, D, ch))));
}
}  // namespace

// ---- kernels ----

// RoPE of one (first, second) half pair at a position, rounded as a rotated bf16 row holds it.
__device__ __forceinline__ void rotate_pair(bf16& y1, bf16& y2, bf16 x1, bf16 x2, float cs,
                                            float sn) {
  const float a = to_f32(x1), c = to_f32(x2);
  y1 = from_f32<bf16>(a * cs - c * sn);
  y2 = from_f32<bf16>(c * cs + a * sn);
}

// Prefill's cache append. Thread = (token bt, head hh of the 2K k and v heads of a qkv row,
// pair i of D/2). Position p = pos[b] + t; k is rotated (rotate-half, as rope_kernel), then
// k and v go to row p of their cache. qkv[BT,(H+2K)*D]; caches[B,Tmax,K*D].
__global__ void append_kernel(const bf16* qkv, bf16* k_cache, bf16* v_cache, const float* cos,
                              const float* sin, const int32_t* pos, int64_t BT, int Tn, int H,
                              int K, int D, int Tmax, int kv_len) {
  const int half = D / 2, heads = 2 * K;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= BT * heads * half) return;
  const int i = int(idx % half);
  const int hh = int((idx / half) % heads);
  const int64_t bt = idx / (int64_t(half) * heads);
  const int64_t b = bt / Tn;
  const int p = pos[b] + int(bt % Tn);
  if (p < 0 || p >= kv_len) return;  // broken precondition: never write outside the cache
  const bf16* x = qkv + bt * (H + heads) * int64_t(D) + int64_t(H + hh) * D;
  bf16 y1 = x[i], y2 = x[i + half];
  const bool is_k = hh < K;
  if (is_k)
    rotate_pair(y1, y2, x[i], x[i + half], cos[int64_t(p) * half + i], sin[int64_t(p) * half + i]);
  bf16* dst = (is_k ? k_cache : v_cache) + (b * Tmax + p) * int64_t(K) * D +
              int64_t(is_k ? hh : hh - K) * D;
  dst[i] = y1;
  dst[i + half] = y2;
}

// The merge of a row's splits through global memory: each block writes its (m, l, o), and the
// last of the row's splits to count (a counter per row and head block) merges them all in
// split order, so the result does not depend on which one that is.
__device__ __forceinline__ void merge_global(bf16* out, float* part_o, float* part_ml,
                                             unsigned* counters, const float* o_s, const float* m_s,
                                             const float* l_s, bool& last_s, int64_t z, int H,
                                             int h0, int nh, int D, int splits, int used) {
  for (int idx = threadIdx.x; idx < nh * D; idx += blockDim.x) {
    const int j = idx / D, d = idx % D;
    const int64_t slot = (z * H + h0 + j) * splits + blockIdx.z;
    part_o[slot * D + d] = o_s[idx];
    if (d == 0) {
      part_ml[2 * slot] = m_s[j];
      part_ml[2 * slot + 1] = l_s[j];
    }
  }
  __threadfence();  // this block's partials are visible device-wide before it counts
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* count = counters + z * gridDim.y + blockIdx.y;
    const bool last = atomicAdd(count, 1u) + 1 == unsigned(used);
    if (last) *count = 0;  // every other split has counted: ready for the next launch
    last_s = last;
  }
  __syncthreads();
  if (!last_s) return;
  __threadfence();
  for (int idx = threadIdx.x; idx < nh * D; idx += blockDim.x) {
    const int j = idx / D, d = idx % D;
    const int64_t base = (z * H + h0 + j) * splits;
    float m = -INFINITY;
    for (int c = 0; c < used; ++c) m = fmaxf(m, __ldcg(part_ml + 2 * (base + c)));
    float l = 0.0f, o = 0.0f;
    for (int c = 0; c < used; ++c) {
      const float w = expf(__ldcg(part_ml + 2 * (base + c)) - m);
      l += __ldcg(part_ml + 2 * (base + c) + 1) * w;
      o += __ldcg(part_o + (base + c) * D + d) * w;
    }
    out[(z * H + h0 + j) * D + d] = from_f32<bf16>(o / l);
  }
}

// grid (B*Tn query rows, K * head blocks, splits); block CH threads (keys a pass). APPEND: one new
// token a row, whose k and v this kernel writes (see the top). HPB: query heads a block takes.
// CLUSTER (sm_90): a row's splits are one thread block cluster and merge through distributed
// shared memory; else through global memory and a counter (see below).
// Dynamic shared memory: q_s, o_s [HPB][D], p_s [HPB][CH] (f32), kv_new [2][D] (bf16: the
// new token's rotated k and its v), v_s [CH][vs] (bf16, vs = v_stride(D, pv_ways(HPB, D, CH))).
// One split: the normalized result goes to out[BT,H*D]. Several, without clusters: each
// split's unnormalized output to part_o[BT,H,splits,D] and (max, sum) to part_ml[BT,H,splits,2];
// counters[BT, K * head blocks] (zero between launches) find the last split of a row, which
// merges them into out.
// The chain a block waits on is kept short, since at batch 1 the kernel is all latency:
// pos, the rope tables and, decoding, the first pass's cached keys and values (kPre pieces a
// thread, in registers) are read before pdl_wait(): no earlier kernel of the step writes them
// (the last step's ids download, this step's upload of pos or the end of the last step's
// replayed graph separates the step from every earlier step's writes; the step's own argmax
// moves pos on only after all of its other kernels have finished), and row p, which this
// kernel writes, is taken from kv_new instead.
// After the wait q and the new k and v are loaded at once.
template <int W, bool APPEND, int HPB, bool CLUSTER, int CH = kChunk>
__global__ void __launch_bounds__(CH)
    decode_attention_kernel(bf16* out, float* part_o, float* part_ml, unsigned* counters,
                            const bf16* qkv, bf16* k_cache, bf16* v_cache, const float* cos,
                            const float* sin, const int32_t* pos, int Tn, int H, int K, int D,
                            int Tmax, int kv_len, int chunks_per_split, float scale, bool early_kv,
                            bool block_softmax) {
  extern __shared__ __align__(16) float smem[];
  float* q_s = smem;
  float* o_s = q_s + HPB * D;
  float* p_s = o_s + HPB * D;
  bf16* kv_new = reinterpret_cast<bf16*>(p_s + HPB * CH);  // [2][D]: rotated k, v
  bf16* v_s = kv_new + 2 * D;                              // [CH][vstride]
  const int ways = pv_ways(HPB, D, CH), vstride = v_stride(D, ways);
  __shared__ float m_s[HPB], l_s[HPB], alpha_s[HPB];
  __shared__ float warp_m_s[HPB == 1 ? CH / kWarp : 1], warp_l_s[HPB == 1 ? CH / kWarp : 1];
  __shared__ float cs_s[kMaxPreHalf], sn_s[kMaxPreHalf];
  __shared__ bool last_s;
  pdl_launch_dependents();

  const int64_t z = blockIdx.x;  // query row b * Tn + t
  const int64_t b = z / Tn;
  const int group = H / K, n_hc = (group + HPB - 1) / HPB;
  const int g = int(blockIdx.y) / n_hc;
  const int h0 = g * group + (int(blockIdx.y) % n_hc) * HPB;
  const int nh = min(HPB, (g + 1) * group - h0);
  const int p = pos[b] + int(z % Tn);  // this query's position: it reads keys [0, p]
  const int n_keys = min(p + 1, kv_len);
  const int keys_per_split = chunks_per_split * CH;
  const int s_begin = int(blockIdx.z) * keys_per_split;
  const int s_end = min(n_keys, s_begin + keys_per_split);
  // A split with no keys of this row (same for all threads) has nothing to do; in a cluster
  // it still meets the cluster's barriers.
  const bool has_keys = s_begin < s_end;
  if (!CLUSTER && !has_keys) return;
  const int half = D / 2;
  // The rope row at p, staged in shared memory (head dims up to 2 * kMaxPreHalf).
  const bool tables_s = half <= kMaxPreHalf;
  const float* cs = cos + int64_t(p) * half;
  const float* sn = sin + int64_t(p) * half;
  if (tables_s && has_keys)
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      cs_s[i] = cs[i];
      sn_s[i] = sn[i];
    }
  const int64_t kvrow = int64_t(K) * D, row = int64_t(H + 2 * K) * D;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const bf16* x = qkv + z * row;
  const bf16* kbase = k_cache + b * Tmax * kvrow + int64_t(g) * D;
  const bf16* vbase = v_cache + b * Tmax * kvrow + int64_t(g) * D;
  // Key s0 + threadIdx.x's first kPre pieces of k and v, in registers (the rest, for head
  // dims over kPre * W, are loaded where they are used). With APPEND, the row of position p
  // is the new token's, which this kernel writes: its thread takes kv_new instead.
  // Decode only: prefill (many rows, 8 heads a block) keeps its registers for occupancy.
  constexpr int kPre = W == 8 && APPEND ? kPreDims / W : 0;
  Vec<bf16, W> kr[kPre > 0 ? kPre : 1], vr[kPre > 0 ? kPre : 1];
  const auto load_kv = [&](int s0) {
    if (int(threadIdx.x) < min(CH, s_end - s0)) {
      const bf16* k = kbase + int64_t(s0 + threadIdx.x) * kvrow;
      const bf16* v = vbase + int64_t(s0 + threadIdx.x) * kvrow;
#pragma unroll
      for (int c = 0; c < kPre; ++c)
        if (c * W < D) {
          kr[c] = load_vec<W>(k + c * W);
          vr[c] = load_vec<W>(v + c * W);
        }
    }
  };
  // A decode step (APPEND) loads its first pass's rows before the wait (early_kv, the default):
  // every row but p was written by an earlier step, and a copy or a graph's end separates the
  // steps (the last step's ids download, this step's upload of pos, or the last step's
  // replay: LlamaInference), so those writes are complete before this launch. Row p, this step's
  // own, comes from qkv after the wait (kv_new). Prefill's rows come from append_kernel, the launch
  // just before, so they wait.
  const bool early = APPEND && early_kv;
  if (early && has_keys) load_kv(s_begin);
  pdl_wait();  // qkv (and prefill's cache rows) come from earlier kernels
  if (!early && has_keys) load_kv(s_begin);
  __syncthreads();  // cs_s, sn_s: a thread below reads pairs other threads staged

  // The block's query heads rotated into q_s; with APPEND, the block whose split holds p also
  // rotates the new k into kv_new (and copies v) and writes both to the caches (blocks of
  // other head chunks of the same KV head write the same bytes). Items: (head j, pair i), j
  // in [0, HPB) the queries, HPB the new k, HPB + 1 the new v.
  const bool new_here = APPEND && p >= s_begin && p < s_end;
  for (int idx = threadIdx.x; idx < (HPB + 2) * half; idx += blockDim.x) {
    const int j = idx / half, i = idx % half;
    const auto c = [&] { return tables_s ? cs_s[i] : cs[i]; };
    const auto s = [&] { return tables_s ? sn_s[i] : sn[i]; };
    if (j < HPB) {
      bf16 y1 = from_f32<bf16>(0.0f), y2 = y1;
      if (j < nh && has_keys) {
        const bf16* q = x + int64_t(h0 + j) * D;
        rotate_pair(y1, y2, q[i], q[i + half], c(), s());
      }
      q_s[j * D + i] = to_f32(y1);
      q_s[j * D + i + half] = to_f32(y2);
    } else if (new_here && j == HPB) {
      const bf16* kx = x + int64_t(H + g) * D;
      rotate_pair(kv_new[i], kv_new[i + half], kx[i], kx[i + half], c(), s());
      bf16* kd = k_cache + (b * Tmax + p) * kvrow + int64_t(g) * D;
      kd[i] = kv_new[i];
      kd[i + half] = kv_new[i + half];
    } else if (new_here) {
      const bf16* vx = x + int64_t(H + K + g) * D;
      bf16* vd = v_cache + (b * Tmax + p) * kvrow + int64_t(g) * D;
      const bf16 v1 = vx[i], v2 = vx[i + half];
      kv_new[D + i] = vd[i] = v1;
      kv_new[D + i + half] = vd[i + half] = v2;
    }
  }
  for (int idx = threadIdx.x; idx < HPB * D; idx += blockDim.x) o_s[idx] = 0.0f;
  if (threadIdx.x < HPB) {
    m_s[threadIdx.x] = -INFINITY;
    l_s[threadIdx.x] = 0.0f;
  }
  __syncthreads();  // q_s, kv_new

  for (int s0 = s_begin; s0 < s_end; s0 += CH) {
    const int n = min(CH, s_end - s0);
    if (s0 != s_begin) load_kv(s0);
    // 1. scores of key s0 + threadIdx.x against the block's heads; its value goes to v_s
    // (loaded beside the key), so that step 3 reads shared memory, not a chain of loads
    float acc[HPB];
#pragma unroll
    for (int j = 0; j < HPB; ++j) acc[j] = 0.0f;
    if (int(threadIdx.x) < n) {
      const bool is_new = APPEND && s0 + int(threadIdx.x) == p;
      bf16* vs = v_s + threadIdx.x * vstride;
      const auto score = [&](int d, const Vec<bf16, W>& kv) {
#pragma unroll
        for (int e = 0; e < W; ++e) {
          const float kf = to_f32(kv.v[e]);
#pragma unroll
          for (int j = 0; j < HPB; ++j) acc[j] += q_s[j * D + d + e] * kf;
        }
      };
#pragma unroll
      for (int c = 0; c < kPre; ++c)
        if (c * W < D) {
          const Vec<bf16, W> kv = is_new ? load_vec<W>(kv_new + c * W) : kr[c];
          store_vec<W>(vs + c * W, is_new ? load_vec<W>(kv_new + D + c * W) : vr[c]);
          score(c * W, kv);
        }
      const bf16* k = is_new ? kv_new : kbase + int64_t(s0 + threadIdx.x) * kvrow;
      const bf16* v = is_new ? kv_new + D : vbase + int64_t(s0 + threadIdx.x) * kvrow;
#pragma unroll 4
      for (int d = kPre * W; d < D; d += W) {
        const Vec<bf16, W> kv = load_vec<W>(k + d);
        store_vec<W>(vs + d, load_vec<W>(v + d));
        score(d, kv);
      }
    }
    float alpha1 = 1.0f;  // block softmax: the head's rescale of o, in every thread
    const bool block_sm = HPB == 1 && block_softmax;
    if (block_sm) {
      // 2. (one head a block) online softmax: every thread holds one key's score, so the max
      // and the sum are block-wide reductions, in a fixed order (a warp walking the CH
      // scores would take CH / 32 of them a lane in series). m_s and l_s change only after
      // the second barrier, once every thread has read m_s.
      const float sc = int(threadIdx.x) < n ? acc[0] * scale : -INFINITY;
      float m = warp_max(sc);
      if (lane == 0) warp_m_s[warp] = m;
      __syncthreads();
      m = warp_max(lane < CH / kWarp ? warp_m_s[lane] : -INFINITY);
      const float m_old = m_s[0];
      m = fmaxf(m, m_old);  // finite: the chunk has at least one key
      const float e = int(threadIdx.x) < n ? expf(sc - m) : 0.0f;
      p_s[threadIdx.x] = e;
      const float l = warp_sum(e);
      if (lane == 0) warp_l_s[warp] = l;
      __syncthreads();           // p_s, warp_l_s
      alpha1 = expf(m_old - m);  // 0 on the first chunk
      if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int w = 0; w < CH / kWarp; ++w) sum += warp_l_s[w];
        l_s[0] = l_s[0] * alpha1 + sum;
        m_s[0] = m;
      }
    } else {
#pragma unroll  // acc indexed by constants only: it stays in registers
      for (int j = 0; j < HPB; ++j)
        if (j < nh) p_s[j * CH + threadIdx.x] = int(threadIdx.x) < n ? acc[j] * scale : -INFINITY;
      __syncthreads();
      // 2. online softmax, one warp per head
      for (int j = warp; j < nh; j += CH / kWarp) {
        float* pj = p_s + j * CH;
        float m = -INFINITY;
        for (int i = lane; i < CH; i += kWarp) m = fmaxf(m, pj[i]);
        m = fmaxf(warp_max(m), m_s[j]);  // finite: the chunk has at least one key
        float l = 0.0f;
        for (int i = lane; i < CH; i += kWarp) {
          const float e = expf(pj[i] - m);
          pj[i] = e;
          l += e;
        }
        l = warp_sum(l);
        if (lane == 0) {
          const float alpha = expf(m_s[j] - m);  // 0 on the first chunk
          alpha_s[j] = alpha;
          l_s[j] = l_s[j] * alpha + l;
          m_s[j] = m;
        }
      }
      __syncthreads();
    }
    // 3. o = o * alpha + p . V over this chunk. Each (head, dim pair) belongs to `ways`
    // consecutive threads (pv_ways: from HPB, so a block with fewer heads leaves some idle)
    // that take every ways-th key and add up by butterflies, in a fixed order; the loop's
    // trip count is the same for every thread, as the shuffles need.
    const int items = nh * half;
    for (int t0 = 0; t0 < items * ways; t0 += blockDim.x) {
      const int item = (t0 + int(threadIdx.x)) / ways, sub = (t0 + int(threadIdx.x)) % ways;
      const int j = item / half, d = (item % half) * 2;
      float o0 = 0.0f, o1 = 0.0f;
      if (item < items) {
        const float* pj = p_s + j * CH;
        const bf16* v = v_s + d;
#pragma unroll 8
        for (int i = sub; i < n; i += ways) {
          const __nv_bfloat162 vv = *reinterpret_cast<const __nv_bfloat162*>(v + i * vstride);
          o0 += pj[i] * __low2float(vv);
          o1 += pj[i] * __high2float(vv);
        }
      }
      for (int w = 1; w < ways; w *= 2) {
        o0 += __shfl_xor_sync(0xffffffffu, o0, w);
        o1 += __shfl_xor_sync(0xffffffffu, o1, w);
      }
      if (item < items && sub == 0) {
        const float alpha = block_sm ? alpha1 : alpha_s[j];
        float* o = o_s + j * D + d;
        o[0] = o[0] * alpha + o0;
        o[1] = o[1] * alpha + o1;
      }
    }
    __syncthreads();
  }

  const int splits = int(gridDim.z);
  if (splits == 1) {
    for (int idx = threadIdx.x; idx < nh * D; idx += blockDim.x)
      out[(z * H + h0 + idx / D) * D + idx % D] = from_f32<bf16>(o_s[idx] / l_s[idx / D]);
    return;
  }
  const int used = (n_keys + keys_per_split - 1) / keys_per_split;  // splits with keys
  if constexpr (CLUSTER) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // The row's splits are this cluster (rank = split): once all have their (m, l, o) in
    // shared memory, split 0 reads them there and merges in split order; the second barrier
    // keeps every block's shared memory alive until then.
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();
    if (blockIdx.z == 0) {
      for (int idx = threadIdx.x; idx < nh * D; idx += blockDim.x) {
        const int j = idx / D;
        float m = -INFINITY;
        for (int c = 0; c < used; ++c) m = fmaxf(m, *cluster.map_shared_rank(m_s + j, c));
        float l = 0.0f, o = 0.0f;
        for (int c = 0; c < used; ++c) {
          const float w = expf(*cluster.map_shared_rank(m_s + j, c) - m);
          l += *cluster.map_shared_rank(l_s + j, c) * w;
          o += *cluster.map_shared_rank(o_s + idx, c) * w;
        }
        out[(z * H + h0 + j) * D + idx % D] = from_f32<bf16>(o / l);
      }
    }
    cluster.sync();
#else
    __trap();  // never launched: the launcher asks for sm_90 code (cluster_kernels_run)
#endif
  } else {
    merge_global(out, part_o, part_ml, counters, o_s, m_s, l_s, last_s, z, H, h0, nh, D, splits,
                 used);
  }
}

// ---- launcher ----

namespace {
// Whether the device runs clusters and the cluster kernels hold sm_90 code for it (a build for
// sm_80 only has their merge compiled out: see the kernel). Decided once per process, as
// pdl_enabled is: not two driver queries on every launch.
bool cluster_kernels_run() {
  static const bool on = [] {
    cudaFuncAttributes a{};
    return clusters_supported() &&
           cudaFuncGetAttributes(&a, decode_attention_kernel<8, true, 1, true>) == cudaSuccess &&
           a.binaryVersion >= 90 && a.ptxVersion >= 90;
  }();
  return on;
}
}  // namespace

void attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor cos,
                      Tensor sin, Tensor pos, int kv_len, int H, int K, int sm_count,
                      size_t smem_optin, Scratch& scratch, Scratch& counters_scratch,
                      cudaStream_t stream) {
  const char* op = "attention_decode";
  check_cuda(op, "qkv", qkv, DType::BF16);
  TL_CHECK(qkv.ndim() == 3, op, ": qkv must be [B, Tn, (H + 2K) * D], got ", qkv.str());
  TL_CHECK(H > 0 && K > 0 && H % K == 0, op, ": n_head (", H,
           ") must be a positive multiple of n_kv_head (", K, ")");
  const int64_t width = qkv.dim(2);
  TL_CHECK(width > 0 && width % (H + 2 * K) == 0, op, ": qkv row width ", width,
           " is not (n_head + 2 * n_kv_head) * head_dim with n_head ", H, ", n_kv_head ", K);
  check_int_range(op, "qkv row width", width);
  const int D = int(width / (H + 2 * K));
  TL_CHECK(D % 2 == 0, op, ": head_dim ", D, " must be even");
  const int64_t B = qkv.dim(0), Tn = qkv.dim(1);
  check_cuda(op, "out", out, DType::BF16);
  check_shape(op, "out", out, Shape{B, Tn, int64_t(H) * D});
  check_cuda(op, "k_cache", k_cache, DType::BF16);
  TL_CHECK(k_cache.ndim() == 3 && k_cache.dim(0) == B && k_cache.dim(2) == int64_t(K) * D, op,
           ": k_cache must be [", B, ", Tmax, ", int64_t(K) * D, "], got ", k_cache.str());
  check_cuda(op, "v_cache", v_cache, DType::BF16);
  check_shape(op, "v_cache", v_cache, k_cache.shape);
  const int64_t Tmax = k_cache.dim(1);
  check_int_range(op, "Tmax", Tmax);
  check_cuda(op, "cos", cos, DType::F32);
  check_cuda(op, "sin", sin, DType::F32);
  TL_CHECK(cos.ndim() == 2 && cos.dim(1) == D / 2, op, ": cos must be [Tmax, ", D / 2, "], got ",
           cos.str());
  check_shape(op, "sin", sin, cos.shape);
  check_cuda(op, "pos", pos, DType::I32);
  check_shape(op, "pos", pos, Shape{B});
  TL_CHECK(kv_len >= Tn && kv_len <= Tmax && kv_len <= cos.dim(0), op, ": kv_len ", kv_len,
           " must be in [Tn = ", Tn, ", min(Tmax = ", Tmax, ", rope rows = ", cos.dim(0), ")]");
  for (const Tensor* t : {&qkv, &k_cache, &v_cache, &out})
    TL_CHECK((reinterpret_cast<uintptr_t>(t->data) & 3) == 0, op,
             ": tensors must be 4-byte aligned, got ", t->str());
  const int64_t BT = B * Tn;
  check_int_range(op, "B * Tn", BT);
  if (BT == 0) return;

  const bool append = Tn == 1;  // else append_kernel first: queries read each other's keys
  if (!append) {
    constexpr int kThreads = 256;
    const int64_t n_append = BT * 2 * K * (D / 2);
    append_kernel<<<unsigned(ceil_div(n_append, kThreads)), kThreads, 0, stream>>>(
        qkv.ptr<bf16>(), k_cache.ptr<bf16>(), v_cache.ptr<bf16>(), cos.ptr<float>(),
        sin.ptr<float>(), pos.ptr<int32_t>(), BT, int(Tn), H, K, D, int(Tmax), kv_len);
    TL_CUDA_LAUNCH_CHECK();
  }

  // Keys a pass (threads a block): kWideChunk when decoding on the 16-byte path with one block
  // per query head fitting on the SMs (BT * H of them: batch 1-4 at the 1.1B shape), so that a
  // short context is one pass of one block a head with no split merge; otherwise kChunk. On an
  // H100 (2026-12-07, bench/RESULTS.md) it took batch 1 from 918 to 974 tokens/s and batch 4
  // +3%, and cost batch 8 5% and batch 32 9% (more blocks than SMs, each with 4x the keys).
  // TL_DECODE_ATTN_WIDE=1|0 forces it on or off (where the 16-byte path runs), for tests and
  // measurements.
  // Where 8 heads a block would not fit shared memory at 512 keys a pass (head dims over 128,
  // or over 64 on cards with 99 KB a block) a pass stays 128 keys.
  const bool vec8 = D % 8 == 0 && aligned16(k_cache.data);
  const size_t max_smem = std::min(kMaxSmem, smem_optin);
  const bool wide_fits = append && vec8 && smem_bytes(kHeadsPerBlock, D, kWideChunk) <= max_smem;
  bool wide = wide_fits && BT * H <= sm_count;
  if (const char* e = std::getenv("TL_DECODE_ATTN_WIDE"))
    if (std::strcmp(e, "0") == 0 || std::strcmp(e, "1") == 0) wide = wide_fits && e[0] == '1';
  const int ch = wide ? kWideChunk : kChunk;
  // Heads per block: the most (K/V chunks loaded once for more heads) that still gives a
  // block an SM when every chunk is a split of its own, taken only for a group larger than
  // the next smaller choice (8 for a group of 2 would only compute zero rows); else 1.
  const int group = H / K;
  const int chunks = int(ceil_div(kv_len, ch));
  int hpb = 1;
  for (const auto& [h, smaller] : {std::pair{kHeadsPerBlock, 2}, std::pair{2, 1}})
    if (hpb == 1 && group > smaller && BT * K * ceil_div(group, h) * chunks >= sm_count) hpb = h;
  if (const char* e = std::getenv("TL_DECODE_ATTN_HEADS")) {
    const int h = std::atoi(e);
    if (h == 8 || h == 2 || h == 1) hpb = h;
  }
  // Splits: enough blocks for two waves over the SMs, whole chunks per split.
  const int n_hc = (group + hpb - 1) / hpb;
  const int64_t base_blocks = BT * K * n_hc;
  int splits =
      int(std::min<int64_t>(chunks, std::max<int64_t>(1, ceil_div(2 * sm_count, base_blocks))));
  // TL_DECODE_ATTN_SPLITS=N caps the splits, for measurements (1: no merge phase, each block
  // walks all of its row's keys).
  if (const char* e = std::getenv("TL_DECODE_ATTN_SPLITS"))
    if (std::atoi(e) > 0) splits = std::min(splits, std::atoi(e));
  const int chunks_per_split = int(ceil_div(chunks, splits));
  splits = int(ceil_div(chunks, chunks_per_split));
  // TL_DECODE_ATTN_CLUSTER=1: a row's splits merge in one thread block cluster where they fit
  // one (at most kMaxClusterSplits; more, at long contexts, keep the global merge rather than
  // fewer blocks), the device runs clusters and the cluster kernel was compiled for it (sm_90
  // code: a build without it carries only the merge through global memory), and the
  // kernel's 16-byte path runs with kChunk keys a pass. Off by default: it measured slower
  // (see the top).
  const char* cl = std::getenv("TL_DECODE_ATTN_CLUSTER");
  const bool cluster = vec8 && !wide && splits > 1 && splits <= kMaxClusterSplits && cl &&
                       std::strcmp(cl, "1") == 0 && cluster_kernels_run();
  TL_CHECK(splits <= 65535 && K * n_hc <= 65535, op, ": grid too large (", splits, " splits, ",
           K * n_hc, " head blocks)");
  float *part_o = nullptr, *part_ml = nullptr;
  unsigned* counters = nullptr;
  if (splits > 1 && !cluster) {
    const int64_t slots = BT * H * splits;
    part_o = scratch.get_as<float>(size_t(slots) * size_t(D + 2), stream);
    part_ml = part_o + slots * D;
    counters = static_cast<unsigned*>(
        counters_scratch.get_zeroed(size_t(base_blocks) * sizeof(unsigned), stream));
  }
  const size_t smem = smem_bytes(hpb, D, ch);
  TL_CHECK(smem <= max_smem, op, ": head_dim ", D, " needs ", smem,
           " bytes of shared memory, more than this device's ", max_smem);
  const dim3 grid(unsigned(BT), unsigned(K * n_hc), unsigned(splits));
  // TL_DECODE_ATTN_EARLY_KV=0: a decode step's first keys and values are loaded after the
  // wait on qkv, as prefill's are (for A/B measurements; see the kernel).
  const char* early_env = std::getenv("TL_DECODE_ATTN_EARLY_KV");
  const bool early_kv = !(early_env && std::strcmp(early_env, "0") == 0);
  // A block with one head does its softmax with block-wide reductions instead of in one warp
  // (see the kernel): +0.4% at batch 1 on an H100 (bench/RESULTS.md, 2026-12-07 23:2x UTC).
  // TL_DECODE_ATTN_BLOCK_SOFTMAX=0 keeps the warp's, for A/B measurements.
  const char* block_sm_env = std::getenv("TL_DECODE_ATTN_BLOCK_SOFTMAX");
  const bool block_softmax = !(block_sm_env && std::strcmp(block_sm_env, "0") == 0);
  const float scale = 1.0f / sqrtf(float(D));
  auto pick = [&](auto hpb_c) {
    constexpr int P = decltype(hpb_c)::value;
    if (wide) return decode_attention_kernel<8, true, P, false, kWideChunk>;
    if (cluster)
      return append ? decode_attention_kernel<8, true, P, true>
                    : decode_attention_kernel<8, false, P, true>;
    return vec8 ? (append ? decode_attention_kernel<8, true, P, false>
                          : decode_attention_kernel<8, false, P, false>)
                : (append ? decode_attention_kernel<2, true, P, false>
                          : decode_attention_kernel<2, false, P, false>);
  };
  auto kernel = hpb == kHeadsPerBlock ? pick(std::integral_constant<int, kHeadsPerBlock>())
                : hpb == 2            ? pick(std::integral_constant<int, 2>())
                                      : pick(std::integral_constant<int, 1>());
  if (smem > 48 * 1024)  // beyond the default: opt in (idempotent, not a stream operation)
    TL_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  launch_pdl_clusters(kernel, grid, dim3(1, 1, cluster ? unsigned(splits) : 1u), dim3(ch), smem,
                      stream, out.ptr<bf16>(), part_o, part_ml, counters, qkv.ptr<bf16>(),
                      k_cache.ptr<bf16>(), v_cache.ptr<bf16>(), cos.ptr<float>(), sin.ptr<float>(),
                      pos.ptr<int32_t>(), int(Tn), H, K, D, int(Tmax), kv_len, chunks_per_split,
                      scale, early_kv, block_softmax);
}

}  // namespace tl::gpu
