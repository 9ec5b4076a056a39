#include "model/llama.h"

#include <cmath>
#include <functional>

#include "core/log.h"
#include "core/rng.h"
#include "model/memory_estimate.h"

namespace tl {

// Activations of one micro-batch shape, carved from one arena.
// Shapes: N = B*T tokens, C dim, Q = qkv width, I ffn dim, H heads, V vocab.
struct LlamaModel::Acts {
  int B = 0, T = 0;
  Buffer arena;
  Tensor tokens, targets;                 // i32 [N]
  std::vector<Tensor> res;                // act [N,C] x (2L+1): the residual stream
  std::vector<Tensor> xn_a, xn_m;         // act [N,C] per layer, or u8 codes [N,C] for an FP8
                                          // consumer (input_codes); one shared act scratch if
                                          // recompute (codes in its first bytes)
  std::vector<Tensor> rstd_a, rstd_m;     // f32 [N] per layer
  Tensor xn_f, rstd_f;                    // final norm: act [N,C], f32 [N]
  std::vector<Tensor> qkv;                // act [B,T,Q] per layer, after RoPE
  std::vector<Tensor> att;                // act [B,T,C] per layer, attention output
  std::vector<Tensor> lse;                // f32 [B,H,T] per layer
  std::vector<Tensor> gate_up;            // act [N,2I] per layer
  std::vector<Tensor> sw;                 // the same for SwiGLU's output, [N,I]
  Tensor xn_act, sw_act;                  // FP8 without recompute: act [N,C], [N,I], the values
                                          // quantize_input casts into the kept codes
  Tensor proj;                            // act [N,C] scratch: output of wo and w_down
  Tensor losses;                          // f32 [N]
  Tensor dres, dxn, dxn_f;                // act [N,C] backward scratch (dres = proj's memory,
                                          // dxn_f = dxn's; see carve)
  Tensor datt;                            // act [B,T,C] (in dsw's memory when it fits)
  Tensor dqkv;                            // act [B,T,Q] (likewise)
  Tensor dgu;                             // act [N,2I]
  Tensor dsw;                             // act [N,I]
  Tensor head_ws;                         // u8: dgu's and dsw's memory, lent to the head
  Tensor last_x, logits_act, logits_f32;  // inference: [B,C] act, [B,V] act, [B,V] f32
  int64_t fp8_fallbacks = 0;              // Fp8Linears::fallbacks() when carved

