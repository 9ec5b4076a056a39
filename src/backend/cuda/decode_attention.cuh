// The work of one decode-attention block (decode_attention.cu has the algorithm at its top):
// one query row, up to HPB query heads of one KV head, one split of the keys, 128 threads.
// attend_split leaves the split's unnormalized output and its (max, sum) per head in shared
// memory; what merges the splits is the caller's: decode_attention_kernel (the attention op)
// and decode_layers_kernel (a whole one-row step in one launch) share this device code, so
// the two give the same bits. attention_plan is the host's choice of heads a block and
// splits, shared the same way.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace attn {
constexpr int kChunk = 128;        // keys per pass = threads per block
constexpr int kHeadsPerBlock = 8;  // query heads (of one KV group) sharing a block's keys
// Head dims up to 2 * kMaxPreHalf keep the rope row in shared memory; with 16-byte loads a
// key's first kPreDims dims of k and v are loaded into registers at once (see attend_split).
constexpr int kMaxPreHalf = 64;
constexpr int kPreDims = 64;
// Step 3 of attend_split gives each (head, dim pair) item `ways` consecutive threads, as many
// as the block's threads allow (a power of two, at most a warp): 1 at 8 heads of 64 dims.
__host__ __device__ constexpr int pv_ways(int heads, int D) {
  int ways = 1;
  while (ways < kWarp && heads * (D / 2) * ways * 2 <= kChunk) ways *= 2;
  return ways;
}
// v_s's row stride (elements): D plus a pad that puts the rows the `ways` threads of one item
// read at once in different banks (rows of 64 dims all start in bank 0); 16-byte rows.
__host__ __device__ constexpr int v_stride(int D, int ways) {
  return ways == 1 ? D : D + 2 * (kWarp / ways > 4 ? kWarp / ways : 4);
}
// attend_split's dynamic shared memory: q_s, o_s [HPB][D], p_s [HPB][kChunk] (f32), kv_new
// [2][D] (bf16: the new token's rotated k and its v), v_s [kChunk][v_stride] (bf16).
__host__ __device__ constexpr size_t smem_bytes(int hpb, int D) {
  return sizeof(float) * size_t(hpb) * size_t(2 * D + kChunk) +
         sizeof(__nv_bfloat16) *
             (2 * size_t(D) + size_t(kChunk) * size_t(v_stride(D, pv_ways(hpb, D))));
}

// Heads a block and key splits for B*Tn = BT query rows over kv_len cache positions.
struct Plan {
  int hpb, splits, chunks_per_split;
  int64_t base_blocks;  // blocks of one split: BT * K * head blocks
};
// The most heads a block (K/V chunks loaded once for more heads) that still gives a block an
// SM when every chunk is a split of its own, taken only for a group larger than the next
// smaller choice (8 for a group of 2 would only compute zero rows); else 1. Splits: enough
// blocks for two waves over the SMs, whole chunks a split. TL_DECODE_ATTN_HEADS=8|2|1 fixes
// the heads and TL_DECODE_ATTN_SPLITS=N caps the splits, for measurements.
Plan plan(int64_t BT, int H, int K, int kv_len, int sm_count);
}  // namespace attn

// RoPE of one (first, second) half pair at a position, rounded as a rotated bf16 row holds it.
__device__ __forceinline__ void rotate_pair(bf16& y1, bf16& y2, bf16 x1, bf16 x2, float cs,
                                            float sn) {
  const float a = to_f32(x1), c = to_f32(x2);
  y1 = from_f32<bf16>(a * cs - c * sn);
  y2 = from_f32<bf16>(c * cs + a * sn);
}

struct AttnArgs {
  const bf16* qkv;  // [BT, (H + 2K) * D], read only (through L2: a step in one launch wrote it)
  bf16* k_cache;    // [B, Tmax, K * D]
  bf16* v_cache;
  const float* cos;  // [Tmax', D / 2]
  const float* sin;
  const int32_t* pos;  // [B]
  int Tn, H, K, D, Tmax, kv_len, chunks_per_split;
  float scale;
};

