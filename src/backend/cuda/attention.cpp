// Attention entry points: argument checks, options, the per-context state, and dispatch to
// the fa2 kernels or cuDNN (attention.h says which does what).
#include "backend/cuda/attention.h"

#include <cstdlib>
#include <string>

#include "backend/cuda/attention_internal.h"
#include "backend/cuda/cuda_common.h"

namespace tl {
namespace {

struct AttentionState {
  void* scratch = nullptr;  // device memory shared by fa2 and cuDNN
  size_t scratch_bytes = 0;
  CudnnAttention* cudnn = nullptr;
  bool env_read = false;
  AttentionOptions env;
};

AttentionState& state(CudaContext& ctx) {
  if (!ctx.attention_state) ctx.attention_state = new AttentionState();
  return *static_cast<AttentionState*>(ctx.attention_state);
}

const AttentionOptions& env_options(CudaContext& ctx) {
  AttentionState& st = state(ctx);
  if (!st.env_read) st.env = attention_options_from_env(), st.env_read = true;
  return st.env;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Preconditions shared by forward and backward; returns the shape.
AttnShape check(const char* op, const Tensor& qkv, const Tensor& out, const Tensor& lse, int H,
                int K) {
  check_device(op, "qkv", qkv, Device::CUDA);
  check_dtype(op, "qkv", qkv, DType::BF16);
  TL_CHECK(qkv.ndim() == 3, op, ": qkv must be [B,T,(H+2K)*D], got ", qkv.str());
  TL_CHECK(H > 0 && K > 0 && H % K == 0, op, ": n_head (", H,
           ") must be a positive multiple of n_kv_head (", K, ")");
  TL_CHECK(qkv.dim(2) % (H + 2 * K) == 0, op, ": qkv row ", qkv.dim(2),
           " is not a multiple of H+2K = ", H + 2 * K);
  AttnShape s;
  s.B = int(qkv.dim(0)), s.T = int(qkv.dim(1)), s.H = H, s.K = K,
  s.D = int(qkv.dim(2) / (H + 2 * K));
  TL_CHECK(s.B > 0 && s.T > 0, op, ": empty qkv ", qkv.str());
  TL_CHECK(s.D % 8 == 0, op, ": head dim ", s.D, " must be a multiple of 8");
  check_device(op, "out", out, Device::CUDA);
  check_dtype(op, "out", out, DType::BF16);
  check_shape(op, "out", out, Shape{s.B, s.T, int64_t(H) * s.D});
  check_device(op, "lse", lse, Device::CUDA);
  check_dtype(op, "lse", lse, DType::F32);
  check_shape(op, "lse", lse, Shape{s.B, H, s.T});
  TL_CHECK(aligned16(qkv.data) && aligned16(out.data), op, ": qkv and out must be 16-byte aligned");
  return s;
}

void check_impl(const char* op, const AttentionOptions& opt, const AttnShape& s) {
  if (opt.impl == AttentionImpl::Fa2) {
    TL_CHECK(fa2_supports_head_dim(s.D), op, " (fa2): head dim ", s.D,
             " is not supported (64 or 128); ",
             "TL_ATTENTION=cudnn runs other multiples of 8 up to 128");
  } else {
    const char* why = cudnn_attention_unsupported(s);
    TL_CHECK(why[0] == '\0', op, " (cudnn): ", why, "; TL_ATTENTION=fa2 runs this shape");
  }
}

}  // namespace

AttentionOptions attention_options_from_env() {
  AttentionOptions o;
  if (const char* v = std::getenv("TL_ATTENTION"); v != nullptr && v[0] != '\0') {
    const std::string s = v;
    TL_CHECK(s == "fa2" || s == "cudnn", "TL_ATTENTION='", s, "': expected fa2 or cudnn");
    o.impl = s == "fa2" ? AttentionImpl::Fa2 : AttentionImpl::Cudnn;
  }
  if (const char* v = std::getenv("TL_ATTENTION_DETERMINISTIC"); v != nullptr && v[0] != '\0') {
    const std::string s = v;
    TL_CHECK(s == "0" || s == "1", "TL_ATTENTION_DETERMINISTIC='", s, "': expected 0 or 1");
    o.deterministic = s == "1";
  }
  return o;
}

void* attention_scratch(CudaContext& ctx, size_t bytes) {
  AttentionState& st = state(ctx);
  if (bytes > st.scratch_bytes) {
    if (st.scratch) TL_CUDA_CHECK(cudaFreeAsync(st.scratch, ctx.stream));
    st.scratch = nullptr, st.scratch_bytes = 0;
    TL_CUDA_CHECK(cudaMallocAsync(&st.scratch, bytes, ctx.stream));
    st.scratch_bytes = bytes;
  }
  return bytes ? st.scratch : nullptr;
}

void attention_forward_cuda(CudaContext& ctx, const AttentionOptions& opt, Tensor out, Tensor lse,
                            Tensor qkv, int n_head, int n_kv_head) {
  const char* op = "attention_forward";
  const AttnShape s = check(op, qkv, out, lse, n_head, n_kv_head);
  check_impl(op, opt, s);
  if (opt.impl == AttentionImpl::Fa2) {
    fa2_forward(s, out.data, lse.ptr<float>(), qkv.data, ctx.stream);
  } else {
    AttentionState& st = state(ctx);
    if (!st.cudnn) st.cudnn = cudnn_attention_create();
    cudnn_attention_forward(ctx, st.cudnn, s, out.data, lse.ptr<float>(), qkv.data);
  }
}

void attention_backward_cuda(CudaContext& ctx, const AttentionOptions& opt, Tensor dqkv,
                             Tensor dout, Tensor qkv, Tensor out, Tensor lse, int n_head,
                             int n_kv_head) {
  const char* op = "attention_backward";
  const AttnShape s = check(op, qkv, out, lse, n_head, n_kv_head);
  check_impl(op, opt, s);
  check_device(op, "dqkv", dqkv, Device::CUDA);
  check_dtype(op, "dqkv", dqkv, DType::BF16);
  check_shape(op, "dqkv", dqkv, qkv.shape);
  check_device(op, "dout", dout, Device::CUDA);
  check_dtype(op, "dout", dout, DType::BF16);
  check_shape(op, "dout", dout, out.shape);
  TL_CHECK(aligned16(dqkv.data) && aligned16(dout.data), op,
           ": dqkv and dout must be 16-byte aligned");
  if (opt.impl == AttentionImpl::Fa2) {
    void* ws = attention_scratch(ctx, fa2_workspace_bytes(s, opt.deterministic));
    fa2_backward(s, dqkv.data, dout.data, qkv.data, out.data, lse.ptr<float>(), ws,
                 opt.deterministic, ctx.stream);
  } else {
    AttentionState& st = state(ctx);
    if (!st.cudnn) st.cudnn = cudnn_attention_create();
    cudnn_attention_backward(ctx, st.cudnn, s, dqkv.data, dout.data, qkv.data, out.data,
                             lse.ptr<float>());
  }
}

void attention_forward_cuda(CudaContext& ctx, Tensor out, Tensor lse, Tensor qkv, int n_head,
                            int n_kv_head) {
  attention_forward_cuda(ctx, env_options(ctx), out, lse, qkv, n_head, n_kv_head);
}

void attention_backward_cuda(CudaContext& ctx, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out,
                             Tensor lse, int n_head, int n_kv_head) {
  attention_backward_cuda(ctx, env_options(ctx), dqkv, dout, qkv, out, lse, n_head, n_kv_head);
}

size_t attention_workspace_bytes(int B, int T, int n_head, int n_kv_head, int head_dim) {
  AttnShape s;
  s.B = B, s.T = T, s.H = n_head, s.K = n_kv_head, s.D = head_dim;
  return fa2_workspace_bytes(s, attention_options_from_env().deterministic);
}

size_t attention_scratch_bytes(const CudaContext& ctx) {
  const auto* st = static_cast<const AttentionState*>(ctx.attention_state);
  return st ? st->scratch_bytes : 0;
}

void attention_release(CudaContext& ctx) noexcept {
  auto* st = static_cast<AttentionState*>(ctx.attention_state);
  if (st) {
    if (st->scratch) cudaFreeAsync(st->scratch, ctx.stream);
    cudnn_attention_destroy(st->cudnn);
    delete st;
    ctx.attention_state = nullptr;
  }
  cudnn_release_handle(ctx);
}

}  // namespace tl
