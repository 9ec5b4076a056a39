// The Llama model over the Backend op interface: parameters in flat arrays (ParamLayout
// order), activations for one micro-batch shape, forward, backward and inference helpers.
// The same code drives the CPU (f32) and CUDA (bf16 compute, f32 master) backends.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/fp8_linear.h"
#include "model/param_layout.h"
#include "model/param_provider.h"

namespace tl {

struct LossSum {
  double sum = 0;     // sum of per-token cross-entropies
  int64_t count = 0;  // tokens with a target
  // No target at all is no loss of 0: NaN, so that the trainer's guard skips such a step.
  double mean() const {
    return count ? sum / double(count) : std::numeric_limits<double>::quiet_NaN();
  }
  LossSum& operator+=(const LossSum& o) {  // micro-batches and evaluation batches add up
    sum += o.sum, count += o.count;
    return *this;
  }
};

struct ModelOptions {
  // Recompute RMSNorm outputs and the SwiGLU product in the backward instead of keeping
  // them per layer (saves ~40% of activation memory for a few cheap elementwise passes).
  bool recompute = false;
  // When set, weights and gradients live there (sharded training) and the model allocates
  // neither; params(), grads() and compute_params() are then unavailable.
  ParamProvider* provider = nullptr;
  // train.precision fp8: the layers' four linear kinds in FP8 (model/fp8_linear.h), scaled
  // as fp8_options says.
  bool fp8 = false;
  Fp8Options fp8_options;
};

class LlamaModel {
 public:
  LlamaModel(const ModelConfig& cfg, Backend& be, ModelOptions opts = {});
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  Backend& backend() { return be_; }

  Tensor params() const { return params_.tensor(DType::F32, {layout_.total()}); }  // f32 [P]
  Tensor grads() const { return grads_.tensor(DType::F32, {layout_.total()}); }    // f32 [P]
  // Weights in the compute dtype: the master array itself when that is f32.
  Tensor compute_params() const;

  // TinyLlama's init (normal, std sqrt(2 / (5 C)), or init_std; 1 / (sqrt(C) L) for the
  // attention output and down projections), generated on the host so every backend starts
  // identically.
  void init_weights(uint64_t seed);
  void set_params(const std::vector<float>& host);  // flat [P]; also refreshes compute copy
  std::vector<float> get_params() const;
  void sync_compute_params();  // master -> compute copy (no-op when they are the same)
  // Gradients to zero before a step's micro-batches. The linears' weight gradients (~90% of
  // the parameters) are not cleared here: the next forward_backward writes them instead of
  // adding to them (the ~4 GB clearing pass at 1.1B goes); the rest is set to zero.
  void zero_grads();

  // One micro-batch: tokens/targets are host i32 [B*T]. Gradients of
  // loss_scale * sum(token losses) accumulate into grads() (the linears' are written by the
  // first call after zero_grads(): until then grads() holds their old values).
  LossSum forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                           float loss_scale);
  // Evaluation: the loss only.
  LossSum forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Logits of the last position of each row: logits host f32 [B, V].
  void forward_last_logits(const int32_t* tokens, int B, int T, float* logits);

  // Allocates activations for B x T now; later calls with shapes that fit reuse them.
  void reserve(int B, int T) { ensure_acts(B, T); }

  // The FP8 linears (null unless ModelOptions::fp8).
  Fp8Linears* fp8() { return fp8_.get(); }

  // Bytes of activation memory for a micro-batch of B x T (fp8: train.precision fp8, whose
  // linears keep qkv's, gate_up's and down's inputs as 1-byte codes).
  static size_t activation_bytes(const ModelConfig& cfg, int B, int T, DType act, bool recompute,
                                 bool fp8 = false);

