// The CPU backend: checks each op's preconditions, then runs the templates of
// backend/cpu/ops/ with T = float on host memory, threaded with OpenMP.
#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <utility>
#include <vector>

#include "backend/cpu/checks.h"
#include "backend/cpu/ops/adamw.h"
#include "backend/cpu/ops/attention.h"
#include "backend/cpu/ops/cross_entropy.h"
#include "backend/cpu/ops/decode_attention.h"
#include "backend/cpu/ops/embedding.h"
#include "backend/cpu/ops/fp8.h"
#include "backend/cpu/ops/logprob.h"
#include "backend/cpu/ops/matmul.h"
#include "backend/cpu/ops/rmsnorm.h"
#include "backend/cpu/ops/rope.h"
#include "backend/cpu/ops/swiglu.h"
#include "backend/decode_linear_args.h"
#include "backend/fp8_args.h"

namespace tl {
namespace {

using cpu::check_cpu;
using cpu::check_f32;
using cpu::check_ids;
using cpu::check_qkv;
using cpu::check_rows;
using cpu::leading;
using cpu::with_last;

// max |in| over in's n elements (f32 or bf16), NaN if one is.
float amax_of(const Tensor& in, int64_t n) {
  return in.dtype == DType::F32
             ? cpu::amax([&](int64_t i) { return in.ptr<float>()[i]; }, n)
             : cpu::amax([&](int64_t i) { return bf16_to_f32(in.ptr<uint16_t>()[i]); }, n);
}

// Runs one op with this backend's thread count, restoring the caller's setting after.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) : saved_(omp_get_max_threads()) {
    omp_set_num_threads(threads);
  }
  ~ThreadScope() { omp_set_num_threads(saved_); }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_;
};

