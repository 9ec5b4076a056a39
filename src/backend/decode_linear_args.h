// The preconditions of Backend::decode_linear (backend.h), shared by every backend so that
// the CPU twin and the GPU refuse the same calls with the same messages.
#pragma once
#include <cstdint>

#include "backend/backend.h"
#include "core/tensor.h"

namespace tl::linear_args {

struct Dims {
  int64_t M, I, O;
};

// out[M,O], x[M,I] (or [M,2I] for SwiGlu), weight[O,I], norm_weight[I], residual[M,O]: all of
// dtype act on dev; out shares no memory with x, weight or the norm weight (residual may be
// out itself, element for element, but no other overlap).
inline Dims decode_linear(Device dev, DType act, const Tensor& out, const Tensor& x,
                          const Tensor& weight, const Backend::DecodeLinear& f) {
  const char* op = "decode_linear";
  check_device(op, "weight", weight, dev);
  check_dtype(op, "weight", weight, act);
  TL_CHECK(weight.ndim() == 2, op, ": weight must be [O, I], got ", weight.str());
  const int64_t O = weight.dim(0), I = weight.dim(1);
  const bool swiglu = f.in == Backend::LinearIn::SwiGlu;
  check_device(op, "x", x, dev);
  check_dtype(op, "x", x, act);
  TL_CHECK(x.ndim() == 2 && x.dim(1) == (swiglu ? 2 * I : I), op, ": x must be [M, ",
           swiglu ? 2 * I : I, "] for weight ", weight.str(), swiglu ? " (SwiGLU input)" : "",
           ", got ", x.str());
  const int64_t M = x.dim(0);
  check_device(op, "out", out, dev);
  check_dtype(op, "out", out, act);
  check_shape(op, "out", out, {M, O});
  if (f.in == Backend::LinearIn::RmsNorm) {
    check_device(op, "norm_weight", f.norm_weight, dev);
    check_dtype(op, "norm_weight", f.norm_weight, act);
    check_shape(op, "norm_weight", f.norm_weight, {I});
    TL_CHECK(f.eps >= 0, op, ": eps must be >= 0, got ", f.eps);
    TL_CHECK(!shares_memory(out, f.norm_weight), op, ": out shares memory with norm_weight");
  }
  if (!f.residual.empty()) {
    check_device(op, "residual", f.residual, dev);
    check_dtype(op, "residual", f.residual, act);
    check_shape(op, "residual", f.residual, {M, O});
    TL_CHECK(f.residual.data == out.data || !shares_memory(out, f.residual), op,
             ": residual overlaps out without being it");
  }
  if (!f.prefetch.empty()) check_device(op, "prefetch", f.prefetch, dev);
  TL_CHECK(!shares_memory(out, x), op, ": out shares memory with x");
  TL_CHECK(!shares_memory(out, weight), op, ": out shares memory with weight");
  return {M, I, O};
}

}  // namespace tl::linear_args
