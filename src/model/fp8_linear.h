// The four linear kinds of every layer (qkv, wo, gate_up, down) in FP8 (train.precision
// fp8, issue #16): per-tensor current scaling, E4M3 for activations and weights, E5M2 for
// the incoming gradients; the LM head, attention, norms and the optimizer stay as they are.
//
// One linear, with s = scale from the tensor's amax (backend.h, fp8_quantize):
//   forward  out[N,O] = x[N,I] . W[O,I]^T          codes x8 [N,I], w8 [O,I]
//   dgrad    dx[N,I]  = dy[N,O] . W               codes dy8 [N,O], W^T [I,O]
//   wgrad    dW[O,I] (+)= dy^T[O,N] . x[N,I]      codes dy^T [O,N], x^T [I,N]
// Hopper's FP8 products take K-contiguous operands only (TN), hence the transposed codes;
// the backward reuses the forward's amaxes of x and W (the same tensors).
//
// Scaling (Fp8Options): current (the default) measures each tensor's amax in a pass of its
// own just before casting it. Delayed (Transformer Engine's recipe) casts with the max of the
// last H training passes' amaxes and records this pass's amax in the cast itself, so no
// tensor is read twice; values past the history's max saturate until the history catches up.
// Its first pass (no history yet) scales as current scaling does. The history lives on the
// device and is not in checkpoints: a resumed run rebuilds it from its first pass.
//
// Every amax stays on the device until amaxes() reads them (at log_interval). A GEMM whose
// tensor overflowed (amax not finite) gives NaN, so that step is skipped by the step guard;
// fall_back() then moves that GEMM to the backend's ordinary product for the rest of the run.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace tl {

enum class LinearKind : int { Qkv, Wo, GateUp, Down };
constexpr int kLinearKinds = 4;
const char* linear_kind_name(LinearKind k);  // "qkv", "wo", "gate_up", "down"

// The amaxes of one linear's FP8 tensors, as last measured.
struct Fp8Amax {
  float x = 0, w = 0, dy = 0;
};

enum class Fp8Scaling { Current, Delayed };
struct Fp8Options {
  Fp8Scaling scaling = Fp8Scaling::Current;
  int amax_history = 16;  // delayed: passes whose amaxes the scale takes the max of
  // A training pass's forward casts each weight in both layouts from one read and keeps W^T
  // for the backward's dgrad (one byte a linear weight: Fp8Linears::kept_bytes). The model
  // turns it off where a ParamProvider (FSDP) supplies the weights: gathered per unit, they
  // are not kept whole between forward and backward.
  bool keep_weights_t = true;
  // Likewise wo's input (attention's output, which the model keeps in the compute dtype for
  // attention's backward): cast in both layouts in the forward, x^T kept for wgrad
  // (kept_input_bytes: one byte an element of every layer's [N, dim]).
  bool keep_wo_input_t = true;
};
const char* fp8_scaling_name(Fp8Scaling s);                 // "current", "delayed"
Fp8Scaling fp8_scaling_from_name(const std::string& name);  // throws naming the choices

// Hopper's FP8 products need every K and output width a multiple of 16 (cuBLASLt's 16-byte
// leading dimensions): dim, ffn_dim, the qkv width and the tokens of a micro-batch (wgrad's
// K). Throws naming the first that is not, so a run is refused before anything is allocated
// (the CPU twin would not mind, the GPU would fail mid-step).
void check_fp8_shapes(const ModelConfig& cfg, int64_t tokens);

class Fp8Linears {
 public:
  Fp8Linears(Backend& be, const ModelConfig& cfg, Fp8Options opts = {});
  // Device memory the codes of a micro-batch of N tokens take (three scratch buffers).
  static size_t scratch_bytes(const ModelConfig& cfg, int64_t N);
  // Device memory of the kept W^T codes (Fp8Options::keep_weights_t): every layer's four.
  static size_t kept_bytes(const ModelConfig& cfg);
  // Device memory of wo's kept x^T codes (Fp8Options::keep_wo_input_t) at N tokens.
  static size_t kept_input_bytes(const ModelConfig& cfg, int64_t N);

  // out[N,O] = inp[N,I] @ w[O,I]^T. inp_codes (u8 [N,I], optional): inp's codes as its
  // producer wrote them with input_cast() or quantize_input() made them; inp is then not
  // read (and may be empty).
  void forward(int layer, LinearKind k, Tensor out, Tensor inp, Tensor w, Tensor inp_codes = {});
  // An operand's codes as its producer wrote them: rows [N, ·] and/or cols, the same
  // transposed [·, N] (what the weight gradient's product reads).
  struct Codes {
    Tensor rows, cols;
  };
  // dinp[N,I] = dout[N,O] @ w; dw[O,I] (f32) += (= unless accumulate_dw) dout^T @ inp. inp
  // and w as in the forward;
  // x: inp's codes (input_cast() / quantize_input(); only cols are read, transposed from
  // rows if missing); dy: dout's codes as written with grad_cast() (rows, and cols or a
  // transpose of rows). Operands given as codes are not read as values (and may be empty).
  void backward(int layer, LinearKind k, Tensor dinp, Tensor dw, Tensor dout, Tensor inp, Tensor w,
                Codes x = {}, Codes dy = {}, bool accumulate_dw = true);
  // Scratch a caller's producer writes codes into for the very next forward() (`inp_codes`)
  // or backward() (`dy.cols`) of this object: valid until then; nothing else of this class
  // runs in between. Buffers 0 and 2 of scratch_bytes().
  Tensor forward_input_scratch(Shape s) { return codes(0, s); }
  Tensor backward_grad_t_scratch(Shape s) { return codes(2, s); }