void to_f32(float* dst, const Tensor& src) {
  const int64_t n = src.numel();
  switch (src.dtype) {
    case DType::F32: std::memcpy(dst, src.data, src.nbytes()); return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src.ptr<uint16_t>()[i]);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src.ptr<uint16_t>()[i]);
      return;
    default: fail("convert: cannot convert from ", src.str());
  }
}
void from_f32(const Tensor& dst, const float* src) {
  const int64_t n = dst.numel();
  switch (dst.dtype) {
    case DType::F32: std::memcpy(dst.data, src, dst.nbytes()); return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst.ptr<uint16_t>()[i] = f32_to_bf16(src[i]);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst.ptr<uint16_t>()[i] = f32_to_f16(src[i]);
      return;
    default: fail("convert: cannot convert to ", dst.str());
  }
}
bool is_float_type(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads > 0 ? threads : omp_get_num_procs()) {}

  Device device() const override { return Device::CPU; }
  std::string describe() const override {
    return cat("cpu (", threads_, threads_ == 1 ? " thread)" : " threads)");
  }
  DType compute_dtype() const override { return DType::F32; }

  // ---- memory ----
  void* allocate(size_t bytes) override {
    constexpr size_t kAlign = 64;
    const size_t rounded = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
    TL_CHECK(rounded >= bytes, "cpu: cannot allocate ", bytes, " bytes (size overflow)");
    void* p = std::aligned_alloc(kAlign, rounded);
    TL_CHECK(p != nullptr, "cpu: out of host memory allocating ", bytes, " bytes");
    return p;
  }
  void deallocate(void* p) noexcept override { std::free(p); }
  void upload(Tensor dst, const void* host_src) override {
    check_device("upload", "dst", dst, Device::CPU);
    TL_CHECK(host_src || dst.nbytes() == 0, "upload: host source is null");
    if (dst.nbytes()) std::memcpy(dst.data, host_src, dst.nbytes());
  }
  void download(void* host_dst, Tensor src) override {
    check_device("download", "src", src, Device::CPU);
    TL_CHECK(host_dst || src.nbytes() == 0, "download: host destination is null");
    if (src.nbytes()) std::memcpy(host_dst, src.data, src.nbytes());
  }
  void copy(Tensor dst, Tensor src) override {
    check_device("copy", "dst", dst, Device::CPU);
    check_cpu("copy", "src", src, dst.dtype);
    TL_CHECK(dst.numel() == src.numel(), "copy: dst ", dst.str(), " and src ", src.str(),
             " differ in size");
    if (dst.nbytes()) std::memmove(dst.data, src.data, dst.nbytes());
  }
  void zero(Tensor t) override {
    check_device("zero", "t", t, Device::CPU);
    if (t.nbytes()) std::memset(t.data, 0, t.nbytes());
  }
  void accumulate(Tensor dst, Tensor src) override {
    check_cpu("accumulate", "dst", dst, DType::F32);
    check_device("accumulate", "src", src, Device::CPU);
    TL_CHECK(dst.numel() == src.numel(), "accumulate: dst ", dst.str(), " and src ", src.str(),
             " differ in size");
    TL_CHECK(src.dtype == DType::F32 || src.dtype == DType::BF16,
             "accumulate: src must be f32 or bf16, got ", src.str());
    float* d = dst.ptr<float>();
    const int64_t n = dst.numel();
    if (src.dtype == DType::F32) {
      for (int64_t i = 0; i < n; ++i) d[i] += src.ptr<float>()[i];
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] += bf16_to_f32(src.ptr<uint16_t>()[i]);
    }
  }
  void convert(Tensor dst, Tensor src) override {
    check_device("convert", "dst", dst, Device::CPU);
    check_device("convert", "src", src, Device::CPU);
    TL_CHECK(dst.numel() == src.numel(), "convert: dst ", dst.str(), " and src ", src.str(),
             " differ in size");
    TL_CHECK(is_float_type(dst.dtype) && is_float_type(src.dtype),
             "convert: only f32, bf16 and f16 convert; got ", src.str(), " -> ", dst.str());
    if (dst.dtype == src.dtype) return copy(dst, src);
    if (src.dtype == DType::F32) return from_f32(dst, src.ptr<float>());
    if (dst.dtype == DType::F32) return to_f32(dst.ptr<float>(), src);
    std::vector<float> tmp(size_t(src.numel()));  // bf16 <-> f16 through f32
    to_f32(tmp.data(), src);
    from_f32(dst, tmp.data());
  }
  void synchronize() override {}

  // ---- embedding ----
  void embedding_forward(Tensor out, Tensor table, Tensor tokens) override {
    const char* op = "embedding_forward";
    check_f32(op, "table", table);
    TL_CHECK(table.ndim() == 2, op, ": table must be [V, C], got ", table.str());
    check_f32(op, "out", out);
    check_rows(op, "out", out);
    check_shape(op, "out", out, with_last(out.shape, table.dim(1)));
    check_cpu(op, "tokens", tokens, DType::I32);
    check_shape(op, "tokens", tokens, leading(out.shape));
    check_ids(op, "tokens", tokens, table.dim(0), false);
    ThreadScope ts(threads_);
    cpu::embedding_forward(out.ptr<float>(), table.ptr<float>(), tokens.ptr<int32_t>(),
                           tokens.numel(), table.dim(1));
  }
  void embedding_backward(Tensor dtable, Tensor dout, Tensor tokens) override {
    const char* op = "embedding_backward";
    check_f32(op, "dtable", dtable);
    TL_CHECK(dtable.ndim() == 2, op, ": dtable must be [V, C], got ", dtable.str());
    check_f32(op, "dout", dout);
    check_rows(op, "dout", dout);
    check_shape(op, "dout", dout, with_last(dout.shape, dtable.dim(1)));
    check_cpu(op, "tokens", tokens, DType::I32);
    check_shape(op, "tokens", tokens, leading(dout.shape));
    check_ids(op, "tokens", tokens, dtable.dim(0), false);
    ThreadScope ts(threads_);
    cpu::embedding_backward(dtable.ptr<float>(), dout.ptr<float>(), tokens.ptr<int32_t>(),
                            tokens.numel(), dtable.dim(1));
  }

  // ---- RMSNorm ----
  // Checks inp [rows..., C], weight [C], out like inp, rstd [rows...]; returns C.
  static int64_t check_norm(const char* op, const char* out_name, const Tensor& out,
                            const Tensor& rstd, const Tensor& inp, const Tensor& weight) {
    check_f32(op, "inp", inp);
    check_rows(op, "inp", inp);
    const int64_t C = inp.dim(-1);
    check_f32(op, "weight", weight);
    check_shape(op, "weight", weight, Shape{C});
    check_f32(op, out_name, out);
    check_shape(op, out_name, out, inp.shape);
    check_f32(op, "rstd", rstd);
    check_shape(op, "rstd", rstd, leading(inp.shape));
    return C;
  }
  void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps) override {
    const int64_t C = check_norm("rmsnorm_forward", "out", out, rstd, inp, weight);
    ThreadScope ts(threads_);
    cpu::rmsnorm_forward(out.ptr<float>(), rstd.ptr<float>(), inp.ptr<float>(), weight.ptr<float>(),
                         rstd.numel(), C, double(eps));
  }
  void add_rmsnorm_forward(Tensor res_out, Tensor out, Tensor rstd, Tensor res_in, Tensor delta,
                           Tensor weight, float eps) override {
    const char* op = "add_rmsnorm_forward";
    const int64_t C = check_norm(op, "out", out, rstd, res_in, weight);
    check_f32(op, "delta", delta);
    check_shape(op, "delta", delta, res_in.shape);
    check_f32(op, "res_out", res_out);
    check_shape(op, "res_out", res_out, res_in.shape);
    ThreadScope ts(threads_);
    cpu::add_rmsnorm_forward(res_out.ptr<float>(), out.ptr<float>(), rstd.ptr<float>(),
                             res_in.ptr<float>(), delta.ptr<float>(), weight.ptr<float>(),
                             rstd.numel(), C, double(eps));
  }
  void rmsnorm_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                        Tensor rstd) override {
    const char* op = "rmsnorm_backward";
    const int64_t C = check_norm(op, "dout", dout, rstd, inp, weight);
    if (!dinp.empty()) {
      check_f32(op, "dinp", dinp);
      check_shape(op, "dinp", dinp, inp.shape);
    }
    if (!dweight.empty()) {
      check_f32(op, "dweight", dweight);
      check_shape(op, "dweight", dweight, Shape{C});
    }
    ThreadScope ts(threads_);
    cpu::rmsnorm_backward(dinp.ptr<float>(), dweight.ptr<float>(), dout.ptr<float>(),
                          inp.ptr<float>(), weight.ptr<float>(), rstd.ptr<float>(), rstd.numel(),
                          C);
  }

  // ---- linear layers ----
  void matmul_forward(Tensor out, Tensor inp, Tensor weight) override {
    const char* op = "matmul_forward";
    check_f32(op, "inp", inp);
    check_rows(op, "inp", inp);
    check_f32(op, "weight", weight);
    TL_CHECK(weight.ndim() == 2, op, ": weight must be [O, I], got ", weight.str());
    const int64_t I = weight.dim(1), O = weight.dim(0);
    check_shape(op, "inp", inp, with_last(inp.shape, I));
    check_f32(op, "out", out);
    check_shape(op, "out", out, with_last(inp.shape, O));
    ThreadScope ts(threads_);
    cpu::matmul_forward(out.ptr<float>(), inp.ptr<float>(), weight.ptr<float>(),
                        leading(inp.shape).numel(), I, O);
  }
  void matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                       bool accumulate_dinp, bool accumulate_dweight) override {
    const char* op = "matmul_backward";
    check_f32(op, "weight", weight);
    TL_CHECK(weight.ndim() == 2, op, ": weight must be [O, I], got ", weight.str());
    const int64_t I = weight.dim(1), O = weight.dim(0);
    check_f32(op, "inp", inp);
    check_rows(op, "inp", inp);
    check_shape(op, "inp", inp, with_last(inp.shape, I));
    check_f32(op, "dout", dout);
    check_shape(op, "dout", dout, with_last(inp.shape, O));
    if (!dinp.empty()) {
      check_f32(op, "dinp", dinp);
      check_shape(op, "dinp", dinp, inp.shape);
    }
    if (!dweight.empty()) {
      check_f32(op, "dweight", dweight);
      check_shape(op, "dweight", dweight, weight.shape);
    }
    ThreadScope ts(threads_);
    cpu::matmul_backward(dinp.ptr<float>(), dweight.ptr<float>(), dout.ptr<float>(),
                         inp.ptr<float>(), weight.ptr<float>(), leading(inp.shape).numel(), I, O,
                         accumulate_dinp, accumulate_dweight);
  }

  // ---- FP8 operands ----
  void amax(Tensor out, Tensor in) override {
    const int64_t n = fp8_args::amax(Device::CPU, out, in);
    out.ptr<float>()[0] = amax_of(in, n);
  }
  void fp8_quantize(Tensor out, Tensor out_t, Tensor scale_inv, Tensor in, Tensor amax, Fp8Format f,
                    Tensor amax_out) override {
    const auto [R, C] = fp8_args::quantize(Device::CPU, out, out_t, scale_inv, in, amax, amax_out);
    const cpu::Fp8Scale s = cpu::fp8_scales(amax.ptr<float>()[0], f);
    uint8_t* rows = out.empty() ? nullptr : out.ptr<uint8_t>();
    uint8_t* cols = out_t.empty() ? nullptr : out_t.ptr<uint8_t>();
    ThreadScope ts(threads_);
    if (in.dtype == DType::F32)
      cpu::fp8_quantize(
          rows, cols, [&](int64_t i) { return in.ptr<float>()[i]; }, R, C, s.scale, f);
    else
      cpu::fp8_quantize(
          rows, cols, [&](int64_t i) { return bf16_to_f32(in.ptr<uint16_t>()[i]); }, R, C, s.scale,
          f);
    scale_inv.ptr<float>()[0] = s.inverse;
    if (!amax_out.empty()) {  // a scale from other passes: a non-finite tensor must give NaN
      const float m = amax_of(in, R * C);
      amax_out.ptr<float>()[0] = cpu::amax_max(amax_out.ptr<float>()[0], m);
      if (!std::isfinite(m)) scale_inv.ptr<float>()[0] = std::numeric_limits<float>::quiet_NaN();
    }
  }
  void fp8_transpose(Tensor out_t, Tensor in) override {
    const auto [R, C] = fp8_args::transpose(Device::CPU, out_t, in);
    const uint8_t* src = in.ptr<uint8_t>();
    uint8_t* dst = out_t.ptr<uint8_t>();
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) dst[c * R + r] = src[r * C + c];
  }
  void fp8_matmul(Tensor out, Tensor a, Tensor b, Tensor a_scale_inv, Tensor b_scale_inv,
                  Fp8Format fa, Fp8Format fb, bool accumulate) override {
    const auto [N, M, K] = fp8_args::matmul(Device::CPU, DType::F32, out, a, b, a_scale_inv,
                                            b_scale_inv, fa, fb, accumulate);
    ThreadScope ts(threads_);
    cpu::fp8_matmul(out.ptr<float>(), a.ptr<uint8_t>(), b.ptr<uint8_t>(), N, M, K,
                    a_scale_inv.ptr<float>()[0], b_scale_inv.ptr<float>()[0], fa, fb, accumulate);
  }
  void fp8_amax_roll(Tensor history, Tensor current, Tensor scale_amax, Tensor last,
                     int64_t slot) override {
    const int64_t n = fp8_args::amax_roll(Device::CPU, history, current, scale_amax, last, slot);
    cpu::fp8_amax_roll(history.ptr<float>(), current.ptr<float>(), scale_amax.ptr<float>(),
                       last.ptr<float>(), history.dim(0), n, slot);
  }

  // ---- rotary embedding ----
  void rope(const char* op, const char* name, Tensor qkv, Tensor cos, Tensor sin, int H, int K,
            int pos0, bool backward) {
    const int D = check_qkv(op, name, qkv, H, K);
    TL_CHECK(D % 2 == 0, op, ": head_dim ", D, " must be even");
    check_f32(op, "cos", cos);
    check_f32(op, "sin", sin);
    TL_CHECK(cos.ndim() == 2 && cos.dim(1) == D / 2, op, ": cos must be [Tmax, ", D / 2, "], got ",
             cos.str());
    check_shape(op, "sin", sin, cos.shape);
    const int64_t Tn = qkv.dim(1);
    TL_CHECK(pos0 >= 0 && pos0 + Tn <= cos.dim(0), op, ": positions [", pos0, ", ", pos0 + Tn,
             ") exceed the tables' ", cos.dim(0), " rows");
    ThreadScope ts(threads_);
    if (backward)
      cpu::rope_backward(qkv.ptr<float>(), cos.ptr<float>(), sin.ptr<float>(), qkv.dim(0), Tn, H, K,
                         D, pos0);
    else
      cpu::rope_forward(qkv.ptr<float>(), cos.ptr<float>(), sin.ptr<float>(), qkv.dim(0), Tn, H, K,
                        D, pos0);
  }
  void rope_forward(Tensor qkv, Tensor cos, Tensor sin, int n_head, int n_kv_head,
                    int pos0) override {
    rope("rope_forward", "qkv", qkv, cos, sin, n_head, n_kv_head, pos0, false);
  }
  void rope_backward(Tensor dqkv, Tensor cos, Tensor sin, int n_head, int n_kv_head,
                     int pos0) override {
    rope("rope_backward", "dqkv", dqkv, cos, sin, n_head, n_kv_head, pos0, true);
  }

  // ---- attention ----
  // Checks out [B, T, H*D] and lse [B, H, T] against qkv; returns D.
  static int check_attention(const char* op, const Tensor& out, const Tensor& lse,
                             const Tensor& qkv, int H, int K) {
    const int D = check_qkv(op, "qkv", qkv, H, K);
    const int64_t B = qkv.dim(0), Tn = qkv.dim(1);
    check_f32(op, "out", out);
    check_shape(op, "out", out, Shape{B, Tn, int64_t(H) * D});
    check_f32(op, "lse", lse);
    check_shape(op, "lse", lse, Shape{B, H, Tn});
    return D;
  }
  void attention_forward(Tensor out, Tensor lse, Tensor qkv, int n_head, int n_kv_head) override {
    const int D = check_attention("attention_forward", out, lse, qkv, n_head, n_kv_head);
    ThreadScope ts(threads_);
    cpu::attention_forward(out.ptr<float>(), lse.ptr<float>(), qkv.ptr<float>(), qkv.dim(0),
                           qkv.dim(1), n_head, n_kv_head, D);
  }
  void attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse, int n_head,
                          int n_kv_head) override {
    const char* op = "attention_backward";
    const int D = check_attention(op, out, lse, qkv, n_head, n_kv_head);
    check_f32(op, "dout", dout);
    check_shape(op, "dout", dout, out.shape);
    check_f32(op, "dqkv", dqkv);
    check_shape(op, "dqkv", dqkv, qkv.shape);
    ThreadScope ts(threads_);
    cpu::attention_backward(dqkv.ptr<float>(), dout.ptr<float>(), qkv.ptr<float>(),
                            out.ptr<float>(), lse.ptr<float>(), qkv.dim(0), qkv.dim(1), n_head,
                            n_kv_head, D);
  }

  // ---- incremental decoding ----
  void attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor cos,
                        Tensor sin, Tensor pos, int kv_len, int n_head, int n_kv_head) override {
    const char* op = "attention_decode";
    const int D = check_qkv(op, "qkv", qkv, n_head, n_kv_head);
    TL_CHECK(D % 2 == 0, op, ": head_dim ", D, " must be even");
    const int64_t B = qkv.dim(0), Tn = qkv.dim(1);
    check_f32(op, "out", out);
    check_shape(op, "out", out, Shape{B, Tn, int64_t(n_head) * D});
    check_f32(op, "k_cache", k_cache);
    TL_CHECK(k_cache.ndim() == 3 && k_cache.dim(0) == B && k_cache.dim(2) == int64_t(n_kv_head) * D,
             op, ": k_cache must be [", B, ", Tmax, ", int64_t(n_kv_head) * D, "], got ",
             k_cache.str());
    check_f32(op, "v_cache", v_cache);
    check_shape(op, "v_cache", v_cache, k_cache.shape);
    const int64_t Tmax = k_cache.dim(1);
    check_f32(op, "cos", cos);
    check_f32(op, "sin", sin);
    TL_CHECK(cos.ndim() == 2 && cos.dim(1) == D / 2, op, ": cos must be [Tmax, ", D / 2, "], got ",
             cos.str());
    check_shape(op, "sin", sin, cos.shape);
    check_cpu(op, "pos", pos, DType::I32);
    check_shape(op, "pos", pos, Shape{B});
    TL_CHECK(kv_len >= Tn && kv_len <= Tmax && kv_len <= cos.dim(0), op, ": kv_len ", kv_len,
             " must be in [Tn = ", Tn, ", min(Tmax = ", Tmax, ", rope rows = ", cos.dim(0), ")]");
    for (int64_t b = 0; b < B; ++b)
      TL_CHECK(pos.ptr<int32_t>()[b] >= 0 && pos.ptr<int32_t>()[b] + Tn <= kv_len, op, ": pos[", b,
               "] = ", pos.ptr<int32_t>()[b], " puts its ", Tn,
               " new tokens outside [0, kv_len = ", kv_len, ")");
    ThreadScope ts(threads_);
    cpu::attention_decode(out.ptr<float>(), qkv.ptr<float>(), k_cache.ptr<float>(),
                          v_cache.ptr<float>(), cos.ptr<float>(), sin.ptr<float>(),
                          pos.ptr<int32_t>(), B, Tn, Tmax, kv_len, n_head, n_kv_head, D);
  }
  void prefetch(const std::vector<Tensor>& tensors) override {
    for (const Tensor& t : tensors) check_device("prefetch", "tensors", t, Device::CPU);
  }
  // The three ops it stands for, in f32 (backend.h: the CUDA backend fuses them).
  void decode_linear(Tensor out, Tensor x, Tensor weight, const DecodeLinear& f) override {
    const linear_args::Dims d =
        linear_args::decode_linear(Device::CPU, DType::F32, out, x, weight, f);
    std::vector<float> fx, rstd, prod;
    Tensor in = x;
    if (f.in != LinearIn::Plain) {
      fx.resize(size_t(d.M * d.I));
      in = Tensor(fx.data(), DType::F32, Device::CPU, {d.M, d.I});
      if (f.in == LinearIn::RmsNorm) {
        rstd.resize(size_t(d.M));
        rmsnorm_forward(in, Tensor(rstd.data(), DType::F32, Device::CPU, {d.M}), x, f.norm_weight,
                        f.eps);
      } else {
        swiglu_forward(in, x);
      }
    }
    if (f.residual.empty()) return matmul_forward(out, in, weight);
    prod.resize(size_t(d.M * d.O));
    matmul_forward(Tensor(prod.data(), DType::F32, Device::CPU, {d.M, d.O}), in, weight);
    const float* r = f.residual.ptr<float>();
    float* o = out.ptr<float>();
    for (size_t i = 0; i < prod.size(); ++i) o[i] = r[i] + prod[i];
  }

  // ---- SwiGLU ----
  static int64_t check_swiglu(const char* op, const Tensor& out, const Tensor& gate_up) {
    check_f32(op, "gate_up", gate_up);
    check_rows(op, "gate_up", gate_up);
    TL_CHECK(gate_up.dim(-1) % 2 == 0, op, ": gate_up's last dimension must be 2 * I, got ",
             gate_up.str());
    const int64_t I = gate_up.dim(-1) / 2;
    check_f32(op, "out", out);
    check_shape(op, "out", out, with_last(gate_up.shape, I));
    return I;
  }
  void swiglu_forward(Tensor out, Tensor gate_up) override {
    const int64_t I = check_swiglu("swiglu_forward", out, gate_up);
    ThreadScope ts(threads_);
    cpu::swiglu_forward(out.ptr<float>(), gate_up.ptr<float>(), leading(gate_up.shape).numel(), I);
  }
  void swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up) override {
    const char* op = "swiglu_backward";
    const int64_t I = check_swiglu(op, dout, gate_up);
    check_f32(op, "dgate_up", dgate_up);
    check_shape(op, "dgate_up", dgate_up, gate_up.shape);
    ThreadScope ts(threads_);
    cpu::swiglu_backward(dgate_up.ptr<float>(), dout.ptr<float>(), gate_up.ptr<float>(),
                         leading(gate_up.shape).numel(), I);
  }

  // The FP8 producers: the plain op into f32, then the cast, which is what Fp8Cast promises.
  // plain(y) writes the op's output y [N, C] (f32, host memory of ours).
  template <class Plain>
  void cast_output(Tensor codes, const Fp8Cast& cast, int64_t N, int64_t C, Plain&& plain,
                   Tensor codes_t = {}) {
    std::vector<float> y(static_cast<size_t>(N * C));
    const Tensor t(y.data(), DType::F32, Device::CPU, {N, C});
    plain(t);
    fp8_quantize(codes, codes_t, cast.scale_inv, t, cast.scale_amax, cast.format, cast.amax_out);
  }
  void rmsnorm_forward_fp8(Tensor res_out, Tensor codes, Tensor rstd, Tensor inp, Tensor delta,
                           Tensor weight, float eps, Fp8Cast cast) override {
    const char* op = delta.empty() ? "rmsnorm_forward_fp8" : "add_rmsnorm_forward_fp8";
    check_f32(op, "inp", inp);
    check_rows(op, "inp", inp);
    const int64_t N = leading(inp.shape).numel(), C = inp.dim(-1);
    TL_CHECK(N > 0 && C > 0, op, ": FP8 codes of an empty tensor");
    fp8_args::cast(Device::CPU, op, cast, codes, N, C);
    cast_output(codes, cast, N, C, [&](Tensor y) {
      if (delta.empty())
        rmsnorm_forward(y.view(inp.shape), rstd, inp, weight, eps);
      else
        add_rmsnorm_forward(res_out, y.view(inp.shape), rstd, inp, delta, weight, eps);
    });
  }
  void swiglu_forward_fp8(Tensor codes, Tensor codes_t, Tensor gate_up, Fp8Cast cast) override {
    check_f32("swiglu_forward_fp8", "gate_up", gate_up);
    check_rows("swiglu_forward_fp8", "gate_up", gate_up);
    const int64_t N = leading(gate_up.shape).numel(), I = gate_up.dim(-1) / 2;
    fp8_args::cast(Device::CPU, "swiglu_forward_fp8", cast, codes, N, I, codes_t, {gate_up});
    cast_output(
        codes, cast, N, I,
        [&](Tensor y) {
          swiglu_forward(y, gate_up.view({N, 2 * I}));
        },
        codes_t);
  }
  void swiglu_backward_fp8(Tensor dcodes, Tensor dcodes_t, Tensor dout, Tensor gate_up,
                           Fp8Cast cast) override {
    check_f32("swiglu_backward_fp8", "gate_up", gate_up);
    check_rows("swiglu_backward_fp8", "gate_up", gate_up);
    const int64_t N = leading(gate_up.shape).numel(), I2 = gate_up.dim(-1);
    fp8_args::cast(Device::CPU, "swiglu_backward_fp8", cast, dcodes, N, I2, dcodes_t,
                   {dout, gate_up});
    cast_output(
        dcodes, cast, N, I2,
        [&](Tensor dy) {
          swiglu_backward(dy, dout.numel() == N * (I2 / 2) ? dout.view({N, I2 / 2}) : dout,
                          gate_up.view({N, I2}));
        },
        dcodes_t);
  }

  // ---- output head + cross-entropy ----
  void head_cross_entropy(Tensor losses, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                          Tensor targets, float loss_scale, Tensor workspace) override {
    const char* op = "head_cross_entropy";
    // The CPU twin keeps no logits chunk: it checks the workspace and leaves it alone.
    if (!workspace.empty()) check_device(op, "workspace", workspace, Device::CPU);
    check_f32(op, "weight", weight);
    TL_CHECK(weight.ndim() == 2, op, ": weight must be [V, C], got ", weight.str());
    const int64_t V = weight.dim(0), C = weight.dim(1);
    check_f32(op, "x", x);
    check_rows(op, "x", x);
    check_shape(op, "x", x, with_last(x.shape, C));
    check_f32(op, "losses", losses);
    check_shape(op, "losses", losses, leading(x.shape));
    check_cpu(op, "targets", targets, DType::I32);
    check_shape(op, "targets", targets, leading(x.shape));
    check_ids(op, "targets", targets, V, true);
    const bool grad = !dx.empty();
    if (grad) {
      check_f32(op, "dx", dx);
      check_shape(op, "dx", dx, x.shape);
    }
    if (grad && !dweight.empty()) {
      check_f32(op, "dweight", dweight);
      check_shape(op, "dweight", dweight, weight.shape);
    }
    ThreadScope ts(threads_);
    cpu::head_cross_entropy(losses.ptr<float>(), grad ? dx.ptr<float>() : nullptr,
                            grad ? dweight.ptr<float>() : nullptr, x.ptr<float>(),
                            weight.ptr<float>(), targets.ptr<int32_t>(), losses.numel(), C, V,
                            double(loss_scale));
  }

  // ---- output head, log-probabilities (evaluation) ----
  void head_logprob(Tensor logp, Tensor greedy, Tensor x, Tensor weight, Tensor targets) override {
    const char* op = "head_logprob";
    check_f32(op, "weight", weight);
    TL_CHECK(weight.ndim() == 2, op, ": weight must be [V, C], got ", weight.str());
    const int64_t V = weight.dim(0), C = weight.dim(1);
    check_f32(op, "x", x);
    check_rows(op, "x", x);
    check_shape(op, "x", x, with_last(x.shape, C));
    check_f32(op, "logp", logp);
    check_shape(op, "logp", logp, leading(x.shape));
    check_cpu(op, "greedy", greedy, DType::I32);
    check_shape(op, "greedy", greedy, leading(x.shape));
    check_cpu(op, "targets", targets, DType::I32);
    check_shape(op, "targets", targets, leading(x.shape));
    check_ids(op, "targets", targets, V, false);
    ThreadScope ts(threads_);
    cpu::head_logprob(logp.ptr<float>(), greedy.ptr<int32_t>(), x.ptr<float>(), weight.ptr<float>(),
                      targets.ptr<int32_t>(), logp.numel(), C, V);
  }

  void argmax_rows(Tensor ids, Tensor x, Tensor positions, int32_t* host_ids) override {
    const char* op = "argmax_rows";
    check_f32(op, "x", x);
    check_rows(op, "x", x);
    TL_CHECK(x.ndim() >= 1 && x.shape[x.ndim() - 1] > 0, op, ": x must be [N, V] with V > 0, got ",
             x.str());
    check_cpu(op, "ids", ids, DType::I32);
    check_shape(op, "ids", ids, leading(x.shape));
    const bool advance = !positions.empty();
    if (advance) {
      check_cpu(op, "positions", positions, DType::I32);
      check_shape(op, "positions", positions, ids.shape);
    }
    ThreadScope ts(threads_);
    cpu::argmax_rows(ids.ptr<int32_t>(), x.ptr<float>(), ids.numel(), x.shape[x.ndim() - 1]);
    if (host_ids) std::copy_n(ids.ptr<int32_t>(), ids.numel(), host_ids);
    if (advance)
      for (int64_t r = 0; r < ids.numel(); ++r) positions.ptr<int32_t>()[r] += 1;
  }

  // ---- optimizer ----
  void sum_squares(Tensor out, Tensor g) override {
    check_f32("sum_squares", "out", out);
    TL_CHECK(out.numel() == 1, "sum_squares: out must hold 1 element, got ", out.str());
    check_f32("sum_squares", "g", g);
    ThreadScope ts(threads_);
    out.ptr<float>()[0] = float(cpu::sum_squares(g.ptr<float>(), g.numel()));
  }
  void adamw_update(Tensor params, Tensor grads, Tensor m, Tensor v, Tensor params_compute,
                    Tensor grad_norm_sq, const AdamWArgs& args) override {
    const char* op = "adamw_update";
    check_f32(op, "params", params);
    for (auto [name, t] : std::initializer_list<std::pair<const char*, Tensor>>{
             {"grads", grads}, {"m", m}, {"v", v}}) {
      check_f32(op, name, t);
      check_shape(op, name, t, params.shape);
    }
    if (!params_compute.empty()) {
      check_device(op, "params_compute", params_compute, Device::CPU);
      TL_CHECK(is_float_type(params_compute.dtype) && params_compute.numel() == params.numel(), op,
               ": params_compute must be f32, bf16 or f16 with ", params.numel(), " elements, got ",
               params_compute.str());
    }
    if (!grad_norm_sq.empty()) {
      check_f32(op, "grad_norm_sq", grad_norm_sq);
      TL_CHECK(grad_norm_sq.numel() == 1, op, ": grad_norm_sq must hold 1 element, got ",
               grad_norm_sq.str());
    }
    TL_CHECK(args.step >= 1, op, ": step must be >= 1 (1-based), got ", args.step);
    TL_CHECK(args.beta1 >= 0 && args.beta1 < 1 && args.beta2 >= 0 && args.beta2 < 1, op,
             ": betas must be in [0, 1), got ", args.beta1, ", ", args.beta2);
    cpu::AdamWStep s{args.lr, args.beta1, args.beta2, args.eps, args.weight_decay, 1.0, args.step};
    if (!grad_norm_sq.empty())
      s.grad_scale = cpu::clip_scale(grad_norm_sq.ptr<float>()[0], args.max_grad_norm);
    ThreadScope ts(threads_);
    cpu::adamw_update(params.ptr<float>(), grads.ptr<float>(), m.ptr<float>(), v.ptr<float>(),
                      params.numel(), s);
    if (!params_compute.empty()) convert(params_compute, params);
  }

 private:
  int threads_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace tl