// A block's keys: query row z sits at position p and reads keys [0, n_keys); its split holds
// [begin, end) (empty when begin >= end).
struct SplitSpan {
  int p, n_keys, begin, end;
  __device__ bool empty() const { return begin >= end; }
};
__device__ __forceinline__ SplitSpan split_span(const AttnArgs& a, int64_t z, int split) {
  const int p = a.pos[z / a.Tn] + int(z % a.Tn);
  const int n_keys = min(p + 1, a.kv_len);
  const int keys_per_split = a.chunks_per_split * attn::kChunk;
  const int begin = split * keys_per_split;
  return {p, n_keys, begin, min(n_keys, begin + keys_per_split)};
}
// How many of a row's splits hold keys (what the merge reads): the same for all its splits.
__device__ __forceinline__ int splits_with_keys(const AttnArgs& a, const SplitSpan& span) {
  const int keys_per_split = a.chunks_per_split * attn::kChunk;
  return (span.n_keys + keys_per_split - 1) / keys_per_split;
}

// What attend_split leaves for the merge besides o_s: per head of the block the running max
// and sum of the softmax (and scratch).
template <int HPB>
struct AttnShared {
  float m[HPB], l[HPB], alpha[HPB];
  float cs[attn::kMaxPreHalf], sn[attn::kMaxPreHalf];
};