  // Producers that write this linear's operands as codes themselves (Fp8Cast, backend.h):
  // only under delayed scaling past its first pass (a scale from past amaxes is known before
  // the values are) and while the GEMM runs in FP8. The casts: E4M3 for the input, E5M2 for
  // the output gradient, at this tensor's scale; measure (the tensor's first write in a pass)
  // records its amax.
  bool producers_write_codes(int layer, LinearKind k) const {
    return delayed_now() && enabled(layer, k);
  }
  Fp8Cast input_cast(int layer, LinearKind k, bool measure) const;
  Fp8Cast grad_cast(int layer, LinearKind k, bool measure) const;
  // The input's codes [N,I] from its values `in` (act), as forward() would cast them, for a
  // caller that keeps only the codes (the model's saved activations): measure as in cast().
  void quantize_input(int layer, LinearKind k, Tensor codes, Tensor in, bool measure);

  // Whether this GEMM runs in FP8 (false once fall_back() moved it to the plain product).
  bool enabled(int layer, LinearKind k) const { return enabled_[slot(layer, k)]; }
  void fall_back(int layer, LinearKind k) {
    enabled_[slot(layer, k)] = false;
    ++fallbacks_;
  }
  // GEMMs moved to the plain product so far (the model re-lays its activations when it
  // changes: a fallen-back linear's input is kept in the compute dtype again).
  int64_t fallbacks() const { return fallbacks_; }
  // A training pass (forward + backward of one micro-batch) begins / has ended: delayed
  // scaling zeroes this pass's amaxes, then rolls them into the history. Forwards outside
  // a pass (evaluation) use the scales without adding to the history.
  void begin_pass();
  void end_pass();
  // A pass that did not finish (an exception between begin_pass and end_pass): nothing is
  // rolled into the history and later forwards are evaluation forwards again.
  void cancel_pass() { in_pass_ = false; }

  // [layer][kind]: the amaxes the last training pass measured (under current scaling, the
  // last forward's x and w). Downloaded: a host sync, for log intervals.
  std::vector<Fp8Amax> amaxes() const;
  // [layer][kind]: the amaxes the next pass's scales come from (delayed: the history's max).
  std::vector<Fp8Amax> scaling_amaxes() const;
  const Fp8Options& options() const { return opts_; }

 private:
  enum Role : int { kX, kW, kDy, kRoles };
  size_t slot(int layer, LinearKind k) const { return size_t(layer) * kLinearKinds + size_t(k); }
  int64_t index(int layer, LinearKind k, Role r) const {
    return int64_t(slot(layer, k) * kRoles + size_t(r));
  }
  int64_t tensors() const { return int64_t(layers_) * kLinearKinds * kRoles; }
  // Element [1] of a [tensors] f32 buffer.
  Tensor at(const Buffer& b, int layer, LinearKind k, Role r) const;
  // The scale_inv scalar: 256 bytes apart (FP8 GEMM scale pointers must be aligned).
  Tensor scale_inv(int layer, LinearKind k, Role r) const;
  Tensor codes(int which, Shape s);  // scratch u8 tensor of buffer `which` (0, 1, 2)
  // The kept codes: layer l's W^T [I, O] of kind k, and wo's x^T [I, N].
  Tensor kept_weight_t(int l, LinearKind k, int64_t I, int64_t O) const;
  Tensor kept_wo_input_t(int l, int64_t N, int64_t I) const;
  bool delayed_now() const { return opts_.scaling == Fp8Scaling::Delayed && passes_ > 0; }
  // Codes of in at this tensor's scale into out [R, C] and/or out_t [C, R] (one read of in):
  // current scaling measures the amax first when `measure` (the tensor's first cast in a
  // pass) and reuses it otherwise; delayed scaling scales by the history and, when
  // `measure`, records in's amax in the same pass.
  void cast(Tensor out, Tensor out_t, Tensor in, int layer, LinearKind k, Role r, Fp8Format f,
            bool measure);
  std::vector<Fp8Amax> download(const Buffer& b) const;

  Backend& be_;
  int layers_;
  Fp8Options opts_;
  Buffer current_;     // [tensors]: amaxes measured in this pass (or the last forward)
  Buffer last_;        // [tensors]: delayed: the last training pass's amaxes
  Buffer history_;     // [H, tensors]: delayed: the last H passes' amaxes (finite ones)
  Buffer scale_amax_;  // [tensors]: delayed: the max over the history
  Buffer scale_inv_;   // per tensor, 256 bytes apart
  Buffer codes_[3];    // grown to the largest operand seen
  // keep_weights_t: [layer][kind] W^T codes [I, O], 256-byte aligned, allocated by the first
  // training forward; ready while the pass's forward has cast them and its backward not yet read.
  Buffer weights_t_;
  std::array<size_t, kLinearKinds + 1> weights_t_layout_;  // a layer's share, by kind
  std::vector<bool> weights_t_ready_;
  // keep_wo_input_t: [layer] wo's x^T codes [dim, N], grown to the largest N; ready likewise.
  Buffer wo_inputs_t_;
  std::vector<bool> wo_input_t_ready_;
  bool in_pass_ = false;  // between begin_pass() and end_pass()
  std::vector<bool> enabled_;
  int64_t passes_ = 0;  // training passes rolled into the history
  int64_t fallbacks_ = 0;
};

}  // namespace tl