  // Assigns every view through take(dtype, shape). codes(k, l): whether linear k of layer l
  // keeps its input as FP8 codes (LlamaModel::input_codes).
  void carve(const ModelConfig& c, int B_, int T_, DType act, bool recompute,
             const std::function<bool(ParamKind, int)>& codes,
             const std::function<Tensor(DType, Shape)>& take) {
    B = B_;
    T = T_;
    const int64_t N = int64_t(B) * T, C = c.dim, Q = c.qkv_dim(), I = c.ffn_dim, L = c.n_layers;
    tokens = take(DType::I32, {N});
    targets = take(DType::I32, {N});
    res.clear();
    for (int64_t i = 0; i < 2 * L + 1; ++i) res.push_back(take(act, {N, C}));
    Tensor xn_shared = recompute ? take(act, {N, C}) : Tensor();
    Tensor sw_shared = recompute ? take(act, {N, I}) : Tensor();
    xn_a.clear();
    xn_m.clear();
    rstd_a.clear();
    rstd_m.clear();
    qkv.clear();
    att.clear();
    lse.clear();
    gate_up.clear();
    sw.clear();
    bool any_codes = false;
    const auto kept = [&](ParamKind k, int64_t l) {  // a per-layer input: act, or its codes
      const bool u8 = codes(k, int(l));
      any_codes = any_codes || u8;
      return u8 ? DType::U8 : act;
    };
    for (int64_t l = 0; l < L; ++l) {
      const DType ta = kept(ParamKind::Wqkv, l), tm = kept(ParamKind::WGateUp, l),
                  ts = kept(ParamKind::WDown, l);
      xn_a.push_back(recompute ? xn_shared : take(ta, {N, C}));
      xn_m.push_back(recompute ? xn_shared : take(tm, {N, C}));
      rstd_a.push_back(take(DType::F32, {N}));
      rstd_m.push_back(take(DType::F32, {N}));
      qkv.push_back(take(act, {B, T, Q}));
      att.push_back(take(act, {B, T, C}));
      lse.push_back(take(DType::F32, {B, c.n_heads, T}));
      gate_up.push_back(take(act, {N, 2 * I}));
      sw.push_back(recompute ? sw_shared : take(ts, {N, I}));
    }
    xn_act = any_codes && !recompute ? take(act, {N, C}) : Tensor();
    sw_act = any_codes && !recompute ? take(act, {N, I}) : Tensor();
    xn_f = take(act, {N, C});
    rstd_f = take(DType::F32, {N});
    losses = take(DType::F32, {N});
    // Scratch whose lifetimes never overlap shares memory (one stream orders every op): proj
    // is the forward's, dres the backward's; dxn_f dies in the final norm's backward, before
    // dxn is first written; datt and dqkv live while a layer's attention block is
    // differentiated, dsw while its MLP block is, so they sit inside dsw when it holds both.
    proj = take(act, {N, C});
    dres = proj;
    dxn = take(act, {N, C});
    dxn_f = dxn;
    dgu = take(act, {N, 2 * I});
    dsw = take(act, {N, I});
    // The head runs between the forward and the backward, when dgu and dsw (one region:
    // carved one after the other) hold nothing: its logits chunk may use them.
    char* const ws = static_cast<char*>(dgu.data);
    head_ws = ws && static_cast<char*>(dsw.data) == ws + round_up_256(dgu.nbytes())
                  ? Tensor(ws, DType::U8, dgu.device,
                           {int64_t(round_up_256(dgu.nbytes()) + dsw.nbytes())})
                  : Tensor();
    const size_t att_bytes = round_up_256(size_t(N * C) * dtype_size(act));
    if (att_bytes + size_t(N * Q) * dtype_size(act) <= size_t(N * I) * dtype_size(act)) {
      char* base = static_cast<char*>(dsw.data);  // null while only counting bytes
      datt = Tensor(base, act, dsw.device, {B, T, C});
      dqkv = Tensor(base ? base + att_bytes : nullptr, act, dsw.device, {B, T, Q});
    } else {
      datt = take(act, {B, T, C});
      dqkv = take(act, {B, T, Q});
    }
    last_x = take(act, {B, C});
    logits_act = take(act, {B, c.vocab_size});
    logits_f32 = take(DType::F32, {B, c.vocab_size});
  }
};

void LlamaModel::ActsDeleter::operator()(Acts* a) const { delete a; }

size_t LlamaModel::activation_bytes(const ModelConfig& cfg, int B, int T, DType act, bool recompute,
                                    bool fp8) {
  // With recompute the shared buffers are act-sized either way (LlamaModel::input_codes).
  return carved_bytes(cfg, B, T, act, recompute,
                      [fp8](ParamKind k, int) { return fp8 && k != ParamKind::Wo; });
}

size_t LlamaModel::carved_bytes(const ModelConfig& cfg, int B, int T, DType act, bool recompute,
                                const std::function<bool(ParamKind, int)>& codes) {
  size_t total = 0;
  Acts a;
  a.carve(cfg, B, T, act, recompute, codes, [&](DType t, Shape s) {
    total += round_up_256(size_t(s.numel()) * dtype_size(t));
    return Tensor(nullptr, t, Device::CPU, s);
  });
  return total;
}

void rope_tables(int T, int head_dim, float theta, std::vector<float>& cos,
                 std::vector<float>& sin) {
  // As transformers' LlamaRotaryEmbedding: inv_freq = 1 / theta^(2i/D) and the angle
  // t * inv_freq, all in float32; only cos/sin themselves are taken more precisely.
  const int half = head_dim / 2;
  cos.resize(size_t(T) * half);
  sin.resize(size_t(T) * half);
  for (int i = 0; i < half; ++i) {
    float expo = float(2 * i) / float(head_dim);
    float inv_freq = 1.0f / std::pow(theta, expo);
    for (int t = 0; t < T; ++t) {
      float angle = float(t) * inv_freq;
      cos[size_t(t) * half + i] = float(std::cos(double(angle)));
      sin[size_t(t) * half + i] = float(std::sin(double(angle)));
    }
  }
}

LlamaModel::LlamaModel(const ModelConfig& cfg, Backend& be, ModelOptions opts)
    : cfg_(cfg), be_(be), opts_(opts), layout_(cfg) {
  cfg_.validate();
  const size_t P = size_t(layout_.total());
  if (!opts_.provider) {
    params_ = Buffer(be_, P * 4);
    grads_ = Buffer(be_, P * 4);
    be_.zero(params());
    be_.zero(grads());
  }
  if (!opts_.provider && be_.compute_dtype() != DType::F32) {
    compute_params_ = Buffer(be_, P * dtype_size(be_.compute_dtype()));
    be_.zero(compute_params());
  }
  std::vector<float> c, s;
  rope_tables(cfg_.max_seq_len, cfg_.head_dim(), cfg_.rope_theta, c, s);
  const int64_t half = cfg_.head_dim() / 2;
  rope_cos_ = Buffer(be_, c.size() * 4);
  rope_sin_ = Buffer(be_, s.size() * 4);
  be_.upload(rope_cos_.tensor(DType::F32, {cfg_.max_seq_len, half}), c.data());
  be_.upload(rope_sin_.tensor(DType::F32, {cfg_.max_seq_len, half}), s.data());
  if (opts_.fp8) {
    Fp8Options fo = opts_.fp8_options;
    fo.keep_weights_t = fo.keep_weights_t && !opts_.provider;  // gathered per unit: not kept
    fp8_ = std::make_unique<Fp8Linears>(be_, cfg_, fo);
  }
}

namespace {
LinearKind linear_kind(ParamKind k) {
  switch (k) {
    case ParamKind::Wqkv: return LinearKind::Qkv;
    case ParamKind::Wo: return LinearKind::Wo;
    case ParamKind::WGateUp: return LinearKind::GateUp;
    case ParamKind::WDown: return LinearKind::Down;
    default: fail("linear_kind: ", int(k), " is not a layer's linear");
  }
}
bool is_linear(ParamKind k) {
  return k == ParamKind::Wqkv || k == ParamKind::Wo || k == ParamKind::WGateUp ||
         k == ParamKind::WDown;
}
}  // namespace

namespace {
// An activation's memory as the FP8 codes it holds (a u8 tensor already, or, for recompute's
// shared buffers and the gradients, the first byte per element of act memory): u8 of t's shape.
Tensor as_codes(const Tensor& t) { return Tensor(t.data, DType::U8, t.device, t.shape); }
// The same memory as codes transposed: u8 [I, N] for t of shape [..., I].
Tensor as_codes_t(const Tensor& t) {
  const int64_t I = t.dim(-1);
  return Tensor(t.data, DType::U8, t.device, {I, t.numel() / I});
}
// [..., I] -> [N, I]
Shape rows_shape(const Tensor& t) { return {t.numel() / t.dim(-1), t.dim(-1)}; }
}  // namespace

bool LlamaModel::producer_codes(ParamKind k, int l) const {
  return fp8_ && fp8_->producers_write_codes(l, linear_kind(k));
}

// qkv's, gate_up's and down's inputs are kept as codes only (half the memory of bf16), written
// by their producers or cast from the producer's values into a shared scratch. With
// recompute (one shared buffer, recomputed in the backward) only the producers' codes are:
// a cast would only add a pass there. gate_up's output gradient comes as codes from
// SwiGLU's backward under delayed scaling. wo's input is attention's output, which
// attention's backward reads in bf16, and the residual gradient (wo's and down's) flows on
// in bf16.
bool LlamaModel::input_codes(ParamKind k, int l) const {
  if (k == ParamKind::Wo || !fp8_ || !fp8_->enabled(l, linear_kind(k))) return false;
  return !opts_.recompute || producer_codes(k, l);
}
bool LlamaModel::grad_codes(ParamKind k, int l) const {
  return k == ParamKind::WGateUp && producer_codes(k, l);
}
// SwiGLU's codes come in both layouts (swiglu()): the forward reads the rows from scratch
// once, the weight gradient the transposed ones, so those are what is kept; no transpose.
bool LlamaModel::kept_transposed(ParamKind k, int l) const {
  return k == ParamKind::WDown && input_codes(k, l) && producer_codes(k, l);
}

void LlamaModel::linear_forward(ParamKind k, int l, Tensor out, Tensor inp, Tensor inp_rows) {
  if (!fp8_ || !fp8_->enabled(l, linear_kind(k))) return be_.matmul_forward(out, inp, w(k, l));
  const bool x8 = input_codes(k, l);
  TL_ASSERT(inp_rows.empty() == !kept_transposed(k, l));
  fp8_->forward(l, linear_kind(k), out, x8 ? Tensor() : inp, w(k, l),
                x8 ? (inp_rows.empty() ? as_codes(inp) : inp_rows) : Tensor());
}

void LlamaModel::linear_backward(ParamKind k, int l, Tensor dinp, Tensor dout, Tensor inp,
                                 Tensor dout_t) {
  const bool accumulate_dw = !linear_grads_pending_;
  if (!fp8_ || !fp8_->enabled(l, linear_kind(k)))
    return be_.matmul_backward(dinp, dw(k, l), dout, inp, w(k, l), false, accumulate_dw);
  const bool x8 = input_codes(k, l), dy8 = grad_codes(k, l);
  Fp8Linears::Codes x, dy;
  if (x8 && kept_transposed(k, l))
    x.cols = as_codes_t(inp);
  else if (x8)
    x.rows = as_codes(inp);
  if (dy8) dy = {as_codes(dout), dout_t};
  fp8_->backward(l, linear_kind(k), dinp, dw(k, l), dy8 ? Tensor() : dout, x8 ? Tensor() : inp,
                 w(k, l), x, dy, accumulate_dw);
}

void LlamaModel::norm(Tensor res_out, Tensor out, Tensor rstd, Tensor inp, Tensor delta,
                      ParamKind norm_kind, int norm_layer, ParamKind consumer, int layer,
                      bool measure) {
  const Tensor weight = w(norm_kind, norm_layer);
  const float eps = cfg_.norm_eps;
  const bool codes = input_codes(consumer, layer);
  if (codes && producer_codes(consumer, layer))
    return be_.rmsnorm_forward_fp8(res_out, as_codes(out), rstd, inp, delta, weight, eps,
                                   fp8_->input_cast(layer, linear_kind(consumer), measure));
  const Tensor y = codes ? acts_->xn_act : out;  // the values, then their codes if kept so
  if (delta.empty())
    be_.rmsnorm_forward(y, rstd, inp, weight, eps);
  else
    be_.add_rmsnorm_forward(res_out, y, rstd, inp, delta, weight, eps);
  if (codes) fp8_->quantize_input(layer, linear_kind(consumer), as_codes(out), y, measure);
}

Tensor LlamaModel::swiglu(int l, Tensor out, Tensor gate_up, bool measure) {
  const bool codes = input_codes(ParamKind::WDown, l);
  if (kept_transposed(ParamKind::WDown, l)) {
    const Tensor rows = fp8_->forward_input_scratch(rows_shape(out));
    be_.swiglu_forward_fp8(rows, as_codes_t(out), gate_up,
                           fp8_->input_cast(l, LinearKind::Down, measure));
    return rows;
  }
  const Tensor y = codes ? acts_->sw_act : out;
  be_.swiglu_forward(y, gate_up);
  if (codes) fp8_->quantize_input(l, LinearKind::Down, as_codes(out), y, measure);
  return Tensor();
}

Tensor LlamaModel::swiglu_grad(int l, Tensor dgate_up, Tensor dout, Tensor gate_up) {
  if (!grad_codes(ParamKind::WGateUp, l)) {
    be_.swiglu_backward(dgate_up, dout, gate_up);
    return Tensor();
  }
  const Shape rows = rows_shape(dgate_up);
  const Tensor cols = fp8_->backward_grad_t_scratch({rows[1], rows[0]});
  be_.swiglu_backward_fp8(as_codes(dgate_up), cols, dout, gate_up,
                          fp8_->grad_cast(l, LinearKind::GateUp, /*measure=*/true));
  return cols;
}

Tensor LlamaModel::compute_params() const {
  TL_CHECK(!opts_.provider, "compute_params: this model's weights live in its ParamProvider");
  if (compute_params_.data() == nullptr) return params();
  return compute_params_.tensor(be_.compute_dtype(), {layout_.total()});
}

Tensor LlamaModel::w(ParamKind k, int layer) const {
  const ParamInfo& p = layout_.get(k, layer);
  if (opts_.provider) return opts_.provider->weight(p);
  Tensor all = compute_params();
  return Tensor(static_cast<char*>(all.data) + size_t(p.offset) * dtype_size(all.dtype), all.dtype,
                all.device, p.shape);
}

Tensor LlamaModel::dw(ParamKind k, int layer) const {
  const ParamInfo& p = layout_.get(k, layer);
  if (opts_.provider) return opts_.provider->grad(p);
  return Tensor(static_cast<char*>(grads_.data()) + size_t(p.offset) * 4, DType::F32, be_.device(),
                p.shape);
}

void LlamaModel::init_weights(uint64_t seed) {
  const double C = cfg_.dim;
  const double base_std = cfg_.init_std > 0 ? cfg_.init_std : std::sqrt(2.0 / (5.0 * C));
  const double out_std = 1.0 / (std::sqrt(C) * cfg_.n_layers);  // wo, w_down
  std::vector<float> host(size_t(layout_.total()), 0.0f);
  const auto& ps = layout_.params();
  constexpr int64_t kChunk = 1 << 16;
  for (size_t i = 0; i < ps.size(); ++i) {
    const ParamInfo& p = ps[i];
    float* dst = host.data() + p.offset;
    if (p.kind == ParamKind::AttnNorm || p.kind == ParamKind::MlpNorm ||
        p.kind == ParamKind::FinalNorm) {
      for (int64_t j = 0; j < p.numel(); ++j) dst[j] = 1.0f;
      continue;
    }
    const double std = (p.kind == ParamKind::Wo || p.kind == ParamKind::WDown) ? out_std : base_std;
    // Chunks with their own seeds: parallel, yet independent of the thread count.
    const int64_t chunks = (p.numel() + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      Rng rng(hash_mix(seed, i, uint64_t(ch)));
      const int64_t end = std::min(p.numel(), (ch + 1) * kChunk);
      for (int64_t j = ch * kChunk; j < end; ++j) dst[j] = float(rng.normal() * std);
    }
  }
  set_params(host);
}

void LlamaModel::set_params(const std::vector<float>& host) {
  TL_CHECK(int64_t(host.size()) == layout_.total(), "set_params: got ", host.size(),
           " values for a model of ", layout_.total());
  if (opts_.provider) return opts_.provider->set_params(host);
  be_.upload(params(), host.data());
  sync_compute_params();
}

std::vector<float> LlamaModel::get_params() const {
  if (opts_.provider) return opts_.provider->get_params();
  std::vector<float> host(size_t(layout_.total()));
  be_.download(host.data(), params());
  return host;
}

void LlamaModel::sync_compute_params() {
  if (!opts_.provider && compute_params_.data() != nullptr) be_.convert(compute_params(), params());
}

void LlamaModel::zero_grads() {
  if (opts_.provider) return opts_.provider->zero_grads();
  // The linears' gradients are written by the next backward (linear_grads_pending_); the
  // layout's padding was zeroed with the model and no op writes it.
  for (const ParamInfo& p : layout_.params())
    if (!is_linear(p.kind)) be_.zero(dw(p.kind, p.layer));
  linear_grads_pending_ = true;
}

void LlamaModel::ensure_acts(int B, int T) {
  TL_CHECK(B > 0 && T > 0, "micro-batch must be positive, got ", B, " x ", T);
  TL_CHECK(T <= cfg_.max_seq_len, "sequence length ", T, " exceeds the model's context ",
           cfg_.max_seq_len);
  const int64_t fallbacks = fp8_ ? fp8_->fallbacks() : 0;
  if (acts_ && acts_->B == B && acts_->T == T && acts_->fp8_fallbacks == fallbacks) return;
  const DType act = be_.compute_dtype();
  const auto codes = [this](ParamKind k, int l) { return input_codes(k, l); };
  const size_t bytes = carved_bytes(cfg_, B, T, act, opts_.recompute, codes);
  std::unique_ptr<Acts, ActsDeleter> a(new Acts);
  if (acts_ && acts_->arena.bytes() >= bytes) {
    a->arena = std::move(acts_->arena);  // a smaller shape fits in the arena we have
  } else {
    if (acts_ && acts_->B == B && acts_->T == T)  // an FP8 linear's input is act again
      log_info("fp8: activations re-laid for the linears that fell back to ", dtype_name(act), ": ",
               format_bytes(double(acts_->arena.bytes())), " -> ", format_bytes(double(bytes)));
    acts_.reset();  // free the old arena before taking the new one
    a->arena = Buffer(be_, bytes);
  }
  char* base = static_cast<char*>(a->arena.data());
  size_t off = 0;
  const Device dev = be_.device();
  a->fp8_fallbacks = fallbacks;
  a->carve(cfg_, B, T, act, opts_.recompute, codes, [&](DType t, Shape s) {
    Tensor v(base + off, t, dev, s);
    off += round_up_256(size_t(s.numel()) * dtype_size(t));
    return v;
  });
  acts_ = std::move(a);
}

void LlamaModel::upload_batch(const int32_t* tokens, const int32_t* targets, int B, int T) {
  ensure_acts(B, T);
  const int64_t N = int64_t(B) * T;
  for (int64_t i = 0; i < N; ++i)
    TL_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, "token id ", tokens[i], " at position ",
             i, " is outside the model's vocabulary of ", cfg_.vocab_size);
  be_.upload(acts_->tokens, tokens);
  if (targets) {
    for (int64_t i = 0; i < N; ++i)
      TL_CHECK(targets[i] < cfg_.vocab_size, "target id ", targets[i], " at position ", i,
               " is outside the model's vocabulary of ", cfg_.vocab_size);
    be_.upload(acts_->targets, targets);
  }
}

