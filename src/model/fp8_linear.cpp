#include "model/fp8_linear.h"

#include <algorithm>
#include <cstring>

namespace tl {

namespace {
constexpr size_t kScalarStride = 256;  // bytes between two scalars
}  // namespace

const char* linear_kind_name(LinearKind k) {
  switch (k) {
    case LinearKind::Qkv: return "qkv";
    case LinearKind::Wo: return "wo";
    case LinearKind::GateUp: return "gate_up";
    case LinearKind::Down: return "down";
  }
  return "?";
}

void check_fp8_shapes(const ModelConfig& cfg, int64_t tokens) {
  const struct {
    const char* name;
    int64_t v;
  } dims[] = {{"model.dim", cfg.dim},
              {"model.ffn_dim", cfg.ffn_dim},
              {"the qkv width (n_heads + 2 n_kv_heads) x head_dim", cfg.qkv_dim()},
              {"the tokens of a micro-batch (micro_batch x seq_len)", tokens}};
  for (const auto& d : dims)
    TL_CHECK(d.v % 16 == 0, "precision fp8: ", d.name, " (", d.v,
             ") must be a multiple of 16 for the FP8 products; use bf16 for this shape");
}

Fp8Linears::Fp8Linears(Backend& be, const ModelConfig& cfg)
    : be_(be), layers_(cfg.n_layers), enabled_(size_t(cfg.n_layers) * kLinearKinds, true) {
  const size_t n = size_t(layers_) * kLinearKinds * kRoles;
  amax_ = Buffer(be_, n * kScalarStride);
  scale_inv_ = Buffer(be_, n * kScalarStride);
  for (int l = 0; l < layers_; ++l)
    for (int k = 0; k < kLinearKinds; ++k)
      for (Role r : {kX, kW, kDy}) be_.zero(scalar(amax_, l, LinearKind(k), r));
}

size_t Fp8Linears::scratch_bytes(const ModelConfig& cfg, int64_t N) {
  const int64_t C = cfg.dim, F = cfg.ffn_dim, Q = cfg.qkv_dim();
  // Buffer 0: x8 [N, I] and dy8 / dy^T [N, O]; buffer 1: w8 / W^T [O, I] and x^T [I, N].
  const int64_t b0 = N * std::max({C, F, Q, 2 * F});
  const int64_t b1 = std::max({N * std::max(C, F), Q * C, 2 * F * C});
  return size_t(b0 + b1);
}

Tensor Fp8Linears::scalar(const Buffer& b, int layer, LinearKind k, Role r) const {
  const size_t i = (slot(layer, k) * kRoles + size_t(r)) * kScalarStride;
  return b.tensor(DType::F32, {1}, i);
}

Tensor Fp8Linears::codes(int which, Shape s) {
  Buffer& b = codes_[which];
  const size_t bytes = size_t(s.numel());
  if (b.bytes() < bytes) {
    b = Buffer();  // free first: the largest operands are hundreds of MB
    b = Buffer(be_, bytes);
  }
  return b.tensor(DType::U8, s);
}

void Fp8Linears::forward(int l, LinearKind k, Tensor out, Tensor inp, Tensor w) {
  const int64_t N = inp.dim(0), I = inp.dim(1), O = w.dim(0);
  Tensor ax = scalar(amax_, l, k, kX), aw = scalar(amax_, l, k, kW);
  Tensor sx = scalar(scale_inv_, l, k, kX), sw = scalar(scale_inv_, l, k, kW);
  Tensor x8 = codes(0, {N, I}), w8 = codes(1, {O, I});
  be_.amax(ax, inp);
  be_.fp8_quantize(x8, sx, inp, ax, Fp8Format::E4M3, false);
  be_.amax(aw, w);
  be_.fp8_quantize(w8, sw, w, aw, Fp8Format::E4M3, false);
  be_.fp8_matmul(out, x8, w8, sx, sw, Fp8Format::E4M3, Fp8Format::E4M3, false);
}

void Fp8Linears::backward(int l, LinearKind k, Tensor dinp, Tensor dw, Tensor dout, Tensor inp,
                          Tensor w) {
  const int64_t N = inp.dim(0), I = inp.dim(1), O = w.dim(0);
  Tensor ax = scalar(amax_, l, k, kX), aw = scalar(amax_, l, k, kW), ady = scalar(amax_, l, k, kDy);
  Tensor sx = scalar(scale_inv_, l, k, kX), sw = scalar(scale_inv_, l, k, kW);
  Tensor sdy = scalar(scale_inv_, l, k, kDy);
  be_.amax(ady, dout);
  // dgrad: dinp[N,I] = dy8[N,O] . (W^T)[I,O]^T
  Tensor dy8 = codes(0, {N, O}), wt8 = codes(1, {I, O});
  be_.fp8_quantize(dy8, sdy, dout, ady, Fp8Format::E5M2, false);
  be_.fp8_quantize(wt8, sw, w, aw, Fp8Format::E4M3, true);
  be_.fp8_matmul(dinp, dy8, wt8, sdy, sw, Fp8Format::E5M2, Fp8Format::E4M3, false);
  // wgrad: dw[O,I] += (dy^T)[O,N] . (x^T)[I,N]^T
  Tensor dyt8 = codes(0, {O, N}), xt8 = codes(1, {I, N});
  be_.fp8_quantize(dyt8, sdy, dout, ady, Fp8Format::E5M2, true);
  be_.fp8_quantize(xt8, sx, inp, ax, Fp8Format::E4M3, true);
  be_.fp8_matmul(dw, dyt8, xt8, sdy, sx, Fp8Format::E5M2, Fp8Format::E4M3, true);
}

std::vector<Fp8Amax> Fp8Linears::amaxes() const {
  std::vector<uint8_t> host(amax_.bytes());  // one download: a single host sync
  be_.download(host.data(), amax_.tensor(DType::U8, {int64_t(host.size())}));
  const auto at = [&](int l, int k, Role r) {
    float v;
    std::memcpy(&v, host.data() + (slot(l, LinearKind(k)) * kRoles + size_t(r)) * kScalarStride, 4);
    return v;
  };
  std::vector<Fp8Amax> out(size_t(layers_) * kLinearKinds);
  for (int l = 0; l < layers_; ++l)
    for (int k = 0; k < kLinearKinds; ++k)
      out[slot(l, LinearKind(k))] = {at(l, k, kX), at(l, k, kW), at(l, k, kDy)};
  return out;
}

}  // namespace tl