 private:
  struct Acts;
  static size_t carved_bytes(const ModelConfig& cfg, int B, int T, DType act, bool recompute,
                             const std::function<bool(ParamKind, int)>& codes);
  void ensure_acts(int B, int T);
  void upload_batch(const int32_t* tokens, const int32_t* targets, int B, int T);
  void forward(int B, int T);
  void head(bool with_grad, float loss_scale);
  void backward(int B, int T);
  LossSum read_losses(int B, int T, const int32_t* targets);
  Tensor w(ParamKind k, int layer = -1) const;  // compute-dtype weight view
  // A layer's linear: FP8 when enabled for it, else the backend's matmul. Operands kept as
  // FP8 codes (input_codes, grad_codes) are read as codes from the activation memory, the
  // down projection's input transposed there when kept_transposed; inp_rows / dout_t: codes
  // the producer wrote into the FP8 scratch (swiglu(), swiglu_grad()) for this call.
  void linear_forward(ParamKind k, int layer, Tensor out, Tensor inp, Tensor inp_rows = {});
  void linear_backward(ParamKind k, int layer, Tensor dinp, Tensor dout, Tensor inp,
                       Tensor dout_t = {});
  // Delayed FP8 scaling past its first pass, with this linear in FP8: its producers write
  // its operands as codes themselves (producer_codes). input_codes: the linear's input is
  // kept as codes only (qkv, gate_up and down in FP8; written by the producer or cast from
  // its values); grad_codes: its output gradient arrives as codes (gate_up, from SwiGLU's
  // backward, when producer_codes).
  // kept_transposed: the input is kept as codes transposed [I, N] (the weight gradient's
  // operand; down, when SwiGLU writes both layouts itself).
  bool producer_codes(ParamKind k, int layer) const;
  bool input_codes(ParamKind k, int layer) const;
  bool grad_codes(ParamKind k, int layer) const;
  bool kept_transposed(ParamKind k, int layer) const;
  // The producers: RMSNorm of inp (delta empty) or of res_out = inp + delta into out, and
  // SwiGLU's forward (into out) and backward (into dgate_up), each writing codes into that
  // memory when its consumer takes them, itself or through a cast of its values (measure:
  // record the amax; a recompute in the backward does not). When SwiGLU writes the codes
  // itself it writes both layouts: swiglu() keeps down's input transposed in out and returns
  // the rows (in the FP8 scratch, for the forward that follows), swiglu_grad() returns
  // gate_up's gradient transposed (scratch, for the backward that follows); else empty.
  void norm(Tensor res_out, Tensor out, Tensor rstd, Tensor inp, Tensor delta, ParamKind norm_kind,
            int norm_layer, ParamKind consumer, int layer, bool measure);
  Tensor swiglu(int layer, Tensor out, Tensor gate_up, bool measure);
  Tensor swiglu_grad(int layer, Tensor dgate_up, Tensor dout, Tensor gate_up);
  Tensor dw(ParamKind k, int layer = -1) const;  // f32 gradient view
  // ParamProvider hooks (no-ops without a provider).
  void unit_forward_begin(int u) {
    if (opts_.provider) opts_.provider->before_forward(u);
  }
  void unit_forward_end(int u) {
    if (opts_.provider) opts_.provider->after_forward(u);
  }
  void unit_backward_begin(int u) {
    if (opts_.provider) opts_.provider->before_backward(u);
  }
  void unit_backward_end(int u) {
    if (opts_.provider) opts_.provider->after_backward(u);
  }

  ModelConfig cfg_;
  Backend& be_;
  ModelOptions opts_;
  ParamLayout layout_;
  Buffer params_, grads_, compute_params_;  // compute_params_ empty when act dtype is f32
  // zero_grads() left the linears' weight gradients to the next backward to write, not add to.
  bool linear_grads_pending_ = false;
  Buffer rope_cos_, rope_sin_;  // f32 [max_seq_len, D/2]
  struct ActsDeleter {
    void operator()(Acts* a) const;
  };
  std::unique_ptr<Acts, ActsDeleter> acts_;
  std::unique_ptr<Fp8Linears> fp8_;
};

// RoPE tables computed the way Hugging Face does in float32, so that positions agree
// with HF checkpoints: cos/sin [T, D/2].
void rope_tables(int T, int head_dim, float theta, std::vector<float>& cos,
                 std::vector<float>& sin);

}  // namespace tl