// Embedding, then each layer; leaves the final normed hidden state in xn_f.
void LlamaModel::forward(int B, int T) {
  Acts& a = *acts_;
  const int L = cfg_.n_layers, H = cfg_.n_heads, K = cfg_.n_kv_heads;
  const float eps = cfg_.norm_eps;
  const int64_t N = int64_t(B) * T;
  const int64_t half = cfg_.head_dim() / 2;
  Tensor cos = rope_cos_.tensor(DType::F32, {cfg_.max_seq_len, half});
  Tensor sin = rope_sin_.tensor(DType::F32, {cfg_.max_seq_len, half});

  unit_forward_begin(0);
  be_.embedding_forward(a.res[0], w(ParamKind::Embed), a.tokens);
  unit_forward_begin(layer_unit(0));
  // Under FP8 the norms keep qkv's and gate_up's inputs as codes, and SwiGLU the down
  // projection's: written by themselves under delayed scaling, else cast from their values
  // (norm(), swiglu()).
  norm(Tensor(), a.xn_a[0], a.rstd_a[0], a.res[0], Tensor(), ParamKind::AttnNorm, 0,
       ParamKind::Wqkv, 0, true);
  unit_forward_end(0);
  for (int l = 0; l < L; ++l) {
    const int64_t C = cfg_.dim;
    const size_t li = size_t(l);
    // attention block: res[2l+1] = res[2l] + wo(attention(rope(wqkv(norm(res[2l])))))
    linear_forward(ParamKind::Wqkv, l, a.qkv[li].view({N, cfg_.qkv_dim()}), a.xn_a[li]);
    be_.rope_forward(a.qkv[size_t(l)], cos, sin, H, K, 0);
    be_.attention_forward(a.att[size_t(l)], a.lse[size_t(l)], a.qkv[size_t(l)], H, K);
    linear_forward(ParamKind::Wo, l, a.proj, a.att[size_t(l)].view({N, C}));
    norm(a.res[2 * li + 1], a.xn_m[li], a.rstd_m[li], a.res[2 * li], a.proj, ParamKind::MlpNorm, l,
         ParamKind::WGateUp, l, true);
    // MLP block: res[2l+2] = res[2l+1] + w_down(swiglu(w_gate_up(norm(res[2l+1]))))
    linear_forward(ParamKind::WGateUp, l, a.gate_up[li], a.xn_m[li]);
    const Tensor down_rows = swiglu(l, a.sw[li], a.gate_up[li], /*measure=*/true);
    linear_forward(ParamKind::WDown, l, a.proj, a.sw[li], down_rows);
    unit_forward_begin(layer_unit(l + 1));  // the next unit's norm weight is read below
    const bool last = l + 1 == L;
    if (last)  // the head's input stays bf16
      be_.add_rmsnorm_forward(a.res[2 * li + 2], a.xn_f, a.rstd_f, a.res[2 * li + 1], a.proj,
                              w(ParamKind::FinalNorm), eps);
    else
      norm(a.res[2 * li + 2], a.xn_a[li + 1], a.rstd_a[li + 1], a.res[2 * li + 1], a.proj,
           ParamKind::AttnNorm, l + 1, ParamKind::Wqkv, l + 1, true);
    unit_forward_end(layer_unit(l));
  }
}

