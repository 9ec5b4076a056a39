// The backend-ops table (after ggml's test-backend-ops): one registry of op cases x shapes,
// edge shapes included, that tests/test_backend_ops.cpp runs on every backend against the
// CPU backend, and a perf registry whose table bench/NOTES.md quotes.
//
// A case is a function of (backend, OpRun): it asks OpRun for its tensors and calls the op
// once. Inputs are drawn at random from counters and rounded to bf16 on the host, so every
// backend sees the same numbers and a difference measures the op's own error. Outputs the
// op overwrites ("=") are poisoned with NaN first; outputs it accumulates into ("+=") start
// from the same random values on every backend. "act" tensors are in the backend's compute
// dtype (f32 on the CPU, bf16 on CUDA).
//
// Tolerance, max|got - ref| / max|ref| per output, by the tested backend's output dtype:
//   bf16  1e-2  one rounding to bf16 is <= 2^-9 relative per element, plus f32 accumulation
//               order; a wrong index or a missed term shows up as O(1).
//   f32   1e-3  computed in f32 from the same (bf16-valued) inputs: only summation order.
// A case may set its own where the op's math explains it (each says why).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend_test_util.h"

namespace backend_ops {

using namespace tl;

struct Output {
  std::string name;
  DType dtype;  // on the backend that produced it
  std::vector<float> values;
  double tol = -1;  // < 0: by dtype
};

// The tensors of one op call on one backend.
class OpRun {
 public:
  OpRun(Backend& be, uint64_t seed) : be_(be), seed_(seed) {}
  Backend& be() { return be_; }
  DType act() const { return be_.compute_dtype(); }

  // Random input, N(mean, std), rounded to bf16.
  Tensor in(DType dt, Shape s, double std = 1.0, double mean = 0.0);
  Tensor in_act(Shape s, double std = 1.0, double mean = 0.0) { return in(act(), s, std, mean); }
  Tensor in_values(DType dt, Shape s, const std::vector<float>& v);  // given values
  Tensor in_ids(Shape s, const std::vector<int32_t>& v);             // i32
  // Output the op overwrites: poisoned with NaN.
  Tensor out(const std::string& name, DType dt, Shape s, double tol = -1);
  // Output the op accumulates into (or rewrites in place): starts from random values.
  Tensor inout(const std::string& name, DType dt, Shape s, double std = 1.0, double tol = -1);
  // An output filled with given values (an in-place op's input).
  Tensor inout_values(const std::string& name, DType dt, Shape s, const std::vector<float>& v,
                      double tol = -1);
  // Reads every output back (after the op ran).
  std::vector<Output> results();

 private:
  uint64_t next_seed() { return hash_mix(seed_, counter_++); }
  Tensor make(DType dt, Shape s);

  Backend& be_;
  uint64_t seed_;
  uint64_t counter_ = 0;
  std::vector<backend_test::Arr> keep_;
  struct Out {
    std::string name;
    Tensor t;
    double tol;
  };
  std::vector<Out> outs_;
};

struct OpCase {
  std::string op;     // the Backend method, e.g. "rmsnorm_backward"
  std::string shape;  // "N=7 C=40"
  bool big = false;   // 1.1B-layer sizes: run on accelerators only (the CPU reference runs it)
  // Attention shape (B, T, H, K, D) when the case runs attention_forward/backward: the
  // runner checks each attention implementation on the shapes it supports.
  int attn_T = 0, attn_H = 0, attn_K = 0, attn_D = 0;
  std::function<void(OpRun&)> run;
  // Extra expectations on the tested backend's outputs (exact zeros, untouched outputs).
  std::function<void(const std::vector<Output>&)> check;
};

std::vector<OpCase> op_cases();

// ---- perf mode ----
struct PerfOp {
  std::string name;
  double bytes = 0, flops = 0;  // the fewest bytes moved, or the FLOP, per call
  int calls = 0;                // per micro-batch (forward + backward, recompute off)
  double scale = 1;             // the time measured x scale is reported (a part of the size)
  std::function<void()> run;
};
// Every op at the TinyLlama-1.1B micro-batch (8 x 2048 tokens), on tensors allocated on be
// (held by `keep`): the per-op table of bench/NOTES.md.
std::vector<PerfOp> perf_ops(Backend& be, std::vector<backend_test::Arr>& keep);

}  // namespace backend_ops
