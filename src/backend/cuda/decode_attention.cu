// attention_decode: attention of a few new tokens per row over a KV cache, for generation.
// Block = (query row, KV head with up to HPB of its query heads, split of the keys), 128
// threads; HPB = 8, or 2 or 1 when there are too few rows to fill the GPU otherwise (a
// batch-1 step: 4 KV heads x 3 splits were 12 blocks for 132 SMs, each doing 8 heads' work in
// series). TL_DECODE_ATTN_HEADS=8|2|1 fixes it and TL_DECODE_ATTN_SPLITS=N caps the key
// splits, for measurements. It rotates its query heads (RoPE at the row's position) into
// shared memory, then walks the split's keys 128 at a time: thread j
// scores key j against the block's heads, one warp per head turns the scores into an online
// softmax, then every thread accumulates a few (head, 2 dims) of p.V. Decoding (few query rows)
// splits the keys over enough blocks to fill the GPU (flash-decoding); prefill (many rows) keeps
// one split per row. With several splits they merge in split order: each block writes its
// (max, sum, output) to global memory and the last of a row's splits to finish (a counter per
// row and head block) merges them. With TL_DECODE_ATTN_CLUSTER=1 on sm_90 a row's splits are
// one thread block cluster instead and split 0 reads the others' from their shared memory:
// the same bits, but off by default, as it lost on an H100 (2026-12-07: batch 32 -8.5%,
// batch 1 unchanged; bench/RESULTS.md). The
// new k (rotated) and v go into the caches. With one new token a row (decoding) the blocks
// whose split holds its position write them and use them from shared memory, so a decode
// step's attention is one launch; with more (prefill), whose queries read each other's keys,
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
#include "backend/cuda/decode_attention.cuh"
#include "backend/cuda/decode_attention.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

using namespace attn;

namespace {
constexpr size_t kMaxSmem = 160 * 1024;  // head dims up to ~500 (sm_80 and sm_90 have more)
// A row's splits merge through distributed shared memory when they fit one cluster (sm_90).
constexpr int kMaxClusterSplits = 8;
}  // namespace

// ---- kernels ----

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
  store_partials(part_o, part_ml, o_s, m_s, l_s, z, H, h0, nh, D, splits, int(blockIdx.z));
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
    const int64_t row = z * H + h0 + j;
    out[row * D + d] = from_f32<bf16>(merge_partials(part_o, part_ml, row, splits, used, D, d));
  }
}