void LlamaModel::head(bool with_grad, float loss_scale) {
  Acts& a = *acts_;
  // With the gradient, this op is the start of the head unit's backward.
  if (with_grad) unit_backward_begin(head_unit(cfg_.n_layers));
  be_.head_cross_entropy(a.losses, with_grad ? a.dxn_f : Tensor(),
                         with_grad ? dw(ParamKind::Head) : Tensor(), a.xn_f, w(ParamKind::Head),
                         a.targets, loss_scale, a.head_ws);
  if (!with_grad) unit_forward_end(head_unit(cfg_.n_layers));
}

void LlamaModel::backward(int B, int T) {
  Acts& a = *acts_;
  const int L = cfg_.n_layers, H = cfg_.n_heads, K = cfg_.n_kv_heads;
  const int64_t N = int64_t(B) * T, C = cfg_.dim;
  const int64_t half = cfg_.head_dim() / 2;
  Tensor cos = rope_cos_.tensor(DType::F32, {cfg_.max_seq_len, half});
  Tensor sin = rope_sin_.tensor(DType::F32, {cfg_.max_seq_len, half});

  // dres holds dL/d(res[i]) as we walk down; each RMSNorm backward adds its branch.
  be_.zero(a.dres);
  be_.rmsnorm_backward(a.dres, dw(ParamKind::FinalNorm), a.dxn_f, a.res[size_t(2 * L)],
                       w(ParamKind::FinalNorm), a.rstd_f);
  unit_backward_end(head_unit(L));
  for (int l = L - 1; l >= 0; --l) {
    const size_t li = size_t(l);
    unit_backward_begin(layer_unit(l));
    // MLP block
    if (opts_.recompute) swiglu(l, a.sw[li], a.gate_up[li], /*measure=*/false);
    linear_backward(ParamKind::WDown, l, a.dsw, a.dres, a.sw[li]);
    const Tensor dgu_t = swiglu_grad(l, a.dgu, a.dsw, a.gate_up[li]);
    if (opts_.recompute)  // (no FP8 scratch in between: dgu_t stays valid)
      norm(Tensor(), a.xn_m[li], a.rstd_m[li], a.res[2 * li + 1], Tensor(), ParamKind::MlpNorm, l,
           ParamKind::WGateUp, l, false);
    linear_backward(ParamKind::WGateUp, l, a.dxn, a.dgu, a.xn_m[li], dgu_t);
    be_.rmsnorm_backward(a.dres, dw(ParamKind::MlpNorm, l), a.dxn, a.res[2 * li + 1],
                         w(ParamKind::MlpNorm, l), a.rstd_m[li]);
    // attention block
    linear_backward(ParamKind::Wo, l, a.datt.view({N, C}), a.dres, a.att[li].view({N, C}));
    be_.attention_backward(a.dqkv, a.datt, a.qkv[li], a.att[li], a.lse[li], H, K);
    be_.rope_backward(a.dqkv, cos, sin, H, K, 0);
    if (opts_.recompute)
      norm(Tensor(), a.xn_a[li], a.rstd_a[li], a.res[2 * li], Tensor(), ParamKind::AttnNorm, l,
           ParamKind::Wqkv, l, false);
    linear_backward(ParamKind::Wqkv, l, a.dxn, a.dqkv.view({N, cfg_.qkv_dim()}), a.xn_a[li]);
    be_.rmsnorm_backward(a.dres, dw(ParamKind::AttnNorm, l), a.dxn, a.res[2 * li],
                         w(ParamKind::AttnNorm, l), a.rstd_a[li]);
    unit_backward_end(layer_unit(l));
  }
  unit_backward_begin(0);
  be_.embedding_backward(dw(ParamKind::Embed), a.dres, a.tokens);
  unit_backward_end(0);
}

