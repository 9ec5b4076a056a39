// The four linear kinds of every layer (qkv, wo, gate_up, down) in FP8 (train.precision
// fp8, issue #16): per-tensor current scaling, E4M3 for activations and weights, E5M2 for
// the incoming gradients; the LM head, attention, norms and the optimizer stay as they are.
//
// One linear, with s = scale from the tensor's amax (backend.h, fp8_quantize):
//   forward  out[N,O] = x[N,I] . W[O,I]^T          codes x8 [N,I], w8 [O,I]
//   dgrad    dx[N,I]  = dy[N,O] . W               codes dy8 [N,O], W^T [I,O]
//   wgrad    dW[O,I] += dy^T[O,N] . x[N,I]        codes dy^T [O,N], x^T [I,N]
// Hopper's FP8 products take K-contiguous operands only (TN), hence the transposed codes;
// the backward reuses the forward's amaxes of x and W (the same tensors).
//
// Every amax stays on the device until stats() reads them (at log_interval). A GEMM whose
// tensor overflowed (amax not finite) gives NaN, so that step is skipped by the step guard;
// fall_back() then moves that GEMM to the backend's ordinary product for the rest of the run.
#pragma once
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

// Hopper's FP8 products need every K and output width a multiple of 16 (cuBLASLt's 16-byte
// leading dimensions): dim, ffn_dim, the qkv width and the tokens of a micro-batch (wgrad's
// K). Throws naming the first that is not, so a run is refused before anything is allocated
// (the CPU twin would not mind, the GPU would fail mid-step).
void check_fp8_shapes(const ModelConfig& cfg, int64_t tokens);

class Fp8Linears {
 public:
  Fp8Linears(Backend& be, const ModelConfig& cfg);
  // Device memory the codes of a micro-batch of N tokens take (two scratch buffers).
  static size_t scratch_bytes(const ModelConfig& cfg, int64_t N);

  // out[N,O] = inp[N,I] @ w[O,I]^T
  void forward(int layer, LinearKind k, Tensor out, Tensor inp, Tensor w);
  // dinp[N,I] = dout[N,O] @ w; dw[O,I] (f32) += dout^T @ inp. inp and w as in the forward.
  void backward(int layer, LinearKind k, Tensor dinp, Tensor dw, Tensor dout, Tensor inp, Tensor w);

  // Whether this GEMM runs in FP8 (false once fall_back() moved it to the plain product).
  bool enabled(int layer, LinearKind k) const { return enabled_[slot(layer, k)]; }
  void fall_back(int layer, LinearKind k) { enabled_[slot(layer, k)] = false; }
  // [layer][kind], downloaded (a host sync: call at log intervals).
  std::vector<Fp8Amax> amaxes() const;

 private:
  size_t slot(int layer, LinearKind k) const { return size_t(layer) * kLinearKinds + size_t(k); }
  enum Role : int { kX, kW, kDy, kRoles };
  // One f32 scalar per (layer, kind, role), 256 bytes apart (FP8 GEMM scale pointers must
  // be aligned).
  Tensor scalar(const Buffer& b, int layer, LinearKind k, Role r) const;
  Tensor codes(int which, Shape s);  // scratch u8 tensor of buffer `which` (0, 1)

  Backend& be_;
  int layers_;
  Buffer amax_, scale_inv_;  // per (layer, kind, role)
  Buffer codes_[2];          // grown to the largest operand seen
  std::vector<bool> enabled_;
};

}  // namespace tl
