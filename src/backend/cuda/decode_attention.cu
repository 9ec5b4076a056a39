// attention_decode: attention of a few new tokens per row over a KV cache, for generation.
// 1. rope_append_kernel rotates the new q and k (at each row's own positions) and appends
//    k and v to the caches.
// 2. decode_attention_kernel: block = (query row, KV head with up to 8 of its query heads,
//    split of the keys). Its 128 threads walk the split's keys 128 at a time: thread j
//    scores key j against the block's query heads, one warp per head turns the scores into
//    an online softmax, then every thread accumulates a few (head, 2 dims) of p.V.
//    Decoding (few query rows) splits the keys over enough blocks to fill the GPU
//    (flash-decoding); prefill (many rows) keeps one split per row.
// 3. decode_combine_kernel merges the splits' (max, sum, output) in split order.
// Any even head dim; everything is deterministic (fixed orders, no atomics).
#include <algorithm>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/decode_attention.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {
constexpr int kChunk = 128;        // keys per pass = threads per block
constexpr int kHeadsPerBlock = 8;  // query heads (of one KV group) sharing a block's keys
}  // namespace

// ---- kernels ----

// Thread = (token bt, head hh of the H + 2K in a qkv row, pair i of D/2). Position
// p = pos[b] + t. q and k heads are rotated in place (rotate-half, as rope_kernel); k and
// v heads are then copied to row p of their cache. qkv[BT,(H+2K)*D]; caches[B,Tmax,K*D].
__global__ void rope_append_kernel(bf16* qkv, bf16* k_cache, bf16* v_cache, const float* cos,
                                   const float* sin, const int32_t* pos, int64_t BT, int Tn, int H,
                                   int K, int D, int Tmax, int kv_len) {
  const int half = D / 2, heads = H + 2 * K;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= BT * heads * half) return;
  const int i = int(idx % half);
  const int hh = int((idx / half) % heads);
  const int64_t bt = idx / (int64_t(half) * heads);
  const int64_t b = bt / Tn;
  const int p = pos[b] + int(bt % Tn);
  if (p < 0 || p >= kv_len) return;  // broken precondition: never write outside the cache
  bf16* x = qkv + bt * heads * D + int64_t(hh) * D;
  bf16 y1 = x[i], y2 = x[i + half];
  if (hh < H + K) {
    const float a = to_f32(y1), c = to_f32(y2);
    const float cs = cos[int64_t(p) * half + i], sn = sin[int64_t(p) * half + i];
    y1 = from_f32<bf16>(a * cs - c * sn);
    y2 = from_f32<bf16>(c * cs + a * sn);
    x[i] = y1;
    x[i + half] = y2;
  }
  if (hh >= H) {
    const bool is_k = hh < H + K;
    bf16* dst = (is_k ? k_cache : v_cache) + (b * Tmax + p) * int64_t(K) * D +
                int64_t(is_k ? hh - H : hh - H - K) * D;
    dst[i] = y1;
    dst[i + half] = y2;
  }
}