// grid (B*Tn query rows, K * head blocks, splits); block kChunk threads. APPEND: one new token
// a row, whose k and v this kernel writes (see the top). HPB: query heads a block takes.
// CLUSTER (sm_90): a row's splits are one thread block cluster and merge through distributed
// shared memory; else through global memory and a counter (see below).
// Dynamic shared memory: attn::smem_bytes(HPB, D) (attend_split's).
// One split: the normalized result goes to out[BT,H*D]. Several, without clusters: each
// split's unnormalized output to part_o[BT,H,splits,D] and (max, sum) to part_ml[BT,H,splits,2];
// counters[BT, K * head blocks] (zero between launches) find the last split of a row, which
// merges them into out.
// The chain a block waits on is kept short, since at batch 1 the kernel is all latency:
// pos and the rope tables (no kernel of the step writes them: pos is uploaded before the
// step's first kernel) are read before pdl_wait(); after it the first pass's keys and values
// (kPre pieces a thread, in registers), q and the new k and v are all loaded at once.
template <int W, bool APPEND, int HPB, bool CLUSTER>
__global__ void __launch_bounds__(kChunk)
    decode_attention_kernel(bf16* out, float* part_o, float* part_ml, unsigned* counters,
                            AttnArgs a) {
  extern __shared__ __align__(16) float smem[];
  __shared__ AttnShared<HPB> sh;
  __shared__ bool last_s;
  pdl_launch_dependents();

  const int64_t z = blockIdx.x;  // query row b * Tn + t
  const SplitSpan span = split_span(a, z, int(blockIdx.z));
  // A split with no keys of this row (same for all threads) has nothing to do; in a cluster
  // it still meets the cluster's barriers.
  if (!CLUSTER && span.empty()) return;
  int h0 = 0, nh = 0;
  float* o_s = attend_split<W, APPEND, HPB>(
      a, z, int(blockIdx.y), span, smem, sh, h0, nh, [] { pdl_wait(); }, [] { __syncthreads(); });
  const int H = a.H, D = a.D;
  float* m_s = sh.m;
  float* l_s = sh.l;

  const int splits = int(gridDim.z);
  if (splits == 1) {
    for (int idx = threadIdx.x; idx < nh * D; idx += blockDim.x)
      out[(z * H + h0 + idx / D) * D + idx % D] = from_f32<bf16>(o_s[idx] / l_s[idx / D]);
    return;
  }
  const int used = splits_with_keys(a, span);
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

attn::Plan attn::plan(int64_t BT, int H, int K, int kv_len, int sm_count) {
  const int group = H / K;
  const int chunks = int(ceil_div(kv_len, kChunk));
  int hpb = 1;
  for (const auto& [h, smaller] : {std::pair{kHeadsPerBlock, 2}, std::pair{2, 1}})
    if (hpb == 1 && group > smaller && BT * K * ceil_div(group, h) * chunks >= sm_count) hpb = h;
  if (const char* e = std::getenv("TL_DECODE_ATTN_HEADS")) {
    const int h = std::atoi(e);
    if (h == 8 || h == 2 || h == 1) hpb = h;
  }
  const int n_hc = (group + hpb - 1) / hpb;
  const int64_t base_blocks = BT * K * n_hc;
  int splits =
      int(std::min<int64_t>(chunks, std::max<int64_t>(1, ceil_div(2 * sm_count, base_blocks))));
  // TL_DECODE_ATTN_SPLITS=1: no merge phase, each block walks all of its row's keys.
  if (const char* e = std::getenv("TL_DECODE_ATTN_SPLITS"))
    if (std::atoi(e) > 0) splits = std::min(splits, std::atoi(e));
  const int chunks_per_split = int(ceil_div(chunks, splits));
  splits = int(ceil_div(chunks, chunks_per_split));
  return {hpb, splits, chunks_per_split, base_blocks};
}

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
                      Scratch& scratch, Scratch& counters_scratch, cudaStream_t stream) {
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

  const Plan plan = attn::plan(BT, H, K, kv_len, sm_count);
  const int hpb = plan.hpb, group = H / K, n_hc = (group + hpb - 1) / hpb;
  const int splits = plan.splits;
  const int64_t base_blocks = plan.base_blocks;
  // TL_DECODE_ATTN_CLUSTER=1: a row's splits merge in one thread block cluster where they fit
  // one (at most kMaxClusterSplits; more, at long contexts, keep the global merge rather than
  // fewer blocks), the device runs clusters and the cluster kernel was compiled for it (sm_90
  // code: a build without it carries only the merge through global memory), and the
  // kernel's 16-byte path runs. Off by default: it measured slower (see the top).
  const bool vec8 = D % 8 == 0 && aligned16(k_cache.data);
  const char* cl = std::getenv("TL_DECODE_ATTN_CLUSTER");
  const bool cluster = vec8 && splits > 1 && splits <= kMaxClusterSplits && cl &&
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
  const size_t smem = attn::smem_bytes(hpb, D);
  TL_CHECK(smem <= kMaxSmem, op, ": head_dim ", D, " needs ", smem,
           " bytes of shared memory, more than ", kMaxSmem);
  const dim3 grid(unsigned(BT), unsigned(K * n_hc), unsigned(splits));
  const float scale = 1.0f / sqrtf(float(D));
  auto pick = [&](auto hpb_c) {
    constexpr int P = decltype(hpb_c)::value;
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
  const AttnArgs args{qkv.ptr<bf16>(),
                      k_cache.ptr<bf16>(),
                      v_cache.ptr<bf16>(),
                      cos.ptr<float>(),
                      sin.ptr<float>(),
                      pos.ptr<int32_t>(),
                      int(Tn),
                      H,
                      K,
                      D,
                      int(Tmax),
                      kv_len,
                      plan.chunks_per_split,
                      scale};
  launch_pdl_clusters(kernel, grid, dim3(1, 1, cluster ? unsigned(splits) : 1u), dim3(kChunk), smem,
                      stream, out.ptr<bf16>(), part_o, part_ml, counters, args);
}

}  // namespace tl::gpu