// Block (query row z, head block hb, its split `span`) of 128 threads, threadIdx.x in [0, 128)
// (a kernel with more threads runs it on its first four warps; `sync` is a barrier of exactly
// those). `smem`: attn::smem_bytes(HPB, D) of dynamic shared memory. `wait` is called once
// before the first read of qkv or the caches (what an earlier kernel writes: pdl_wait, or
// nothing); pos and the rope tables are read before it. Returns o_s (the split's unnormalized
// output, [HPB][D] f32 in smem); sh.m, sh.l the max and sum per head; h0, nh the heads.
// With APPEND (one new token a row) the block whose split holds p rotates the new k and
// writes it and v into the caches, and uses them from shared memory. An empty span leaves
// o_s = 0, m = -inf, l = 0 (a cluster's member without keys still meets its barriers).
template <int W, bool APPEND, int HPB, class Wait, class Sync>
__device__ __forceinline__ float* attend_split(const AttnArgs& a, int64_t z, int hb,
                                               const SplitSpan& span, float* smem,
                                               AttnShared<HPB>& sh, int& h0, int& nh, Wait wait,
                                               Sync sync) {
  using namespace attn;
  const int D = a.D, H = a.H, K = a.K, Tmax = a.Tmax;
  float* q_s = smem;
  float* o_s = q_s + HPB * D;
  float* p_s = o_s + HPB * D;
  bf16* kv_new = reinterpret_cast<bf16*>(p_s + HPB * kChunk);  // [2][D]: rotated k, v
  bf16* v_s = kv_new + 2 * D;                                  // [kChunk][vstride]
  const int ways = pv_ways(HPB, D), vstride = v_stride(D, ways);

  const int64_t b = z / a.Tn;
  const int group = H / K, n_hc = (group + HPB - 1) / HPB;
  const int g = hb / n_hc;
  h0 = g * group + (hb % n_hc) * HPB;
  nh = min(HPB, (g + 1) * group - h0);
  const int p = span.p, s_begin = span.begin, s_end = span.end;
  const bool has_keys = !span.empty();
  const int half = D / 2;
  // The rope row at p, staged in shared memory (head dims up to 2 * kMaxPreHalf).
  const bool tables_s = half <= kMaxPreHalf;
  const float* cs = a.cos + int64_t(p) * half;
  const float* sn = a.sin + int64_t(p) * half;
  if (tables_s && has_keys)
    for (int i = threadIdx.x; i < half; i += kChunk) {
      sh.cs[i] = cs[i];
      sh.sn[i] = sn[i];
    }
  wait();  // qkv and the caches' rows come from earlier work

  const int64_t kvrow = int64_t(K) * D, row = int64_t(H + 2 * K) * D;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const bf16* x = a.qkv + z * row;
  const bf16* kbase = a.k_cache + b * Tmax * kvrow + int64_t(g) * D;
  const bf16* vbase = a.v_cache + b * Tmax * kvrow + int64_t(g) * D;
  // Key s0 + threadIdx.x's first kPre pieces of k and v, in registers (the rest, for head
  // dims over kPre * W, are loaded where they are used). With APPEND, the row of position p
  // is the new token's, which this block writes: its thread takes kv_new instead.
  // Decode only: prefill (many rows, 8 heads a block) keeps its registers for occupancy.
  constexpr int kPre = W == 8 && APPEND ? kPreDims / W : 0;
  Vec<bf16, W> kr[kPre > 0 ? kPre : 1], vr[kPre > 0 ? kPre : 1];
  const auto load_kv = [&](int s0) {
    if (int(threadIdx.x) < min(kChunk, s_end - s0)) {
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
  if (has_keys) load_kv(s_begin);
  sync();  // sh.cs, sh.sn: a thread below reads pairs other threads staged

  // The block's query heads rotated into q_s; with APPEND, the block whose split holds p also
  // rotates the new k into kv_new (and copies v) and writes both to the caches (blocks of
  // other head chunks of the same KV head write the same bytes). Items: (head j, pair i), j
  // in [0, HPB) the queries, HPB the new k, HPB + 1 the new v.
  const bool new_here = APPEND && p >= s_begin && p < s_end;
  for (int idx = threadIdx.x; idx < (HPB + 2) * half; idx += kChunk) {
    const int j = idx / half, i = idx % half;
    const auto c = [&] { return tables_s ? sh.cs[i] : cs[i]; };
    const auto s = [&] { return tables_s ? sh.sn[i] : sn[i]; };
    if (j < HPB) {
      bf16 y1 = from_f32<bf16>(0.0f), y2 = y1;
      if (j < nh && has_keys) {
        const bf16* q = x + int64_t(h0 + j) * D;
        rotate_pair(y1, y2, __ldcg(q + i), __ldcg(q + i + half), c(), s());
      }
      q_s[j * D + i] = to_f32(y1);
      q_s[j * D + i + half] = to_f32(y2);
    } else if (new_here && j == HPB) {
      const bf16* kx = x + int64_t(H + g) * D;
      rotate_pair(kv_new[i], kv_new[i + half], __ldcg(kx + i), __ldcg(kx + i + half), c(), s());
      bf16* kd = a.k_cache + (b * Tmax + p) * kvrow + int64_t(g) * D;
      kd[i] = kv_new[i];
      kd[i + half] = kv_new[i + half];
    } else if (new_here) {
      const bf16* vx = x + int64_t(H + K + g) * D;
      bf16* vd = a.v_cache + (b * Tmax + p) * kvrow + int64_t(g) * D;
      const bf16 v1 = __ldcg(vx + i), v2 = __ldcg(vx + i + half);
      kv_new[D + i] = vd[i] = v1;
      kv_new[D + i + half] = vd[i + half] = v2;
    }
  }
  for (int idx = threadIdx.x; idx < HPB * D; idx += kChunk) o_s[idx] = 0.0f;
  if (threadIdx.x < HPB) {
    sh.m[threadIdx.x] = -INFINITY;
    sh.l[threadIdx.x] = 0.0f;
  }
  sync();  // q_s, kv_new

  for (int s0 = s_begin; s0 < s_end; s0 += kChunk) {
    const int n = min(kChunk, s_end - s0);
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
#pragma unroll  // acc indexed by constants only: it stays in registers
    for (int j = 0; j < HPB; ++j)
      if (j < nh)
        p_s[j * kChunk + threadIdx.x] = int(threadIdx.x) < n ? acc[j] * a.scale : -INFINITY;
    sync();
    // 2. online softmax, one warp per head
    for (int j = warp; j < nh; j += kChunk / kWarp) {
      float* pj = p_s + j * kChunk;
      float m = -INFINITY;
      for (int i = lane; i < kChunk; i += kWarp) m = fmaxf(m, pj[i]);
      m = fmaxf(warp_max(m), sh.m[j]);  // finite: the chunk has at least one key
      float l = 0.0f;
      for (int i = lane; i < kChunk; i += kWarp) {
        const float e = expf(pj[i] - m);
        pj[i] = e;
        l += e;
      }
      l = warp_sum(l);
      if (lane == 0) {
        const float alpha = expf(sh.m[j] - m);  // 0 on the first chunk
        sh.alpha[j] = alpha;
        sh.l[j] = sh.l[j] * alpha + l;
        sh.m[j] = m;
      }
    }
    sync();
    // 3. o = o * alpha + p . V over this chunk. Each (head, dim pair) belongs to `ways`
    // consecutive threads (pv_ways: from HPB, so a block with fewer heads leaves some idle)
    // that take every ways-th key and add up by butterflies, in a fixed order; the loop's
    // trip count is the same for every thread, as the shuffles need.
    const int items = nh * half;
    for (int t0 = 0; t0 < items * ways; t0 += kChunk) {
      const int item = (t0 + int(threadIdx.x)) / ways, sub = (t0 + int(threadIdx.x)) % ways;
      const int j = item / half, d = (item % half) * 2;
      float o0 = 0.0f, o1 = 0.0f;
      if (item < items) {
        const float* pj = p_s + j * kChunk;
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
        float* o = o_s + j * D + d;
        o[0] = o[0] * sh.alpha[j] + o0;
        o[1] = o[1] * sh.alpha[j] + o1;
      }
    }
    sync();
  }
  return o_s;
}

// A split's partial results: for query row z's heads [h0, h0 + nh), the unnormalized output
// o_s [nh][D] into part_o[BT, H, splits, D] and the max and sum into part_ml[BT, H, splits, 2]
// at this split. Threads [0, kChunk).
__device__ __forceinline__ void store_partials(float* part_o, float* part_ml, const float* o_s,
                                               const float* m_s, const float* l_s, int64_t z, int H,
                                               int h0, int nh, int D, int splits, int split) {
  for (int idx = threadIdx.x; idx < nh * D; idx += attn::kChunk) {
    const int j = idx / D, d = idx % D;
    const int64_t slot = (z * H + h0 + j) * splits + split;
    part_o[slot * D + d] = o_s[idx];
    if (d == 0) {
      part_ml[2 * slot] = m_s[j];
      part_ml[2 * slot + 1] = l_s[j];
    }
  }
}

// Dim d of head row `row` (z * H + h) merged over its first `used` splits, in split order,
// normalized: the attention output. The partials are read through L2 (other blocks wrote
// them during the same launch).
__device__ __forceinline__ float merge_partials(const float* part_o, const float* part_ml,
                                                int64_t row, int splits, int used, int D, int d) {
  const int64_t base = row * splits;
  float m = -INFINITY;
  for (int c = 0; c < used; ++c) m = fmaxf(m, __ldcg(part_ml + 2 * (base + c)));
  float l = 0.0f, o = 0.0f;
  for (int c = 0; c < used; ++c) {
    const float w = expf(__ldcg(part_ml + 2 * (base + c)) - m);
    l += __ldcg(part_ml + 2 * (base + c) + 1) * w;
    o += __ldcg(part_o + (base + c) * D + d) * w;
  }
  return o / l;
}

}  // namespace tl::gpu
