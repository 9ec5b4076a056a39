#include "model/fp8_linear.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

namespace tl {

namespace {
constexpr size_t kScalarStride = 256;  // bytes between two scalars
// A linear's weight shape {O, I}.
std::pair<int64_t, int64_t> weight_dims(const ModelConfig& cfg, LinearKind k) {
  switch (k) {
    case LinearKind::Qkv: return {cfg.qkv_dim(), cfg.dim};
    case LinearKind::Wo: return {cfg.dim, cfg.dim};
    case LinearKind::GateUp: return {2 * cfg.ffn_dim, cfg.dim};
    case LinearKind::Down: return {cfg.dim, cfg.ffn_dim};
  }
  return {0, 0};
}
// Where the kept W^T codes of a layer's kinds start within the layer's share of the buffer
// (256-byte aligned); [kLinearKinds]: the share (every layer's shapes are the same).
std::array<size_t, kLinearKinds + 1> weights_t_layout(const ModelConfig& cfg) {
  std::array<size_t, kLinearKinds + 1> at{};
  for (int k = 0; k < kLinearKinds; ++k) {
    const auto [O, I] = weight_dims(cfg, LinearKind(k));
    at[size_t(k) + 1] = at[size_t(k)] + round_up_256(size_t(O * I));
  }
  return at;
}
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

const char* fp8_scaling_name(Fp8Scaling s) {
  return s == Fp8Scaling::Delayed ? "delayed" : "current";
}

Fp8Scaling fp8_scaling_from_name(const std::string& name) {
  if (name == "current") return Fp8Scaling::Current;
  if (name == "delayed") return Fp8Scaling::Delayed;
  fail("fp8 scaling must be \"current\" or \"delayed\", got \"", name, "\"");
}

Fp8Linears::Fp8Linears(Backend& be, const ModelConfig& cfg, Fp8Options opts)
    : be_(be),
      layers_(cfg.n_layers),
      opts_(opts),
      weights_t_layout_(weights_t_layout(cfg)),
      weights_t_ready_(size_t(cfg.n_layers) * kLinearKinds, false),
      wo_input_t_ready_(size_t(cfg.n_layers), false),
      enabled_(size_t(cfg.n_layers) * kLinearKinds, true) {
  TL_CHECK(opts_.amax_history >= 1 && opts_.amax_history <= 4096,
           "fp8: the amax history must hold 1 to 4096 passes, got ", opts_.amax_history);
  const size_t n = size_t(tensors()), f32 = sizeof(float);
  current_ = Buffer(be_, n * f32);
  be_.zero(current_.tensor(DType::F32, {tensors()}));
  scale_inv_ = Buffer(be_, n * kScalarStride);
  if (opts_.scaling == Fp8Scaling::Delayed) {
    last_ = Buffer(be_, n * f32);
    scale_amax_ = Buffer(be_, n * f32);
    history_ = Buffer(be_, size_t(opts_.amax_history) * n * f32);
    be_.zero(history_.tensor(DType::F32, {opts_.amax_history, tensors()}));
  }
}

size_t Fp8Linears::scratch_bytes(const ModelConfig& cfg, int64_t N) {
  const int64_t C = cfg.dim, F = cfg.ffn_dim, Q = cfg.qkv_dim();
  // Buffer 0: x8 [N, I] (wo's, or down's rows from SwiGLU (forward_input_scratch); the others
  // come as codes, except in a recompute run) and dy8 [N, O]; 1: w8 / W^T [O, I] and x^T
  // [I, N]; 2: dy^T [O, N] (gate_up's from SwiGLU: backward_grad_t_scratch).
  const int64_t b0 = N * std::max({C, F, Q, 2 * F});
  const int64_t b1 = std::max({N * std::max(C, F), Q * C, 2 * F * C});
  const int64_t b2 = N * std::max({C, Q, 2 * F});
  return size_t(b0 + b1 + b2);
}

size_t Fp8Linears::kept_bytes(const ModelConfig& cfg) {
  return weights_t_layout(cfg)[kLinearKinds] * size_t(cfg.n_layers);
}

size_t Fp8Linears::kept_input_bytes(const ModelConfig& cfg, int64_t N) {
  return round_up_256(size_t(cfg.dim * N)) * size_t(cfg.n_layers);
}

Tensor Fp8Linears::kept_weight_t(int l, LinearKind k, int64_t I, int64_t O) const {
  const size_t off = weights_t_layout_[kLinearKinds] * size_t(l) + weights_t_layout_[size_t(k)];
  return weights_t_.tensor(DType::U8, {I, O}, off);
}

Tensor Fp8Linears::kept_wo_input_t(int l, int64_t N, int64_t I) const {
  return wo_inputs_t_.tensor(DType::U8, {I, N}, round_up_256(size_t(N * I)) * size_t(l));
}

Tensor Fp8Linears::at(const Buffer& b, int layer, LinearKind k, Role r) const {
  return b.tensor(DType::F32, {1}, size_t(index(layer, k, r)) * sizeof(float));
}

Tensor Fp8Linears::scale_inv(int layer, LinearKind k, Role r) const {
  return scale_inv_.tensor(DType::F32, {1}, size_t(index(layer, k, r)) * kScalarStride);
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

void Fp8Linears::cast(Tensor out, Tensor out_t, Tensor in, int l, LinearKind k, Role r, Fp8Format f,
                      bool measure) {
  const Tensor cur = at(current_, l, k, r);
  if (delayed_now()) {
    be_.fp8_quantize(out, out_t, scale_inv(l, k, r), in, at(scale_amax_, l, k, r), f,
                     measure ? cur : Tensor());
    return;
  }
  if (measure) be_.amax(cur, in);
  be_.fp8_quantize(out, out_t, scale_inv(l, k, r), in, cur, f, Tensor());
}

Fp8Cast Fp8Linears::input_cast(int l, LinearKind k, bool measure) const {
  TL_ASSERT(producers_write_codes(l, k));
  return {at(scale_amax_, l, k, kX), scale_inv(l, k, kX),
          measure ? at(current_, l, k, kX) : Tensor(), Fp8Format::E4M3};
}

Fp8Cast Fp8Linears::grad_cast(int l, LinearKind k, bool measure) const {
  TL_ASSERT(producers_write_codes(l, k));
  return {at(scale_amax_, l, k, kDy), scale_inv(l, k, kDy),
          measure ? at(current_, l, k, kDy) : Tensor(), Fp8Format::E5M2};
}

void Fp8Linears::quantize_input(int l, LinearKind k, Tensor codes, Tensor in, bool measure) {
  cast(codes, Tensor(), in, l, k, kX, Fp8Format::E4M3, measure);
}

void Fp8Linears::forward(int l, LinearKind k, Tensor out, Tensor inp, Tensor w, Tensor inp_codes) {
  const Tensor& x = inp_codes.empty() ? inp : inp_codes;
  const int64_t N = x.dim(0), I = x.dim(1), O = w.dim(0);
  Tensor x8 = inp_codes;
  if (x8.empty()) {
    x8 = codes(0, {N, I});
    // wo's input in a training pass: x^T for wgrad from the same read (as for W^T below).
    Tensor xt8;
    if (k == LinearKind::Wo && in_pass_ && opts_.keep_wo_input_t) {
      const size_t bytes = round_up_256(size_t(N * I)) * size_t(layers_);
      if (wo_inputs_t_.bytes() < bytes) {
        wo_inputs_t_ = Buffer();  // free first: 0.7 GB at 1.1B, micro-batch 8 x 2048
        wo_inputs_t_ = Buffer(be_, bytes);
      }
      xt8 = kept_wo_input_t(l, N, I);
      wo_input_t_ready_[size_t(l)] = true;
    }
    cast(x8, xt8, inp, l, k, kX, Fp8Format::E4M3, true);
  }
  Tensor w8 = codes(1, {O, I});
  // In a training pass, W^T for the backward from the same read (bit for bit the codes the
  // backward would cast: same tensor, same scale).
  Tensor wt8;
  if (in_pass_ && opts_.keep_weights_t) {
    if (!weights_t_.data())
      weights_t_ = Buffer(be_, weights_t_layout_[kLinearKinds] * size_t(layers_));
    wt8 = kept_weight_t(l, k, I, O);
    weights_t_ready_[slot(l, k)] = true;
  }
  cast(w8, wt8, w, l, k, kW, Fp8Format::E4M3, true);
  be_.fp8_matmul(out, x8, w8, scale_inv(l, k, kX), scale_inv(l, k, kW), Fp8Format::E4M3,
                 Fp8Format::E4M3, false);
}

void Fp8Linears::backward(int l, LinearKind k, Tensor dinp, Tensor dw, Tensor dout, Tensor inp,
                          Tensor w, Codes x, Codes dy, bool accumulate_dw) {
  TL_ASSERT(dinp.ndim() == 2);
  const int64_t N = dinp.dim(0), I = w.dim(1), O = w.dim(0);
  const Tensor sx = scale_inv(l, k, kX), sw = scale_inv(l, k, kW), sdy = scale_inv(l, k, kDy);
  // dy in both layouts: the producer's, transposed from its rows, or cast from one read of dout.
  Tensor dy8 = dy.rows, dyt8 = dy.cols.empty() ? codes(2, {O, N}) : dy.cols;
  if (dy8.empty()) {
    TL_ASSERT(dy.cols.empty());
    dy8 = codes(0, {N, O});
    cast(dy8, dyt8, dout, l, k, kDy, Fp8Format::E5M2, true);
  } else if (dy.cols.empty()) {
    be_.fp8_transpose(dyt8, dy8);
  }
  // dgrad: dinp[N,I] = dy8[N,O] . (W^T)[I,O]^T, W^T as the forward kept it or cast now
  Tensor wt8;
  if (weights_t_ready_[slot(l, k)]) {
    wt8 = kept_weight_t(l, k, I, O);
    weights_t_ready_[slot(l, k)] = false;
  } else {
    wt8 = codes(1, {I, O});
    cast(Tensor(), wt8, w, l, k, kW, Fp8Format::E4M3, false);
  }
  be_.fp8_matmul(dinp, dy8, wt8, sdy, sw, Fp8Format::E5M2, Fp8Format::E4M3, false);
  // wgrad: dw[O,I] (+)= (dy^T)[O,N] . (x^T)[I,N]^T
  Tensor xt8 = x.cols;
  if (xt8.empty() && k == LinearKind::Wo && wo_input_t_ready_[size_t(l)]) {
    xt8 = kept_wo_input_t(l, N, I);
    wo_input_t_ready_[size_t(l)] = false;
  } else if (xt8.empty()) {
    xt8 = codes(1, {I, N});
    if (x.rows.empty())
      cast(Tensor(), xt8, inp, l, k, kX, Fp8Format::E4M3, false);
    else
      be_.fp8_transpose(xt8, x.rows);
  }
  be_.fp8_matmul(dw, dyt8, xt8, sdy, sx, Fp8Format::E5M2, Fp8Format::E4M3, accumulate_dw);
}

void Fp8Linears::begin_pass() {
  in_pass_ = true;
  std::fill(weights_t_ready_.begin(), weights_t_ready_.end(), false);
  std::fill(wo_input_t_ready_.begin(), wo_input_t_ready_.end(), false);
  if (delayed_now()) be_.zero(current_.tensor(DType::F32, {tensors()}));
}

void Fp8Linears::end_pass() {
  in_pass_ = false;
  if (opts_.scaling != Fp8Scaling::Delayed) return;
  be_.fp8_amax_roll(history_.tensor(DType::F32, {opts_.amax_history, tensors()}),
                    current_.tensor(DType::F32, {tensors()}),
                    scale_amax_.tensor(DType::F32, {tensors()}),
                    last_.tensor(DType::F32, {tensors()}), passes_ % opts_.amax_history);
  ++passes_;
}

std::vector<Fp8Amax> Fp8Linears::download(const Buffer& b) const {
  std::vector<float> host(static_cast<size_t>(tensors()));  // one download: one host sync
  be_.download(host.data(), b.tensor(DType::F32, {tensors()}));
  std::vector<Fp8Amax> out(size_t(layers_) * kLinearKinds);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = {host[i * kRoles + kX], host[i * kRoles + kW], host[i * kRoles + kDy]};
  return out;
}

std::vector<Fp8Amax> Fp8Linears::amaxes() const {
  return download(opts_.scaling == Fp8Scaling::Delayed && passes_ > 0 ? last_ : current_);
}

std::vector<Fp8Amax> Fp8Linears::scaling_amaxes() const {
  return download(delayed_now() ? scale_amax_ : current_);
}

}  // namespace tl
