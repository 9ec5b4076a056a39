// SwiGLU: out = silu(g) * u with g = gate_up[:, :I], u = gate_up[:, I:] side by side.
#include <algorithm>
#include <initializer_list>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/fp8_codes.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/vec.cuh"
#include "backend/fp8_args.h"

namespace tl::gpu {

// ---- kernels ----

// Where a kernel below puts its results: bf16 values (the plain ops), or the FP8 codes of
// those bf16 values (the producers, Fp8Cast in backend.h: the codes, scale_inv and amax that
// fp8_quantize would give for the plain op's output). Every thread calls begin() and end()
// (the codes' amax is a block reduction), so the kernels have no early exit.
struct Bf16Out {
  bf16* base;
  __device__ void begin() {}
  template <int W>
  __device__ void put(int64_t at, const float (&y)[W]) {
    Vec<bf16, W> v;
#pragma unroll
    for (int e = 0; e < W; ++e) v.v[e] = from_f32<bf16>(y[e]);
    store_vec<W>(base + at, v);
  }
  __device__ void end() {}
};

// y's code as fp8_quantize gives it for the bf16 value the plain op would write; m takes |y|.
__device__ __forceinline__ uint8_t code_of(float y, float s, __nv_fp8_interpretation_t fmt,
                                           unsigned& m) {
  const float v = to_f32(from_f32<bf16>(y));
  m = max(m, abs_bits(v));
  return quantize1(v, s, fmt);
}

struct CodesOut {
  QuantizeArgs a;  // a.out: the codes, laid out as the bf16 output would be
  float s = 0.0f;
  unsigned m = 0;
  __device__ void begin() { s = begin_quantize(a); }
  template <int W>
  __device__ void put(int64_t at, const float (&y)[W]) {
    Vec<uint8_t, W> q;
#pragma unroll
    for (int e = 0; e < W; ++e) q.v[e] = code_of(y[e], s, a.fmt, m);
    store_vec<W>(a.out + at, q);
  }
  __device__ void end() { end_quantize(a, s, m); }
};

// Thread = one W-wide slice of one row. out: [N,I], gate_up [N,2I].
template <int W, class Out>
__global__ void swiglu_forward_kernel(Out out, const bf16* gate_up, int64_t N, int I) {
  out.begin();
  const int nv = I / W;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx < N * nv) {
    const int64_t n = idx / nv;
    const int i = int(idx % nv) * W;
    const bf16* g_row = gate_up + n * 2 * I;
    const Vec<bf16, W> g = load_vec<W>(g_row + i), u = load_vec<W>(g_row + I + i);
    float y[W];
#pragma unroll
    for (int e = 0; e < W; ++e) y[e] = swiglu1(to_f32(g.v[e]), to_f32(u.v[e]));
    out.template put<W>(n * I + i, y);
  }
  out.end();
}

// The gradient, element by element (swiglu_grad1 in vec.cuh).
// dgate_up: [N,2I] (=), dout [N,I], gate_up [N,2I].
template <int W, class Out>
__global__ void swiglu_backward_kernel(Out dgate_up, const bf16* dout, const bf16* gate_up,
                                       int64_t N, int I) {
  dgate_up.begin();
  const int nv = I / W;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx < N * nv) {
    const int64_t n = idx / nv;
    const int i = int(idx % nv) * W;
    const bf16* g_row = gate_up + n * 2 * I;
    const Vec<bf16, W> g = load_vec<W>(g_row + i), u = load_vec<W>(g_row + I + i);
    const Vec<bf16, W> dy = load_vec<W>(dout + n * I + i);
    float dg[W], du[W];
#pragma unroll
    for (int e = 0; e < W; ++e)
      swiglu_grad1(to_f32(g.v[e]), to_f32(u.v[e]), to_f32(dy.v[e]), dg[e], du[e]);
    dgate_up.template put<W>(n * 2 * I + i, dg);
    dgate_up.template put<W>(n * 2 * I + I + i, du);
  }
  dgate_up.end();
}

