// The preconditions of Backend's FP8 ops (backend.h), shared by every backend so that the
// CPU twin and the GPU refuse the same calls with the same messages (naming op and tensor).
#pragma once
#include <cstdint>
#include <initializer_list>

#include "backend/backend.h"
#include "core/fp8.h"
#include "core/tensor.h"

namespace tl::fp8_args {

// t is on dev, of dtype, and has memory unless it holds no elements.
inline void expect(const char* op, const char* name, const Tensor& t, Device dev, DType dtype) {
  TL_CHECK(!t.empty() || t.numel() == 0, op, ": ", name, " is empty (", t.str(), ")");
  check_device(op, name, t, dev);
  check_dtype(op, name, t, dtype);
}

inline void scalar(const char* op, const char* name, const Tensor& t, Device dev) {
  expect(op, name, t, dev, DType::F32);
  check_shape(op, name, t, {1});
}

// amax(out, in): the element count of in.
inline int64_t amax(Device dev, const Tensor& out, const Tensor& in) {
  const char* op = "amax";
  scalar(op, "out", out, dev);
  check_device(op, "in", in, dev);
  TL_CHECK(in.dtype == DType::F32 || in.dtype == DType::BF16, op, ": in must be f32 or bf16, got ",
           in.str());
  return in.numel();
}

struct Rows {
  int64_t R, C;
};

// A cast's scalars, each f32 [1]: the amax its scale comes from, scale_inv (written) and
// amax_out (optional, recorded), three different tensors (names: how messages call them).
struct ScaleNames {
  const char *amax, *scale_inv, *amax_out;
};
inline void scales(Device dev, const char* op, ScaleNames n, const Tensor& amax,
                   const Tensor& scale_inv, const Tensor& amax_out) {
  scalar(op, n.amax, amax, dev);
  scalar(op, n.scale_inv, scale_inv, dev);
  TL_CHECK(scale_inv.data != amax.data, op, ": ", n.scale_inv, " must not be ", n.amax,
           " (the scale would change while codes are written)");
  if (amax_out.empty()) return;
  scalar(op, n.amax_out, amax_out, dev);
  TL_CHECK(amax_out.data != amax.data && amax_out.data != scale_inv.data, op, ": ", n.amax_out,
           " must be neither ", n.amax, " nor ", n.scale_inv);
}

// fp8_quantize(out, out_t, scale_inv, in, amax, f, amax_out): in's [R, C]. out [R, C] and
// out_t [C, R] are each optional, but not both absent.
inline Rows quantize(Device dev, const Tensor& out, const Tensor& out_t, const Tensor& scale_inv,
                     const Tensor& in, const Tensor& amax, const Tensor& amax_out) {
  const char* op = "fp8_quantize";
  check_device(op, "in", in, dev);
  TL_CHECK((in.dtype == DType::F32 || in.dtype == DType::BF16) && in.ndim() == 2, op,
           ": in must be f32 or bf16 [R, C], got ", in.str());
  const int64_t R = in.dim(0), C = in.dim(1);
  TL_CHECK(!out.empty() || !out_t.empty() || R * C == 0, op,
           ": give out [R, C], out_t [C, R] or both");
  if (!out.empty()) {
    expect(op, "out", out, dev, DType::U8);
    check_shape(op, "out", out, {R, C});
  }
  if (!out_t.empty()) {
    expect(op, "out_t", out_t, dev, DType::U8);
    check_shape(op, "out_t", out_t, {C, R});
    TL_CHECK(out.empty() || out.data != out_t.data, op, ": out and out_t must not be one buffer");
  }
  scales(dev, op, {"amax", "scale_inv", "amax_out"}, amax, scale_inv, amax_out);
  return {R, C};
}

// A producer op's Fp8Cast (backend.h) and its codes [R, C].
// codes_t [C, R], if not empty: the same codes transposed, apart from codes and the op's
// inputs (a tile written while another block still reads would race).
inline void cast(Device dev, const char* op, const Fp8Cast& c, const Tensor& codes, int64_t R,
                 int64_t C, const Tensor& codes_t = {}, std::initializer_list<Tensor> inputs = {}) {
  expect(op, "codes", codes, dev, DType::U8);
  check_shape(op, "codes", codes, {R, C});
  if (!codes_t.empty()) {
    expect(op, "codes_t", codes_t, dev, DType::U8);
    check_shape(op, "codes_t", codes_t, {C, R});
    TL_CHECK(!shares_memory(codes_t, codes), op, ": codes_t must not overlap codes");
    for (const Tensor& in : inputs)
      TL_CHECK(!shares_memory(codes_t, in), op, ": codes_t must not overlap the inputs");
  }
  scales(dev, op, {"cast.scale_amax", "cast.scale_inv", "cast.amax_out"}, c.scale_amax, c.scale_inv,
         c.amax_out);
}

// fp8_transpose(out_t, in): in's [R, C].
inline Rows transpose(Device dev, const Tensor& out_t, const Tensor& in) {
  const char* op = "fp8_transpose";
  expect(op, "in", in, dev, DType::U8);
  TL_CHECK(in.ndim() == 2, op, ": in must be [R, C] codes, got ", in.str());
  expect(op, "out_t", out_t, dev, DType::U8);
  check_shape(op, "out_t", out_t, {in.dim(1), in.dim(0)});
  TL_CHECK(out_t.data != in.data || in.numel() == 0, op, ": out_t must not be in");
  return {in.dim(0), in.dim(1)};
}

// fp8_matmul(out, a, b, a_scale_inv, b_scale_inv, fa, fb, accumulate): {N, M, K}.
struct Product {
  int64_t N, M, K;
};
inline Product matmul(Device dev, DType act, const Tensor& out, const Tensor& a, const Tensor& b,
                      const Tensor& a_inv, const Tensor& b_inv, Fp8Format fa, Fp8Format fb,
                      bool accumulate) {
  const char* op = "fp8_matmul";
  expect(op, "a", a, dev, DType::U8);
  expect(op, "b", b, dev, DType::U8);
  TL_CHECK(a.ndim() == 2 && b.ndim() == 2 && a.dim(1) == b.dim(1), op,
           ": a must be [N, K] and b [M, K], got ", a.str(), " and ", b.str());
  TL_CHECK(!(fa == Fp8Format::E5M2 && fb == Fp8Format::E5M2), op,
           ": E5M2 x E5M2 has no tensor-core product");
  const int64_t N = a.dim(0), M = b.dim(0), K = a.dim(1);
  // act or f32 (a gradient written, not added: a step's first backward); f32 to add to.
  expect(op, "out", out, dev, accumulate || out.dtype == DType::F32 ? DType::F32 : act);
  check_shape(op, "out", out, {N, M});
  scalar(op, "a_scale_inv", a_inv, dev);
  scalar(op, "b_scale_inv", b_inv, dev);
  return {N, M, K};
}

// fp8_amax_roll(history, current, scale_amax, last, slot): the tensor count n.
inline int64_t amax_roll(Device dev, const Tensor& history, const Tensor& current,
                         const Tensor& scale_amax, const Tensor& last, int64_t slot) {
  const char* op = "fp8_amax_roll";
  expect(op, "history", history, dev, DType::F32);
  TL_CHECK(history.ndim() == 2 && history.dim(0) >= 1, op, ": history must be [H, n], got ",
           history.str());
  const int64_t H = history.dim(0), n = history.dim(1);
  expect(op, "current", current, dev, DType::F32);
  check_shape(op, "current", current, {n});
  expect(op, "scale_amax", scale_amax, dev, DType::F32);
  check_shape(op, "scale_amax", scale_amax, {n});
  expect(op, "last", last, dev, DType::F32);
  check_shape(op, "last", last, {n});
  TL_CHECK(slot >= 0 && slot < H, op, ": slot ", slot, " is outside the history's ", H, " rows");
  return n;
}

}  // namespace tl::fp8_args
