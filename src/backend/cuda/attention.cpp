// Attention entry points: argument checks, options, the per-context state, and dispatch to
// the fa2 kernels, cuDNN or the generic kernels (attention.h says which does what).
#include "backend/cuda/attention.h"

#include <cstdlib>
#include <string>

#include "backend/cuda/attention_internal.h"
#include "backend/cuda/cuda_common.h"

namespace tl::gpu {
namespace {

struct AttentionState {
  void* scratch = nullptr;  // device memory shared by all implementations
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

// Auto takes the first implementation of this list that runs the shape. cuDNN first: on the
// H100 at the 1.1B shape it ran fwd+bwd in 1.54 ms against fa2's 2.54 ms (bench/RESULTS.md,
// 2026-11-27); fa2 covers the shapes cuDNN refuses (T not a multiple of 128 on cuDNN <= 9.15),
// generic every other head dim.
constexpr AttentionImpl kAutoOrder[] = {AttentionImpl::Cudnn, AttentionImpl::Fa2,
                                        AttentionImpl::Generic};

bool aligned(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) % bytes) == 0;
}

// Preconditions shared by forward and backward and by every implementation; returns the shape.
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
  TL_CHECK(s.B > 0 && s.T > 0 && s.D > 0, op, ": empty qkv ", qkv.str());
  TL_CHECK(s.D % 2 == 0, op, ": head dim ", s.D, " must be even");
  check_device(op, "out", out, Device::CUDA);
  check_dtype(op, "out", out, DType::BF16);
  check_shape(op, "out", out, Shape{s.B, s.T, int64_t(H) * s.D});
  check_device(op, "lse", lse, Device::CUDA);
  check_dtype(op, "lse", lse, DType::F32);
  check_shape(op, "lse", lse, Shape{s.B, H, s.T});
  // bf16 pairs (D is even) everywhere; fa2 and cuDNN also need 16 bytes (unsupported()).
  TL_CHECK(aligned(qkv.data, 4) && aligned(out.data, 4) && aligned(lse.data, 4), op,
           ": qkv, out and lse must be 4-byte aligned");
  return s;
}

// Empty when impl runs the shape, else why it does not.
std::string unsupported(AttentionImpl impl, const AttnShape& s, bool aligned16) {
  switch (impl) {
    case AttentionImpl::Fa2:
      if (!fa2_supports_head_dim(s.D))
        return cat("head dim ", s.D, " is not supported (64 or 128)");
      if ((s.T + 63) / 64 > 65535) return cat("T = ", s.T, " is above 4194240");
      break;
    case AttentionImpl::Cudnn:
      if (const char* why = cudnn_attention_unsupported(s); why[0] != '\0') return why;
      break;
    case AttentionImpl::Generic:
      if (s.T > generic_max_T()) return cat("T = ", s.T, " is above ", generic_max_T());
      return "";
    case AttentionImpl::Auto: return "";
  }
  return aligned16 ? "" : "tensors must be 16-byte aligned";
}

AttentionImpl resolve(const char* op, const AttentionOptions& opt, const AttnShape& s,
                      bool aligned16) {
  if (opt.impl != AttentionImpl::Auto) {
    const std::string why = unsupported(opt.impl, s, aligned16);
    if (why.empty()) return opt.impl;
    TL_CHECK(!opt.strict, op, " (", attention_impl_name(opt.impl), "): ", why, " (B=", s.B,
             " T=", s.T, " H=", s.H, " K=", s.K, " D=", s.D,
             "); the generic implementation runs every shape");
  }
  std::string why;
  for (AttentionImpl impl : kAutoOrder) {
    const std::string w = unsupported(impl, s, aligned16);
    if (w.empty()) return impl;
    why += cat(why.empty() ? "" : "; ", attention_impl_name(impl), ": ", w);
  }
  fail(op, ": no attention implementation runs B=", s.B, " T=", s.T, " H=", s.H, " K=", s.K,
       " D=", s.D, " (", why, ")");
}

CudnnAttention* cudnn_state(CudaContext& ctx) {
  AttentionState& st = state(ctx);
  if (!st.cudnn) st.cudnn = cudnn_attention_create();
  return st.cudnn;
}

}  // namespace

