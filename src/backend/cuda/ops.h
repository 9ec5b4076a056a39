// Launchers of the CUDA backend's kernels, one op family per .cu file (semantics exactly
// as backend/backend.h). Each checks its preconditions (dtype, device, shapes) and throws
// tl::Error naming the op and the tensor, then enqueues its kernels on the stream without
// synchronizing the host. Vectorized paths (16-byte accesses) are taken when sizes and
// pointers allow; otherwise a scalar path of the same kernel runs.
// Arguments: outputs, inputs, sizes/options, scratch, stream.
// act = bf16 here; parameter gradients and optimizer state are f32.
#pragma once
#include <cuda_runtime.h>

#include "backend/backend.h"
#include "backend/cuda/memory.h"

namespace tl::gpu {

// ---- convert.cu ----
// dst = src elementwise: f32 <-> bf16, or a copy when the dtypes match.
void convert(Tensor dst, Tensor src, cudaStream_t stream);
void accumulate(Tensor dst, Tensor src, cudaStream_t stream);  // dst f32 += src f32/bf16

// ---- decode_linear.cu ----
// Backend::decode_linear for M <= 8 rows (bf16, f32 sums) in one weight-streaming kernel,
// arguments as backend/decode_linear_args.h checked them. decode_linear_fits says whether the
// rows, shape and pointers suit it (I % 8 == 0, f(x) in 160 KiB, 16-byte aligned).
// sm_count sizes the grid (one wave).
bool decode_linear_fits(Tensor out, Tensor x, Tensor w, const Backend::DecodeLinear& f);
void decode_linear(Tensor out, Tensor x, Tensor w, const Backend::DecodeLinear& f, int sm_count,
                   cudaStream_t stream);

// ---- prefetch.cu ----
// Backend::prefetch: bulk L2 prefetches of every tensor's bytes (sm_90; older GPUs: nothing).
void prefetch_l2(const std::vector<Tensor>& tensors, cudaStream_t stream);
// The 16-byte aligned part of t's bytes, which a bulk prefetch can ask for (bytes a multiple
// of 16; 0 when there is none).
struct AlignedBytes {
  const char* data;
  int64_t bytes;
};
AlignedBytes aligned16_part(const Tensor& t);

// ---- fp8.cu ----
void amax(Tensor out, Tensor in, cudaStream_t stream);
void fp8_quantize(Tensor out, Tensor out_t, Tensor scale_inv, Tensor in, Tensor amax, Fp8Format f,
                  Tensor amax_out, cudaStream_t stream);
void fp8_transpose(Tensor out_t, Tensor in, cudaStream_t stream);
void fp8_amax_roll(Tensor history, Tensor current, Tensor scale_amax, Tensor last, int64_t slot,
                   cudaStream_t stream);

// ---- embedding.cu ----
// out[N,C] (bf16) = table[V,C] (bf16) rows by tokens[N] (i32); ids outside [0,V) give 0.
void embedding_forward(Tensor out, Tensor table, Tensor tokens, cudaStream_t stream);
// dtable[V,C] (f32) += dout[N,C] (bf16) rows scattered by tokens[N]. Deterministic: tokens
// are stably sorted, then each distinct token sums its rows in position order.
void embedding_backward(Tensor dtable, Tensor dout, Tensor tokens, Scratch& scratch,
                        cudaStream_t stream);

// ---- rmsnorm.cu ----
// out[N,C] = norm(x) * weight[C], rstd[N] (f32), x = inp[N,C], or with delta given:
// res_out = bf16(res_in + delta) and x = res_out (one pass: the add fused with the norm).
// With cast (Fp8Cast, backend.h): out is u8 codes [N,C] of the normed output instead.
void rmsnorm_forward(Tensor res_out, Tensor out, Tensor rstd, Tensor inp, Tensor delta,
                     Tensor weight, float eps, const char* op, cudaStream_t stream,
                     const Fp8Cast* cast = nullptr);
// dinp[N,C] (bf16) +=; dweight[C] (f32) += via per-block partials reduced in fixed order
// (bitwise reproducible). Either output may be empty. sm_count sizes the grid.
void rmsnorm_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                      Tensor rstd, int sm_count, Scratch& scratch, cudaStream_t stream);

// ---- rope.cu ----
// In place on q and k of qkv[B,T,(H+2K)*D] (bf16); cos,sin[Tmax,D/2] (f32). inverse: the
// transposed rotation (the backward).
void rope(Tensor qkv, Tensor cos, Tensor sin, int n_head, int n_kv_head, int pos0, bool inverse,
          const char* op, cudaStream_t stream);

// ---- swiglu.cu ----
// out[N,I] = silu(gate_up[:, :I]) * gate_up[:, I:]
void swiglu_forward(Tensor out, Tensor gate_up, cudaStream_t stream);
// dgate_up[N,2I] (=) from dout[N,I] and gate_up[N,2I]
void swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up, cudaStream_t stream);
void swiglu_forward_fp8(Tensor codes, Tensor codes_t, Tensor gate_up, Fp8Cast cast,
                        cudaStream_t stream);
void swiglu_backward_fp8(Tensor dcodes, Tensor dcodes_t, Tensor dout, Tensor gate_up, Fp8Cast cast,
                         cudaStream_t stream);

// ---- cross_entropy.cu ----
// One chunk of the fused head: logits[n,V] (bf16) -> losses[n] (f32, 0 where targets < 0),
// and when with_grad, logits overwritten in place by loss_scale * (softmax - onehot)
// (zero rows where targets < 0).
void cross_entropy_rows(Tensor losses, Tensor logits, Tensor targets, float loss_scale,
                        bool with_grad, cudaStream_t stream);

// ---- adamw.cu ----
// out[1] (f32) = sum g[P]^2: fixed grid, per-block partials in double, summed in order.
void sum_squares(Tensor out, Tensor g, Scratch& scratch, cudaStream_t stream);
// One fused pass of decoupled AdamW (as backend.h; clip factor computed on the device from
// grad_norm_sq when given); params_compute (bf16) receives the new parameters when given.
void adamw_update(Tensor params, Tensor grads, Tensor m, Tensor v, Tensor params_compute,
                  Tensor grad_norm_sq, const AdamWArgs& args, cudaStream_t stream);

}  // namespace tl::gpu