// grid (B*Tn query rows, K * head chunks, splits); block kChunk threads.
// Dynamic shared memory: q_s, o_s [kHeadsPerBlock][D], p_s [kHeadsPerBlock][kChunk] (f32).
// With one split the normalized result goes to out[BT,H*D]; otherwise the split's
// unnormalized output to part_o[BT,H,splits,D] and (max, sum) to part_ml[BT,H,splits,2].
template <int W>
__global__ void __launch_bounds__(kChunk)
    decode_attention_kernel(bf16* out, float* part_o, float* part_ml, const bf16* qkv,
                            const bf16* k_cache, const bf16* v_cache, const int32_t* pos, int Tn,
                            int H, int K, int D, int Tmax, int kv_len, int chunks_per_split,
                            float scale) {
  extern __shared__ float smem[];
  float* q_s = smem;
  float* o_s = q_s + kHeadsPerBlock * D;
  float* p_s = o_s + kHeadsPerBlock * D;
  __shared__ float m_s[kHeadsPerBlock], l_s[kHeadsPerBlock], alpha_s[kHeadsPerBlock];

  const int64_t z = blockIdx.x;  // query row b * Tn + t
  const int64_t b = z / Tn;
  const int group = H / K, n_hc = (group + kHeadsPerBlock - 1) / kHeadsPerBlock;
  const int g = int(blockIdx.y) / n_hc;
  const int h0 = g * group + (int(blockIdx.y) % n_hc) * kHeadsPerBlock;
  const int nh = min(kHeadsPerBlock, (g + 1) * group - h0);
  const int n_keys = min(pos[b] + int(z % Tn) + 1, kv_len);
  const int s_begin = int(blockIdx.z) * chunks_per_split * kChunk;
  const int s_end = min(n_keys, s_begin + chunks_per_split * kChunk);
  if (s_begin >= s_end) return;  // this row has no keys in this split (same for all threads)
  const int64_t kvrow = int64_t(K) * D, row = int64_t(H + 2 * K) * D;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;

  for (int idx = threadIdx.x; idx < kHeadsPerBlock * D; idx += blockDim.x) {
    const int j = idx / D;
    q_s[idx] = j < nh ? to_f32(qkv[z * row + int64_t(h0) * D + idx]) : 0.0f;
    o_s[idx] = 0.0f;
  }
  if (threadIdx.x < kHeadsPerBlock) {
    m_s[threadIdx.x] = -INFINITY;
    l_s[threadIdx.x] = 0.0f;
  }
  __syncthreads();

  const bf16* kbase = k_cache + b * Tmax * kvrow + int64_t(g) * D;
  const bf16* vbase = v_cache + b * Tmax * kvrow + int64_t(g) * D;
  for (int s0 = s_begin; s0 < s_end; s0 += kChunk) {
    const int n = min(kChunk, s_end - s0);
    // 1. scores of key s0 + threadIdx.x against the block's heads
    float acc[kHeadsPerBlock];
#pragma unroll
    for (int j = 0; j < kHeadsPerBlock; ++j) acc[j] = 0.0f;
    if (int(threadIdx.x) < n) {
      const bf16* k = kbase + int64_t(s0 + threadIdx.x) * kvrow;
      for (int d = 0; d < D; d += W) {
        const Vec<bf16, W> kv = load_vec<W>(k + d);
#pragma unroll
        for (int e = 0; e < W; ++e) {
          const float kf = to_f32(kv.v[e]);
#pragma unroll
          for (int j = 0; j < kHeadsPerBlock; ++j) acc[j] += q_s[j * D + d + e] * kf;
        }
      }
    }
    for (int j = 0; j < nh; ++j)
      p_s[j * kChunk + threadIdx.x] = int(threadIdx.x) < n ? acc[j] * scale : -INFINITY;
    __syncthreads();
    // 2. online softmax, one warp per head
    for (int j = warp; j < nh; j += kChunk / kWarp) {
      float* pj = p_s + j * kChunk;
      float m = -INFINITY;
      for (int i = lane; i < kChunk; i += kWarp) m = fmaxf(m, pj[i]);
      m = fmaxf(warp_max(m), m_s[j]);  // finite: the chunk has at least one key
      float l = 0.0f;
      for (int i = lane; i < kChunk; i += kWarp) {
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
    // 3. o = o * alpha + p . V over this chunk; each (head, dim pair) has one owner thread
    for (int idx = threadIdx.x; idx < nh * (D / 2); idx += blockDim.x) {
      const int j = idx / (D / 2), d = (idx % (D / 2)) * 2;
      const float* pj = p_s + j * kChunk;
      const bf16* v = vbase + int64_t(s0) * kvrow + d;
      float o0 = 0.0f, o1 = 0.0f;
      for (int i = 0; i < n; ++i) {
        const __nv_bfloat162 vv = *reinterpret_cast<const __nv_bfloat162*>(v + i * kvrow);
        o0 += pj[i] * __low2float(vv);
        o1 += pj[i] * __high2float(vv);
      }
      float* o = o_s + j * D + d;
      o[0] = o[0] * alpha_s[j] + o0;
      o[1] = o[1] * alpha_s[j] + o1;
    }
    __syncthreads();
  }

  const int splits = int(gridDim.z);
  for (int idx = threadIdx.x; idx < nh * D; idx += blockDim.x) {
    const int j = idx / D, d = idx % D;
    const int64_t zh = z * H + h0 + j;
    if (splits == 1) {
      out[zh * D + d] = from_f32<bf16>(o_s[idx] / l_s[j]);
    } else {
      const int64_t slot = zh * splits + blockIdx.z;
      part_o[slot * D + d] = o_s[idx];
      if (d == 0) {
        part_ml[2 * slot] = m_s[j];
        part_ml[2 * slot + 1] = l_s[j];
      }
    }
  }
}

// Block = (query row z, head h); threads stride over D. Merges the non-empty splits in order.
__global__ void decode_combine_kernel(bf16* out, const float* part_o, const float* part_ml,
                                      const int32_t* pos, int Tn, int H, int D, int kv_len,
                                      int splits, int keys_per_split) {
  const int64_t z = blockIdx.x / H;
  const int h = int(blockIdx.x % H);
  const int n_keys = min(pos[z / Tn] + int(z % Tn) + 1, kv_len);
  const int used = min(splits, (n_keys + keys_per_split - 1) / keys_per_split);
  const int64_t base = (z * H + h) * splits;
  float m = -INFINITY;
  for (int c = 0; c < used; ++c) m = fmaxf(m, part_ml[2 * (base + c)]);
  float l = 0.0f;
  for (int c = 0; c < used; ++c)
    l += part_ml[2 * (base + c) + 1] * expf(part_ml[2 * (base + c)] - m);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.0f;
    for (int c = 0; c < used; ++c)
      o += part_o[(base + c) * D + d] * expf(part_ml[2 * (base + c)] - m);
    out[(z * H + h) * D + d] = from_f32<bf16>(o / l);
  }
}

// ---- launcher ----

void attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor cos,
                      Tensor sin, Tensor pos, int kv_len, int H, int K, int sm_count,
                      Scratch& scratch, cudaStream_t stream) {
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

  constexpr int kThreads = 256;
  const int64_t n_rope = BT * (H + 2 * K) * (D / 2);
  rope_append_kernel<<<unsigned(ceil_div(n_rope, kThreads)), kThreads, 0, stream>>>(
      qkv.ptr<bf16>(), k_cache.ptr<bf16>(), v_cache.ptr<bf16>(), cos.ptr<float>(), sin.ptr<float>(),
      pos.ptr<int32_t>(), BT, int(Tn), H, K, D, int(Tmax), kv_len);
  TL_CUDA_LAUNCH_CHECK();

  // Splits: enough blocks for two waves over the SMs, whole chunks per split.
  const int group = H / K, n_hc = (group + kHeadsPerBlock - 1) / kHeadsPerBlock;
  const int64_t base_blocks = BT * K * n_hc;
  const int chunks = int(ceil_div(kv_len, kChunk));
  int splits =
      int(std::min<int64_t>(chunks, std::max<int64_t>(1, ceil_div(2 * sm_count, base_blocks))));
  const int chunks_per_split = int(ceil_div(chunks, splits));
  splits = int(ceil_div(chunks, chunks_per_split));
  TL_CHECK(splits <= 65535 && K * n_hc <= 65535, op, ": grid too large (", splits, " splits, ",
           K * n_hc, " head blocks)");
  float *part_o = nullptr, *part_ml = nullptr;
  if (splits > 1) {
    const int64_t slots = BT * H * splits;
    part_o = scratch.get_as<float>(size_t(slots) * size_t(D + 2), stream);
    part_ml = part_o + slots * D;
  }
  const size_t smem = sizeof(float) * size_t(kHeadsPerBlock) * size_t(2 * D + kChunk);
  TL_CHECK(smem <= 48 * 1024, op, ": head_dim ", D, " needs ", smem,
           " bytes of shared memory, more than 48 KiB");
  const dim3 grid(unsigned(BT), unsigned(K * n_hc), unsigned(splits));
  const float scale = 1.0f / sqrtf(float(D));
  const bool vec8 = D % 8 == 0 && aligned16(k_cache.data);
  if (vec8)
    decode_attention_kernel<8><<<grid, kChunk, smem, stream>>>(
        out.ptr<bf16>(), part_o, part_ml, qkv.ptr<bf16>(), k_cache.ptr<bf16>(), v_cache.ptr<bf16>(),
        pos.ptr<int32_t>(), int(Tn), H, K, D, int(Tmax), kv_len, chunks_per_split, scale);
  else
    decode_attention_kernel<2><<<grid, kChunk, smem, stream>>>(
        out.ptr<bf16>(), part_o, part_ml, qkv.ptr<bf16>(), k_cache.ptr<bf16>(), v_cache.ptr<bf16>(),
        pos.ptr<int32_t>(), int(Tn), H, K, D, int(Tmax), kv_len, chunks_per_split, scale);
  TL_CUDA_LAUNCH_CHECK();
  if (splits > 1) {
    const int threads = int(std::min<int64_t>(128, ceil_div(D, kWarp) * kWarp));
    decode_combine_kernel<<<unsigned(BT * H), threads, 0, stream>>>(
        out.ptr<bf16>(), part_o, part_ml, pos.ptr<int32_t>(), int(Tn), H, D, kv_len, splits,
        chunks_per_split * kChunk);
    TL_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace tl::gpu