// The producers' codes in both layouts at once (a.out [N, W], a.out_t [W, N]; W = I forward,
// 2I backward): a block of 256 threads takes a 64 x 64 tile of the [N, I] positions, 8
// threads a row, 8 positions each (quantize_t_vec_kernel's layout); the codes go straight to
// a.out and through shared memory to a.out_t, so the weight gradient's transposed operand
// costs no transpose pass. Backward stages dg's and du's tiles (rows [0, I) and [I, 2I) of
// a.out_t). N % 16 == 0, I % 8 == 0, every operand 16-byte aligned.
template <bool Backward>
__global__ void __launch_bounds__(kTTThreads)
    swiglu_both_kernel(QuantizeArgs a, const bf16* dout, const bf16* gate_up, int64_t N, int I) {
  __shared__ __align__(16) uint8_t tile[Backward ? 2 : 1][kTT * kTTStride];
  const float s = begin_quantize(a);
  const int t = threadIdx.x;
  const int64_t c0 = int64_t(blockIdx.x) * kTT, r0 = int64_t(blockIdx.y) * kTT;
  const int cv = (t % (kTT / kVec)) * kVec;
  const int64_t W = Backward ? 2 * int64_t(I) : I;
  unsigned m = 0;
  if (c0 + cv < I)
    for (int j = t / (kTT / kVec); j < kTT && r0 + j < N; j += kTTThreads / (kTT / kVec)) {
      const int64_t n = r0 + j, i = c0 + cv;
      const bf16* g_row = gate_up + n * 2 * I;
      const Vec<bf16, kVec> g = load_vec<kVec>(g_row + i), u = load_vec<kVec>(g_row + I + i);
      Vec<uint8_t, kVec> q0, q1;
      if constexpr (Backward) {
        const Vec<bf16, kVec> dy = load_vec<kVec>(dout + n * I + i);
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          float dg, du;
          swiglu_grad1(to_f32(g.v[e]), to_f32(u.v[e]), to_f32(dy.v[e]), dg, du);
          q0.v[e] = code_of(dg, s, a.fmt, m);
          q1.v[e] = code_of(du, s, a.fmt, m);
        }
        store_vec<kVec>(a.out + n * W + I + i, q1);
        stage_tile8(tile[1], j, cv, q1);
      } else {
#pragma unroll
        for (int e = 0; e < kVec; ++e)
          q0.v[e] = code_of(swiglu1(to_f32(g.v[e]), to_f32(u.v[e])), s, a.fmt, m);
      }
      store_vec<kVec>(a.out + n * W + i, q0);
      stage_tile8(tile[0], j, cv, q0);
    }
  end_quantize(a, s, m);
  __syncthreads();
  store_tile_column(a.out_t, tile[0], t, N, I, r0, c0);
  if constexpr (Backward) store_tile_column(a.out_t + int64_t(I) * N, tile[1], t, N, I, r0, c0);
}

// ---- launchers ----

// Checks gate_up [rows..., 2I]; returns I.
static int check_gate_up(const char* op, const Tensor& gate_up) {
  check_cuda(op, "gate_up", gate_up, DType::BF16);
  check_rows(op, "gate_up", gate_up);
  TL_CHECK(gate_up.dim(-1) % 2 == 0, op, ": gate_up's last dimension must be 2 * I, got ",
           gate_up.str());
  check_int_range(op, "2I", gate_up.dim(-1));
  return int(gate_up.dim(-1) / 2);
}

// Checks gate_up [rows..., 2I] and out [rows..., I] (named out_name); returns I.
static int check_swiglu(const char* op, const char* out_name, const Tensor& out,
                        const Tensor& gate_up) {
  const int I = check_gate_up(op, gate_up);
  check_cuda(op, out_name, out, DType::BF16);
  check_shape(op, out_name, out, with_last(gate_up.shape, I));
  return I;
}

void swiglu_forward(Tensor out, Tensor gate_up, cudaStream_t stream) {
  const int I = check_swiglu("swiglu_forward", "out", out, gate_up);
  const int64_t N = rows_of(gate_up);
  if (N == 0 || I == 0) return;
  constexpr int kThreads = 256;
  if (I % 8 == 0 && aligned16(out.data) && aligned16(gate_up.data)) {
    swiglu_forward_kernel<8><<<unsigned(ceil_div(N * (I / 8), kThreads)), kThreads, 0, stream>>>(
        Bf16Out{out.ptr<bf16>()}, gate_up.ptr<bf16>(), N, I);
  } else {
    swiglu_forward_kernel<1><<<unsigned(ceil_div(N * I, kThreads)), kThreads, 0, stream>>>(
        Bf16Out{out.ptr<bf16>()}, gate_up.ptr<bf16>(), N, I);
  }
  TL_CUDA_LAUNCH_CHECK();
}

void swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up, cudaStream_t stream) {
  const char* op = "swiglu_backward";
  const int I = check_swiglu(op, "dout", dout, gate_up);
  check_cuda(op, "dgate_up", dgate_up, DType::BF16);
  check_shape(op, "dgate_up", dgate_up, gate_up.shape);
  const int64_t N = rows_of(gate_up);
  if (N == 0 || I == 0) return;
  constexpr int kThreads = 256;
  if (I % 8 == 0 && aligned16(dgate_up.data) && aligned16(dout.data) && aligned16(gate_up.data)) {
    swiglu_backward_kernel<8><<<unsigned(ceil_div(N * (I / 8), kThreads)), kThreads, 0, stream>>>(
        Bf16Out{dgate_up.ptr<bf16>()}, dout.ptr<bf16>(), gate_up.ptr<bf16>(), N, I);
  } else {
    swiglu_backward_kernel<1><<<unsigned(ceil_div(N * I, kThreads)), kThreads, 0, stream>>>(
        Bf16Out{dgate_up.ptr<bf16>()}, dout.ptr<bf16>(), gate_up.ptr<bf16>(), N, I);
  }
  TL_CUDA_LAUNCH_CHECK();
}

