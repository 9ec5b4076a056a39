// Host-side precondition checks shared by the CUDA launchers; messages name the op and
// the tensor ("rmsnorm_forward: weight must be bf16, got f32[2048]@cuda").
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace tl::gpu {

// t is on the GPU, of dtype, and has memory unless it holds no elements.
inline void check_cuda(const char* op, const char* name, const Tensor& t, DType dtype) {
  TL_CHECK(!t.empty() || t.numel() == 0, op, ": ", name, " is empty (", t.str(), ")");
  check_device(op, name, t, Device::CUDA);
  check_dtype(op, name, t, dtype);
}

// A row-wise operand [rows..., cols]: at least 2 dimensions.
inline void check_rows(const char* op, const char* name, const Tensor& t) {
  TL_CHECK(t.ndim() >= 2, op, ": ", name, " must have at least 2 dimensions [rows..., cols], got ",
           t.str());
}

// The shape without its last dimension (the rows of a row-wise op).
inline Shape leading(const Shape& s) {
  Shape r = s;
  r.ndim = s.ndim - 1;
  r.dims[size_t(r.ndim)] = 0;
  return r;
}

// The shape with its last dimension replaced.
inline Shape with_last(const Shape& s, int64_t last) {
  Shape r = s;
  r.dims[size_t(s.ndim - 1)] = last;
  return r;
}

inline int64_t rows_of(const Tensor& t) { return leading(t.shape).numel(); }

// Kernels index columns with int; row counts and element offsets use int64.
inline void check_int_range(const char* op, const char* what, int64_t v) {
  TL_CHECK(v >= 0 && v < (int64_t(1) << 31), op, ": ", what, " = ", v, " exceeds 2^31 - 1");
}

}  // namespace tl::gpu
