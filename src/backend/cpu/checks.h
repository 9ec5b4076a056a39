// Preconditions shared by the CPU backend's ops: device, dtype and the shape conventions
// of backend.h (row-wise ops take [rows..., cols]; attention takes [B, T, ...]).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace tl::cpu {

inline void check_cpu(const char* op, const char* name, const Tensor& t, DType dtype) {
  TL_CHECK(!t.empty() || t.numel() == 0, op, ": ", name, " has no data");
  check_device(op, name, t, Device::CPU);
  check_dtype(op, name, t, dtype);
}
inline void check_f32(const char* op, const char* name, const Tensor& t) {
  check_cpu(op, name, t, DType::F32);
}

// The shape without its last dimension: the rows of a row-wise op.
inline Shape leading(const Shape& s) {
  Shape r = s;
  r.ndim = s.ndim - 1;
  r.dims[size_t(r.ndim)] = 0;
  return r;
}
// The shape with its last dimension replaced: an output's shape from its input's.
inline Shape with_last(const Shape& s, int64_t last) {
  Shape r = s;
  r.dims[size_t(s.ndim - 1)] = last;
  return r;
}
// A row-wise operand: at least 2 dims, rows = every dimension but the last.
inline void check_rows(const char* op, const char* name, const Tensor& t) {
  TL_CHECK(t.ndim() >= 2, op, ": ", name, " must have at least 2 dimensions [rows..., cols], got ",
           t.str());
}

// Ids must index a table of n rows; negatives are allowed only where they mean "ignore".
inline void check_ids(const char* op, const char* name, const Tensor& ids, int64_t n,
                      bool allow_negative) {
  const int32_t* p = ids.ptr<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i) {
    TL_CHECK(p[i] < n && (allow_negative || p[i] >= 0), op, ": ", name, "[", i, "] = ", p[i],
             " is out of range [", allow_negative ? "-inf" : "0", ", ", n, ")");
  }
}

// Packed qkv [B, T, (H + 2K) * D]: returns D after checking the heads divide it.
inline int check_qkv(const char* op, const char* name, const Tensor& qkv, int H, int K) {
  check_f32(op, name, qkv);
  TL_CHECK(qkv.ndim() == 3, op, ": ", name, " must be [B, T, (H + 2K) * D], got ", qkv.str());
  TL_CHECK(H > 0 && K > 0 && H % K == 0, op, ": n_head (", H,
           ") must be a positive multiple of n_kv_head (", K, ")");
  const int64_t width = qkv.dim(2);
  TL_CHECK(width % (H + 2 * K) == 0 && width > 0, op, ": ", name, " row width ", width,
           " is not (n_head + 2 * n_kv_head) * head_dim with n_head ", H, ", n_kv_head ", K);
  return int(width / (H + 2 * K));
}

}  // namespace tl::cpu