// The FP8 producers: the plain ops' checks, the cast's, then one launch (at least one block,
// so scale_inv is written even for no elements).

// The tiled kernel when its conditions hold (a launch covers 65535 tiles of 64 rows), else the
// row kernel and then a transpose of its codes.
static bool both_layouts_in_one(int64_t N, int I, std::initializer_list<const void*> ptrs) {
  bool aligned = true;
  for (const void* p : ptrs) aligned = aligned && aligned16(p);
  return aligned && N % 16 == 0 && I % kVec == 0 && N > 0 && I > 0 && ceil_div(N, kTT) <= 65535;
}

void swiglu_forward_fp8(Tensor codes, Tensor codes_t, Tensor gate_up, Fp8Cast cast,
                        cudaStream_t stream) {
  const char* op = "swiglu_forward_fp8";
  const int I = check_gate_up(op, gate_up);
  const int64_t N = rows_of(gate_up);
  fp8_args::cast(Device::CUDA, op, cast, codes, N, I, codes_t, {gate_up});
  const QuantizeArgs a = begin_fp8_cast(cast, codes, stream, codes_t);
  if (!codes_t.empty() && both_layouts_in_one(N, I, {codes.data, codes_t.data, gate_up.data})) {
    const dim3 grid(unsigned(ceil_div(I, kTT)), unsigned(ceil_div(N, kTT)));
    swiglu_both_kernel<false>
        <<<grid, kTTThreads, 0, stream>>>(a, nullptr, gate_up.ptr<bf16>(), N, I);
    TL_CUDA_LAUNCH_CHECK();
    return;
  }
  constexpr int kThreads = 256;
  const bool vec = I % 8 == 0 && aligned16(codes.data) && aligned16(gate_up.data);
  const int64_t threads = N * (vec ? I / 8 : I);
  const auto blocks = unsigned(std::max<int64_t>(ceil_div(threads, kThreads), 1));
  if (vec)
    swiglu_forward_kernel<8>
        <<<blocks, kThreads, 0, stream>>>(CodesOut{a}, gate_up.ptr<bf16>(), N, I);
  else
    swiglu_forward_kernel<1>
        <<<blocks, kThreads, 0, stream>>>(CodesOut{a}, gate_up.ptr<bf16>(), N, I);
  TL_CUDA_LAUNCH_CHECK();
  if (!codes_t.empty()) fp8_transpose(codes_t, codes, stream);
}

void swiglu_backward_fp8(Tensor dcodes, Tensor dcodes_t, Tensor dout, Tensor gate_up, Fp8Cast cast,
                         cudaStream_t stream) {
  const char* op = "swiglu_backward_fp8";
  const int I = check_swiglu(op, "dout", dout, gate_up);
  const int64_t N = rows_of(gate_up);
  fp8_args::cast(Device::CUDA, op, cast, dcodes, N, 2 * int64_t(I), dcodes_t, {dout, gate_up});
  const QuantizeArgs a = begin_fp8_cast(cast, dcodes, stream, dcodes_t);
  if (!dcodes_t.empty() &&
      both_layouts_in_one(N, I, {dcodes.data, dcodes_t.data, dout.data, gate_up.data})) {
    const dim3 grid(unsigned(ceil_div(I, kTT)), unsigned(ceil_div(N, kTT)));
    swiglu_both_kernel<true>
        <<<grid, kTTThreads, 0, stream>>>(a, dout.ptr<bf16>(), gate_up.ptr<bf16>(), N, I);
    TL_CUDA_LAUNCH_CHECK();
    return;
  }
  constexpr int kThreads = 256;
  const bool vec =
      I % 8 == 0 && aligned16(dcodes.data) && aligned16(dout.data) && aligned16(gate_up.data);
  const int64_t threads = N * (vec ? I / 8 : I);
  const auto blocks = unsigned(std::max<int64_t>(ceil_div(threads, kThreads), 1));
  if (vec)
    swiglu_backward_kernel<8>
        <<<blocks, kThreads, 0, stream>>>(CodesOut{a}, dout.ptr<bf16>(), gate_up.ptr<bf16>(), N, I);
  else
    swiglu_backward_kernel<1>
        <<<blocks, kThreads, 0, stream>>>(CodesOut{a}, dout.ptr<bf16>(), gate_up.ptr<bf16>(), N, I);
  TL_CUDA_LAUNCH_CHECK();
  if (!dcodes_t.empty()) fp8_transpose(dcodes_t, dcodes, stream);
}

}  // namespace tl::gpu
