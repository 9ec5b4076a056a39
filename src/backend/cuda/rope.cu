// Rotary position embedding (rotate-half), in place on the q and k heads of a packed qkv.
#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

// ---- kernels ----

// Thread = (token, q-or-k head, W-wide slice i of the first half): rotates the pairs
// (i + e, i + e + D/2) by angle sign * theta(pos0 + t, i + e).
// qkv[BT, (H+2K)*D]; heads 0..H+K-1 are q then k; cos,sin[Tmax, D/2].
template <int W>
__global__ void rope_kernel(bf16* qkv, const float* cos, const float* sin, int64_t BT, int T,
                            int n_rot_heads, int row_width, int D, int pos0, float sign) {
  const int half = D / 2, nv = half / W;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= BT * n_rot_heads * nv) return;
  const int i = int(idx % nv) * W;
  const int64_t hv = idx / nv;
  const int h = int(hv % n_rot_heads);
  const int64_t bt = hv / n_rot_heads;
  const int64_t pos = pos0 + bt % T;
  bf16* p = qkv + bt * row_width + int64_t(h) * D + i;
  const Vec<bf16, W> x1 = load_vec<W>(p), x2 = load_vec<W>(p + half);
  const Vec<float, W> c = load_vec<W>(cos + pos * half + i), s = load_vec<W>(sin + pos * half + i);
  Vec<bf16, W> y1, y2;
#pragma unroll
  for (int e = 0; e < W; ++e) {
    const float a = to_f32(x1.v[e]), b = to_f32(x2.v[e]), sn = sign * s.v[e];
    y1.v[e] = from_f32<bf16>(a * c.v[e] - b * sn);
    y2.v[e] = from_f32<bf16>(b * c.v[e] + a * sn);
  }
  store_vec<W>(p, y1);
  store_vec<W>(p + half, y2);
}

// ---- launchers ----

void rope(Tensor qkv, Tensor cos, Tensor sin, int H, int K, int pos0, bool inverse, const char* op,
          cudaStream_t stream) {
  const char* name = inverse ? "dqkv" : "qkv";
  check_cuda(op, name, qkv, DType::BF16);
  TL_CHECK(qkv.ndim() == 3, op, ": ", name, " must be [B, T, (H + 2K) * D], got ", qkv.str());
  TL_CHECK(H > 0 && K > 0 && H % K == 0, op, ": n_head (", H,
           ") must be a positive multiple of n_kv_head (", K, ")");
  const int64_t width = qkv.dim(2);
  TL_CHECK(width > 0 && width % (H + 2 * K) == 0, op, ": ", name, " row width ", width,
           " is not (n_head + 2 * n_kv_head) * head_dim with n_head ", H, ", n_kv_head ", K);
  check_int_range(op, "row width", width);
  const int D = int(width / (H + 2 * K));
  TL_CHECK(D % 2 == 0, op, ": head_dim ", D, " must be even");
  check_cuda(op, "cos", cos, DType::F32);
  check_cuda(op, "sin", sin, DType::F32);
  TL_CHECK(cos.ndim() == 2 && cos.dim(1) == D / 2, op, ": cos must be [Tmax, ", D / 2, "], got ",
           cos.str());
  check_shape(op, "sin", sin, cos.shape);
  const int64_t B = qkv.dim(0), T = qkv.dim(1);
  TL_CHECK(pos0 >= 0 && pos0 + T <= cos.dim(0), op, ": positions [", pos0, ", ", pos0 + T,
           ") exceed the tables' ", cos.dim(0), " rows");
  const int64_t BT = B * T;
  if (BT == 0) return;
  const int half = D / 2;
  const int n_rot = H + K;  // value heads are not rotated
  const float sign = inverse ? -1.0f : 1.0f;
  constexpr int kThreads = 256;
  if (half % 8 == 0 && aligned16(qkv.data) && aligned16(cos.data) && aligned16(sin.data)) {
    const int64_t n = BT * n_rot * (half / 8);
    rope_kernel<8><<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(
        qkv.ptr<bf16>(), cos.ptr<float>(), sin.ptr<float>(), BT, int(T), n_rot, int(width), D, pos0,
        sign);
  } else {
    const int64_t n = BT * n_rot * half;
    rope_kernel<1><<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(
        qkv.ptr<bf16>(), cos.ptr<float>(), sin.ptr<float>(), BT, int(T), n_rot, int(width), D, pos0,
        sign);
  }
  TL_CUDA_LAUNCH_CHECK();
}

}  // namespace tl::gpu