LossSum LlamaModel::read_losses(int B, int T, const int32_t* targets) {
  const size_t N = size_t(B) * size_t(T);
  std::vector<float> losses(N);
  be_.download(losses.data(), acts_->losses);
  LossSum s;
  for (size_t i = 0; i < N; ++i) {
    if (targets[i] < 0) continue;
    s.sum += double(losses[i]);
    s.count++;
  }
  return s;
}

LossSum LlamaModel::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                                     float loss_scale) {
  upload_batch(tokens, targets, B, T);
  if (fp8_) fp8_->begin_pass();
  try {
    forward(B, T);
    head(true, loss_scale);
    backward(B, T);
  } catch (...) {
    if (fp8_) fp8_->cancel_pass();  // no half pass in the amax history or the kept codes
    throw;
  }
  linear_grads_pending_ = false;  // written: the next micro-batch adds to them
  if (fp8_) fp8_->end_pass();
  return read_losses(B, T, targets);
}

LossSum LlamaModel::forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) {
  upload_batch(tokens, targets, B, T);
  forward(B, T);
  head(false, 0.0f);
  return read_losses(B, T, targets);
}

void LlamaModel::forward_last_logits(const int32_t* tokens, int B, int T, float* logits) {
  upload_batch(tokens, nullptr, B, T);
  forward(B, T);
  Acts& a = *acts_;
  for (int b = 0; b < B; ++b) {
    int64_t row = int64_t(b) * T + (T - 1);
    be_.copy(a.last_x.rows(b, b + 1), a.xn_f.rows(row, row + 1));
  }
  be_.matmul_forward(a.logits_act, a.last_x, w(ParamKind::Head));
  unit_forward_end(head_unit(cfg_.n_layers));
  be_.convert(a.logits_f32, a.logits_act);
  be_.download(logits, a.logits_f32);
}

}  // namespace tl