const char* attention_impl_name(AttentionImpl impl) {
  switch (impl) {
    case AttentionImpl::Fa2: return "fa2";
    case AttentionImpl::Cudnn: return "cudnn";
    case AttentionImpl::Generic: return "generic";
    case AttentionImpl::Auto: break;
  }
  return "auto";
}

AttentionOptions attention_options_from_env() {
  AttentionOptions o;
  if (const char* v = std::getenv("TL_ATTENTION"); v != nullptr && v[0] != '\0') {
    const std::string s = v;
    bool known = false;
    for (AttentionImpl impl :
         {AttentionImpl::Auto, AttentionImpl::Fa2, AttentionImpl::Cudnn, AttentionImpl::Generic})
      if (s == attention_impl_name(impl)) o.impl = impl, known = true;
    TL_CHECK(known, "TL_ATTENTION='", s, "': expected auto, fa2, cudnn or generic");
  }
  if (const char* v = std::getenv("TL_ATTENTION_DETERMINISTIC"); v != nullptr && v[0] != '\0') {
    const std::string s = v;
    TL_CHECK(s == "0" || s == "1", "TL_ATTENTION_DETERMINISTIC='", s, "': expected 0 or 1");
    o.deterministic = s == "1";
  }
  return o;
}

AttentionImpl attention_impl_for(const AttentionOptions& opt, int T, int n_head, int n_kv_head,
                                 int head_dim, bool aligned16) {
  AttnShape s;
  s.B = 1, s.T = T, s.H = n_head, s.K = n_kv_head, s.D = head_dim;
  return resolve("attention", opt, s, aligned16);
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
  switch (resolve(op, opt, s, aligned(qkv.data, 16) && aligned(out.data, 16))) {
    case AttentionImpl::Fa2:
      fa2_forward(s, out.data, lse.ptr<float>(), qkv.data, ctx.stream);
      break;
    case AttentionImpl::Cudnn:
      cudnn_attention_forward(ctx, cudnn_state(ctx), s, out.data, lse.ptr<float>(), qkv.data);
      break;
    default: generic_forward(s, out.data, lse.ptr<float>(), qkv.data, ctx.stream); break;
  }
}

void attention_backward_cuda(CudaContext& ctx, const AttentionOptions& opt, Tensor dqkv,
                             Tensor dout, Tensor qkv, Tensor out, Tensor lse, int n_head,
                             int n_kv_head) {
  const char* op = "attention_backward";
  const AttnShape s = check(op, qkv, out, lse, n_head, n_kv_head);
  check_device(op, "dqkv", dqkv, Device::CUDA);
  check_dtype(op, "dqkv", dqkv, DType::BF16);
  check_shape(op, "dqkv", dqkv, qkv.shape);
  check_device(op, "dout", dout, Device::CUDA);
  check_dtype(op, "dout", dout, DType::BF16);
  check_shape(op, "dout", dout, out.shape);
  TL_CHECK(aligned(dqkv.data, 4) && aligned(dout.data, 4), op,
           ": dqkv and dout must be 4-byte aligned");
  const bool a16 = aligned(qkv.data, 16) && aligned(out.data, 16) && aligned(dqkv.data, 16) &&
                   aligned(dout.data, 16);
  const float* l = lse.ptr<float>();
  switch (resolve(op, opt, s, a16)) {
    case AttentionImpl::Fa2: {
      void* ws = attention_scratch(ctx, fa2_workspace_bytes(s, opt.deterministic));
      fa2_backward(s, dqkv.data, dout.data, qkv.data, out.data, l, ws, opt.deterministic,
                   ctx.stream);
      break;
    }
    case AttentionImpl::Cudnn:
      cudnn_attention_backward(ctx, cudnn_state(ctx), s, dqkv.data, dout.data, qkv.data, out.data,
                               l);
      break;
    default: {
      void* ws = attention_scratch(ctx, generic_workspace_bytes(s));
      generic_backward(s, dqkv.data, dout.data, qkv.data, out.data, l, ws, ctx.stream);
      break;
    }
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
  const AttentionOptions opt = attention_options_from_env();
  switch (resolve("attention_workspace_bytes", opt, s, true)) {
    case AttentionImpl::Fa2: return fa2_workspace_bytes(s, opt.deterministic);
    case AttentionImpl::Cudnn: return fa2_workspace_bytes(s, false);  // Dsum + dQ accumulator
    default: return generic_workspace_bytes(s);
  }
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

}  // namespace tl::gpu
