// The backend-ops registry: every op of backend/backend.h at small, odd and edge shapes, and
// at the 1.1B layer sizes (big). Conventions and tolerances: backend_ops.h.
#include <cmath>

#include "backend_ops.h"
#include "core/fp8.h"
#include "core/rng.h"
#include "model/llama.h"

namespace backend_ops {

namespace bt = backend_test;

// ---- OpRun ----

Tensor OpRun::make(DType dt, Shape s) {
  keep_.push_back(bt::alloc(be_, dt, s));
  return keep_.back().t;
}

Tensor OpRun::in(DType dt, Shape s, double std, double mean) {
  return in_values(dt, s, bt::randn(s.numel(), next_seed(), std, mean));
}

Tensor OpRun::in_values(DType dt, Shape s, const std::vector<float>& v) {
  Tensor t = make(dt, s);
  bt::upload(be_, t, bt::round_bf16(v));
  return t;
}

Tensor OpRun::in_ids(Shape s, const std::vector<int32_t>& v) {
  Tensor t = make(DType::I32, s);
  be_.upload(t, v.data());
  return t;
}

Tensor OpRun::out(const std::string& name, DType dt, Shape s, double tol) {
  Tensor t = make(dt, s);
  bt::upload(be_, t, std::vector<float>(size_t(s.numel()), bt::kNaN));
  outs_.push_back({name, t, tol});
  return t;
}

Tensor OpRun::inout(const std::string& name, DType dt, Shape s, double std, double tol) {
  return inout_values(name, dt, s, bt::randn(s.numel(), next_seed(), std), tol);
}

Tensor OpRun::inout_values(const std::string& name, DType dt, Shape s, const std::vector<float>& v,
                           double tol) {
  Tensor t = in_values(dt, s, v);
  outs_.push_back({name, t, tol});
  return t;
}

std::vector<Output> OpRun::results() {
  std::vector<Output> r;
  for (const Out& o : outs_) r.push_back({o.name, o.t.dtype, bt::download(be_, o.t), o.tol});
  return r;
}

namespace {

// Why a case sets its own tolerance.
constexpr double kExact = 0;         // copies: the values themselves
constexpr double kF32Sum = 1e-5;     // f32 elementwise or a sum of f32 squares: f32 rounding only
constexpr double kLoss = 5e-3;       // the logits are rounded to bf16 before the softmax
constexpr double kAttention = 3e-2;  // P and dS are rounded to bf16 before the second GEMMs

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> d) {
  std::string s;
  for (auto& [k, v] : d) s += cat(s.empty() ? "" : " ", k, "=", v);
  return s;
}

void add(std::vector<OpCase>& v, std::string op, std::string shape, bool big,
         std::function<void(OpRun&)> run) {
  OpCase c;
  c.op = std::move(op);
  c.shape = std::move(shape);
  c.big = big;
  c.run = std::move(run);
  v.push_back(std::move(c));
}

void embedding(std::vector<OpCase>& v) {
  struct S {
    int64_t N, V, C;
    bool big;
  };
  for (S k :
       {S{7, 37, 40, false}, S{9, 11, 36, false}, S{1, 1, 8, false}, S{2048, 32000, 2048, true}}) {
    std::vector<int32_t> ids = bt::ids(k.N, k.V, 11);
    for (int64_t i = 0; i < k.N; i += 3) ids[size_t(i)] = int32_t(i % std::min<int64_t>(3, k.V));
    const std::string sh = dims({{"N", k.N}, {"V", k.V}, {"C", k.C}});
    add(v, "embedding_forward", sh, k.big, [=](OpRun& r) {
      Tensor tok = r.in_ids({k.N}, ids), table = r.in_act({k.V, k.C});
      r.be().embedding_forward(r.out("out", r.act(), {k.N, k.C}, kExact), table, tok);
    });
    add(v, "embedding_backward", sh, k.big, [=](OpRun& r) {  // long runs of repeated ids
      Tensor tok = r.in_ids({k.N}, ids), dout = r.in_act({k.N, k.C});
      r.be().embedding_backward(r.inout("dtable", DType::F32, {k.V, k.C}, 1.0, kF32Sum), dout, tok);
    });
  }
}

void rmsnorm(std::vector<OpCase>& v) {
  struct S {
    int64_t N, C;
    bool big;
  };
  for (S k : {S{7, 40, false}, S{5, 36, false}, S{1, 2, false}, S{3, 1000, false},
              S{33, 4096, false}, S{2048, 2048, true}}) {
    const std::string sh = dims({{"N", k.N}, {"C", k.C}});
    add(v, "rmsnorm_forward", sh, k.big, [=](OpRun& r) {
      Tensor x = r.in_act({k.N, k.C}, 2.0), w = r.in_act({k.C}, 0.3, 1.0);
      r.be().rmsnorm_forward(r.out("out", r.act(), {k.N, k.C}), r.out("rstd", DType::F32, {k.N}), x,
                             w, 1e-5f);
    });
    // The CUDA backend rounds res_out to bf16 and normalizes that, the CPU normalizes the f32
    // sum: rstd then differs by the rounding's effect on the mean square (~2^-9 / sqrt(C)).
    add(v, "add_rmsnorm_forward", sh, k.big, [=](OpRun& r) {
      Tensor x = r.in_act({k.N, k.C}, 2.0), d = r.in_act({k.N, k.C}), w = r.in_act({k.C}, 0.3, 1.0);
      r.be().add_rmsnorm_forward(r.out("res_out", r.act(), {k.N, k.C}),
                                 r.out("out", r.act(), {k.N, k.C}),
                                 r.out("rstd", DType::F32, {k.N}, 4e-3), x, d, w, 1e-5f);
    });
    add(v, "rmsnorm_backward", sh, k.big, [=](OpRun& r) {
      Tensor x = r.in_act({k.N, k.C}, 2.0), w = r.in_act({k.C}, 0.3, 1.0);
      Tensor rstd = r.in(DType::F32, {k.N}, 0.1, 1.0), dout = r.in_act({k.N, k.C});
      r.be().rmsnorm_backward(r.inout("dinp", r.act(), {k.N, k.C}),
                              r.inout("dweight", DType::F32, {k.C}), dout, x, w, rstd);
    });
  }
}

void matmul(std::vector<OpCase>& v) {
  // Odd sizes (leading dimensions not a multiple of 8), one row, then the 1.1B layers: qkv
  // 2048 -> 2560, gate_up 2048 -> 11264, down 5632 -> 2048, head 2048 -> 32000.
  struct S {
    int64_t N, I, O;
    bool big;
  };
  for (S k : {S{7, 40, 24, false}, S{5, 13, 7, false}, S{1, 24, 37, false}, S{1, 1, 1, false},
              S{300, 260, 72, false}, S{1024, 2048, 2560, true}, S{512, 2048, 11264, true},
              S{1024, 5632, 2048, true}, S{64, 2048, 32000, true}}) {
    const std::string sh = dims({{"N", k.N}, {"I", k.I}, {"O", k.O}});
    const double ws = 1.0 / std::sqrt(double(k.I));
    add(v, "matmul_forward", sh, k.big, [=](OpRun& r) {
      Tensor inp = r.in_act({k.N, k.I}), w = r.in_act({k.O, k.I}, ws);
      r.be().matmul_forward(r.out("out", r.act(), {k.N, k.O}), inp, w);
    });
    // dinp and dweight each written or added to (= =: a step's first backward; = +=: the
    // micro-batches after it; += +=), and dinp += alone.
    struct M {
      const char* name;
      bool acc_dinp, has_dw, acc_dw;
    };
    for (M m : {M{"matmul_backward", false, true, false},
                M{"matmul_backward (dweight +=)", false, true, true},
                M{"matmul_backward (+=)", true, true, true},
                M{"matmul_backward (dinp +=)", true, false, false}})
      add(v, m.name, sh, k.big, [=](OpRun& r) {
        Tensor inp = r.in_act({k.N, k.I}), w = r.in_act({k.O, k.I}, ws),
               dout = r.in_act({k.N, k.O});
        Tensor dinp =
            m.acc_dinp ? r.inout("dinp", r.act(), {k.N, k.I}) : r.out("dinp", r.act(), {k.N, k.I});
        Tensor dw = !m.has_dw  ? Tensor()
                    : m.acc_dw ? r.inout("dweight", DType::F32, {k.O, k.I})
                               : r.out("dweight", DType::F32, {k.O, k.I});
        r.be().matmul_backward(dinp, dw, dout, inp, w, m.acc_dinp, m.acc_dw);
      });
  }
  // decode_linear: few rows (CUDA's fused kernel: 1, 3, 8), more (12: the separate ops) and
  // I % 8 != 0 (the separate ops too), every input kind without, with and in place of the
  // residual (the cases with a separate one also pass a tensor to prefetch); then the 1.1B layers
  // as a decode step runs them (qkv and gate_up behind their norms, wo + residual, down behind
  // SwiGLU + residual).
  using In = Backend::LinearIn;
  struct L {
    int64_t M, I, O;
    In in;
    int res;  // 0: none, 1: a separate tensor, 2: out itself
    bool big;
  };
  for (L k : {L{1, 40, 24, In::Plain, 0, false}, L{3, 16, 37, In::RmsNorm, 1, false},
              L{8, 24, 9, In::SwiGlu, 2, false}, L{12, 32, 20, In::RmsNorm, 2, false},
              L{12, 16, 8, In::SwiGlu, 1, false}, L{5, 8, 3, In::Plain, 2, false},
              L{2, 13, 7, In::RmsNorm, 1, false}, L{1, 2048, 2560, In::RmsNorm, 0, true},
              L{1, 2048, 2048, In::Plain, 2, true}, L{1, 2048, 11264, In::RmsNorm, 0, true},
              L{1, 5632, 2048, In::SwiGlu, 2, true}, L{8, 5632, 2048, In::SwiGlu, 1, true}}) {
    const char* kind = k.in == In::Plain ? "plain" : k.in == In::RmsNorm ? "rmsnorm" : "swiglu";
    const char* res = k.res == 0 ? "" : k.res == 1 ? ", + residual" : ", += in place";
    const double ws = 1.0 / std::sqrt(double(k.I));
    add(v, cat("decode_linear (", kind, res, ")"), dims({{"M", k.M}, {"I", k.I}, {"O", k.O}}),
        k.big, [=](OpRun& r) {
          const int64_t width = k.in == In::SwiGlu ? 2 * k.I : k.I;
          Tensor x = r.in_act({k.M, width}, k.in == In::RmsNorm ? 2.0 : 1.0);
          Tensor w = r.in_act({k.O, k.I}, ws);
          Backend::DecodeLinear f{k.in, {}, 1e-5f, {}, {}};
          if (k.in == In::RmsNorm) f.norm_weight = r.in_act({k.I}, 0.3, 1.0);
          Tensor out =
              k.res == 2 ? r.inout("out", r.act(), {k.M, k.O}) : r.out("out", r.act(), {k.M, k.O});
          if (k.res == 1) {
            f.residual = r.in_act({k.M, k.O});
            f.prefetch = r.in_act({7, 9});  // a hint (its end is not 16-byte aligned)
          }
          if (k.res == 2) f.residual = out;
          r.be().decode_linear(out, x, w, f);
        });
  }
  // prefetch: only a hint, so every tensor keeps its values, whatever the backend asks of
  // its caches: odd sizes, a view that is not 16-byte aligned at either end, and (big) a
  // 1.1B gate_up weight, 46 MB.
  add(v, "prefetch", "bf16 [37,9], f32 rows 1..4 of [5,7], [3]", false, [](OpRun& r) {
    Tensor a = r.inout("a", r.act(), {37, 9}, 1.0, kExact);
    Tensor b = r.inout("b", DType::F32, {5, 7}, 1.0, kExact);
    Tensor c = r.inout("c", r.act(), {3}, 1.0, kExact);
    r.be().prefetch({a, b.rows(1, 4), c});
  });
  add(v, "prefetch", "gate_up weight [11264,2048]", true, [](OpRun& r) {
    Tensor w = r.inout("w", r.act(), {11264, 2048}, 0.02, kExact);
    r.be().prefetch({w});
  });
}

void rope_swiglu(std::vector<OpCase>& v) {
  // Head dim 64 (vector path), 6 (scalar path), 2 (the smallest); pos0 > 0 as in generation.
  struct R {
    int64_t B, T;
    int H, K, D, pos0;
    bool big;
  };
  for (R k : {R{2, 5, 4, 2, 64, 0, false}, R{1, 3, 6, 3, 6, 4, false}, R{3, 7, 2, 1, 16, 9, false},
              R{1, 1, 1, 1, 2, 0, false}, R{1, 2048, 32, 4, 64, 0, true}}) {
    const int64_t Q = int64_t(k.H + 2 * k.K) * k.D, Tmax = k.T + k.pos0 + 3;
    std::vector<float> c, s;
    rope_tables(int(Tmax), k.D, 10000.0f, c, s);
    const std::string sh =
        dims({{"B", k.B}, {"T", k.T}, {"H", k.H}, {"K", k.K}, {"D", k.D}, {"pos0", k.pos0}});
    for (bool fwd : {true, false})
      add(v, fwd ? "rope_forward" : "rope_backward", sh, k.big, [=](OpRun& r) {
        Tensor cos = r.in_values(DType::F32, {Tmax, k.D / 2}, c);
        Tensor sin = r.in_values(DType::F32, {Tmax, k.D / 2}, s);
        Tensor qkv = r.inout(fwd ? "qkv" : "dqkv", r.act(), {k.B, k.T, Q});
        if (fwd)
          r.be().rope_forward(qkv, cos, sin, k.H, k.K, k.pos0);
        else
          r.be().rope_backward(qkv, cos, sin, k.H, k.K, k.pos0);
      });
  }
  struct W {
    int64_t N, I;
    bool big;
  };
  for (W k : {W{7, 24, false}, W{5, 13, false}, W{1, 1, false}, W{2048, 5632, true}}) {
    const std::string sh = dims({{"N", k.N}, {"I", k.I}});
    add(v, "swiglu_forward", sh, k.big, [=](OpRun& r) {
      Tensor gu = r.in_act({k.N, 2 * k.I}, 2.0);
      r.be().swiglu_forward(r.out("out", r.act(), {k.N, k.I}), gu);
    });
    add(v, "swiglu_backward", sh, k.big, [=](OpRun& r) {
      Tensor gu = r.in_act({k.N, 2 * k.I}, 2.0), dout = r.in_act({k.N, k.I});
      r.be().swiglu_backward(r.out("dgate_up", r.act(), {k.N, 2 * k.I}), dout, gu);
    });
  }
}

void head(std::vector<OpCase>& v) {
  // Small and odd, one row, the 1.1B head, and N = 8200 > one 8192-row chunk (two chunks).
  struct S {
    int64_t N, C, V;
    bool big;
  };
  for (S k : {S{7, 24, 37, false}, S{3, 8, 5, false}, S{64, 2048, 32000, true},
              S{8200, 8, 32000, true}}) {
    std::vector<int32_t> tgt = bt::ids(k.N, k.V, 71);
    tgt[std::min<int64_t>(1, k.N - 1)] = -1;  // ignored targets: loss 0, no gradient
    tgt[size_t(k.N - 1)] = -100;
    const float scale = 0.37f / float(k.N);
    for (bool grad : {true, false}) {
      OpCase c;
      c.op = grad ? "head_cross_entropy" : "head_cross_entropy (loss only)";
      c.shape = dims({{"N", k.N}, {"C", k.C}, {"V", k.V}});
      c.big = k.big;
      c.run = [=](OpRun& r) {
        Tensor targets = r.in_ids({k.N}, tgt), x = r.in_act({k.N, k.C});
        Tensor w = r.in_act({k.V, k.C}, 2.0 / std::sqrt(double(k.C)));
        Tensor losses = r.out("losses", DType::F32, {k.N}, kLoss);
        Tensor dx = grad ? r.out("dx", r.act(), {k.N, k.C}) : Tensor();
        // += starts small next to the gradient (a target row gets ~scale |x|), so a wrong
        // gradient cannot hide under it. dlogits are bf16 on CUDA: bf16's tolerance. Without
        // dx it must stay untouched.
        Tensor dw = r.inout("dweight", DType::F32, {k.V, k.C}, 0.1 * scale, grad ? 1e-2 : kExact);
        // N = 7 lends a workspace (a bf16 logits chunk of it fits: the CUDA op uses it);
        // the others leave the chunk to the backend's own memory.
        const Tensor ws = k.N == 7 ? r.in(DType::F32, {k.N * k.V / 2 + 64}) : Tensor();
        r.be().head_cross_entropy(losses, dx, dw, x, w, targets, scale, ws);
      };
      c.check = [=](const std::vector<Output>& out) {
        EXPECT_EQ(out[0].values[1], 0.0f) << "an ignored target must give loss 0";
        EXPECT_EQ(out[0].values[size_t(k.N - 1)], 0.0f) << "an ignored target must give loss 0";
      };
      v.push_back(std::move(c));
    }
  }
}

void argmax(std::vector<OpCase>& v) {
  // Ties must go to the first maximum: row 0 holds its maximum twice, far apart (different
  // threads on a GPU); row 1 is constant (every index ties); one column; the 1.1B vocabulary.
  struct S {
    int64_t N, V;
    bool big;
  };
  for (S k : {S{5, 37, false}, S{4, 1, false}, S{3, 32000, false}, S{64, 32000, true}}) {
    std::vector<float> x = bt::randn(k.N * k.V, uint64_t(17 + k.V));
    const int64_t a = std::min<int64_t>(3, k.V - 1), b = std::max<int64_t>(a, k.V - 2);
    x[size_t(a)] = x[size_t(b)] = 9.0f;
    if (k.N > 1) std::fill_n(x.begin() + k.V, k.V, 0.5f);
    // positions (a greedy decode step's, moved on by one) with every case but the largest
    std::vector<float> pos(size_t(k.N));
    for (size_t i = 0; i < pos.size(); ++i) pos[i] = float(3 * i + 1);
    // mode 1: positions moved on; 2: the ids also written into pinned host memory, which
    // must then hold what the device's ids hold
    for (int mode : {0, 1, 2}) {
      const bool advance = mode == 1;
      if (mode > 0 && k.big) continue;
      add(v,
          mode == 1   ? "argmax_rows +positions"
          : mode == 2 ? "argmax_rows +host ids"
                      : "argmax_rows",
          dims({{"N", k.N}, {"V", k.V}}), k.big, [=](OpRun& r) {
            Tensor xt = r.in_values(r.act(), {k.N, k.V}, x);
            Tensor ids = r.out("ids", DType::I32, {k.N}, kExact);
            Backend& be = r.be();
            auto* host =
                mode == 2 ? static_cast<int32_t*>(be.host_allocate(size_t(k.N) * 4)) : nullptr;
            if (host) std::fill_n(host, k.N, -7);
            be.argmax_rows(
                ids, xt,
                advance ? r.inout_values("positions", DType::I32, {k.N}, pos, kExact) : Tensor(),
                host);
            if (!host) return;
            const auto done = be.make_marker();
            done->record();
            done->wait();
            const std::vector<int32_t> written(host, host + k.N);
            be.host_deallocate(host);
            std::vector<int32_t> on_device(size_t(k.N));
            be.download(on_device.data(), ids);
            EXPECT_EQ(written, on_device) << "host_ids must hold the ids";
          });
      v.back().check = [=](const std::vector<Output>& out) {
        EXPECT_EQ(out[0].values[0], float(a)) << "a tie goes to the first maximum";
        if (k.N > 1) {
          EXPECT_EQ(out[0].values[1], 0.0f) << "a constant row's argmax is 0";
        }
        if (advance) {
          for (size_t i = 0; i < pos.size(); ++i) {
            EXPECT_EQ(out[1].values[i], pos[i] + 1.0f) << "row " << i << "'s position";
          }
        }
      };
    }
  }
}

void optimizer(std::vector<OpCase>& v) {
  // FSDP's bf16 gradient reduction: the reduced chunk added into the f32 gradient shard.
  for (DType src : {DType::F32, DType::BF16})
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(100003)})
      for (int64_t off : {int64_t(0), int64_t(1)})  // offset 1: the unaligned path
        add(v, cat("accumulate ", dtype_name(src)), dims({{"n", n}, {"offset", off}}), false,
            [=](OpRun& r) {
              Tensor s = r.in(src, {n + off}, 0.5);
              Tensor d = r.inout("dst", DType::F32, {n + off}, 1.0, kF32Sum);
              r.be().accumulate(d.rows(off, n + off), s.rows(off, n + off));
            });
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(1000), int64_t(4194307)})
    for (int64_t off : {int64_t(0), int64_t(1)})  // offset 1: the unaligned path
      add(v, "sum_squares", dims({{"n", n}, {"offset", off}}), n > 1000000, [=](OpRun& r) {
        Tensor g = r.in(DType::F32, {n + off}, 0.01);
        r.be().sum_squares(r.out("out", DType::F32, {1}, kF32Sum), g.rows(off, n + off));
      });
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(100003)})
    for (int variant = 0; variant < 4; ++variant) {
      const bool clip = variant & 1, compute = variant & 2;
      add(v, cat("adamw_update", clip ? " clipped" : "", compute ? " with compute copy" : ""),
          dims({{"n", n}}), false, [=](OpRun& r) {
            std::vector<float> v0 = bt::randn(n, 94, 0.01);
            for (float& x : v0) x = x * x;
            Tensor g = r.in(DType::F32, {n}, 0.5);
            Tensor nsq =
                r.in_values(DType::F32, {1}, {float(n)});  // norm sqrt(n): clips by ~1/sqrt(n)
            Tensor p = r.inout("params", DType::F32, {n}, 0.02, kF32Sum);
            Tensor m = r.inout("m", DType::F32, {n}, 0.01, kF32Sum);
            Tensor vv = r.inout_values("v", DType::F32, {n}, v0, kF32Sum);
            Tensor pc = compute ? r.out("params_compute", r.act(), {n}) : Tensor();
            AdamWArgs a;
            a.lr = 4e-4f;
            a.step = 7;
            a.max_grad_norm = 1.0f;
            r.be().adamw_update(p, g, m, vv, pc, clip ? nsq : Tensor(), a);
          });
    }
}

// FP8 operands (#16): amax, codes bit-identical to core/fp8's reference (including
// saturation: amax below the true maximum makes the largest values saturate), and the FP8
// product against the CPU's dequantized f32 product.
void fp8(std::vector<OpCase>& v) {
  for (DType dt : {DType::F32, DType::BF16})
    for (int64_t n : {int64_t(1), int64_t(1000), int64_t(1 << 20) + 3})
      add(v, cat("amax ", dtype_name(dt)), dims({{"n", n}}), false, [=](OpRun& r) {
        r.be().amax(r.out("amax", DType::F32, {1}, kExact), r.in(dt, {n}, 2.0, 0.5));
      });
  struct Q {
    int64_t R, C;
  };
  // The layouts a cast writes: codes [R, C], codes_t [C, R], or both from one read.
  enum Layout { kRows, kCols, kBoth };
  const auto layout_name = [](Layout l) {
    return l == kRows ? "" : l == kCols ? " transposed" : " both layouts";
  };
  const auto outputs = [](OpRun& r, Layout l, Q q) {
    Tensor rows = l == kCols ? Tensor() : r.out("codes", DType::U8, {q.R, q.C}, kExact);
    Tensor cols = l == kRows ? Tensor() : r.out("codes_t", DType::U8, {q.C, q.R}, kExact);
    return std::pair{rows, cols};
  };
  for (DType dt : {DType::F32, DType::BF16})
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
      for (Layout l : {kRows, kCols, kBoth})
        // 7x40, 33x96: the element-wise CUDA kernels; 48x200, 96x136: the vectorized ones
        // with partial 64x64 tiles; 16384x2048: the model's shape.
        for (Q q : {Q{1, 1}, Q{7, 40}, Q{33, 96}, Q{48, 200}, Q{96, 136}, Q{16384, 2048}})
          for (float amax : {3.0f, 0.0f}) {  // 3: values past 3 sigma saturate; 0: scale 1
            add(v, cat("fp8_quantize ", dtype_name(dt), " ", fp8_format_name(f), layout_name(l)),
                dims({{"R", q.R}, {"C", q.C}, {"amax", int64_t(amax)}}), q.R > 1000, [=](OpRun& r) {
                  Tensor in = r.in(dt, {q.R, q.C}, 1.0);
                  Tensor a = r.in_values(DType::F32, {1}, {amax});
                  const auto [rows, cols] = outputs(r, l, q);
                  r.be().fp8_quantize(rows, cols, r.out("scale_inv", DType::F32, {1}, kExact), in,
                                      a, f, Tensor());
                });
          }
  // Delayed scaling: the cast records max |in| into amax_out (which starts below it, and
  // above it: max, not overwrite) with the codes unchanged; the history's roll.
  for (DType dt : {DType::F32, DType::BF16})
    for (Layout l : {kRows, kCols, kBoth})
      for (Q q : {Q{7, 40}, Q{96, 136}, Q{2048, 1024}})
        for (float start : {0.0f, 100.0f})
          add(v, cat("fp8_quantize ", dtype_name(dt), layout_name(l), " amax_out"),
              dims({{"R", q.R}, {"C", q.C}, {"start", int64_t(start)}}), false, [=](OpRun& r) {
                Tensor in = r.in(dt, {q.R, q.C}, 1.0);
                Tensor a = r.in_values(DType::F32, {1}, {2.0f});
                const auto [rows, cols] = outputs(r, l, q);
                r.be().fp8_quantize(rows, cols, r.out("scale_inv", DType::F32, {1}, kExact), in, a,
                                    Fp8Format::E4M3,
                                    r.inout_values("amax_out", DType::F32, {1}, {start}, kExact));
              });
  // Transposes of codes (producer-written operands): 7x40, 33x96 element by element; 48x208
  // and 96x144 vectorized with partial 64x64 tiles; 2048x1024.
  for (Q q : {Q{1, 1}, Q{7, 40}, Q{33, 96}, Q{48, 208}, Q{96, 144}, Q{2048, 1024}})
    add(v, "fp8_transpose", dims({{"R", q.R}, {"C", q.C}}), false, [=](OpRun& r) {
      std::vector<float> c(static_cast<size_t>(q.R * q.C));
      Rng rng(uint64_t(q.R * 131 + q.C));
      for (float& x : c) x = float(rng.below(256));
      r.be().fp8_transpose(r.out("codes_t", DType::U8, {q.C, q.R}, kExact),
                           r.in_values(DType::U8, {q.R, q.C}, c));
    });
  for (int64_t H : {int64_t(1), int64_t(16)})
    for (int64_t slot : {int64_t(0), H - 1})
      add(v, "fp8_amax_roll", dims({{"H", H}, {"n", 264}, {"slot", slot}}), false, [=](OpRun& r) {
        const int64_t n = 264;
        std::vector<float> hist(static_cast<size_t>(H * n)), cur(static_cast<size_t>(n));
        Rng rng(uint64_t(H * 31 + slot));
        for (float& x : hist) x = float(rng.below(1000)) / 8;
        for (float& x : cur) x = float(rng.below(1000)) / 8;
        // (Non-finite amaxes: Fp8Ops.DelayedScaling... in test_cpu_backend.cpp, on every
        // backend: the table's comparison takes finite values only.)
        r.be().fp8_amax_roll(r.inout_values("history", DType::F32, {H, n}, hist, kExact),
                             r.inout_values("current", DType::F32, {n}, cur, kExact),
                             r.out("scale_amax", DType::F32, {n}, kExact),
                             r.out("last", DType::F32, {n}, kExact), slot);
      });
  // Products: random finite codes (no NaN or infinity codes), scales 1/8 and 1/2.
  const auto codes = [](int64_t n, Fp8Format f, uint64_t seed) {
    std::vector<float> c(static_cast<size_t>(n));
    Rng rng(seed);
    for (float& x : c) {
      uint8_t code;
      do code = uint8_t(rng.below(256));
      while (!std::isfinite(fp8_to_f32(code, f)));
      x = float(code);
    }
    return c;
  };
  struct G {
    int64_t N, M, K;
    Fp8Format fa, fb;
  };
  for (G g : {G{16, 32, 64, Fp8Format::E4M3, Fp8Format::E4M3},
              G{48, 16, 32, Fp8Format::E5M2, Fp8Format::E4M3},
              G{512, 2048, 2048, Fp8Format::E4M3, Fp8Format::E4M3}})
    // mode 0: into act (the products of forward and dgrad); 1: into f32, added to (wgrad);
    // 2: into f32, written (a step's first wgrad).
    for (int mode : {0, 1, 2}) {
      const bool acc = mode == 1;
      add(v,
          cat("fp8_matmul ", fp8_format_name(g.fa), " x ", fp8_format_name(g.fb),
              mode == 1   ? " +="
              : mode == 2 ? " f32"
                          : ""),
          dims({{"N", g.N}, {"M", g.M}, {"K", g.K}}), g.N > 100, [=](OpRun& r) {
            Tensor a = r.in_values(DType::U8, {g.N, g.K}, codes(g.N * g.K, g.fa, 7));
            Tensor b = r.in_values(DType::U8, {g.M, g.K}, codes(g.M * g.K, g.fb, 8));
            Tensor sa = r.in_values(DType::F32, {1}, {0.125f});
            Tensor sb = r.in_values(DType::F32, {1}, {0.5f});
            // With fast accumulation (the default for every FP8 product) Hopper's tensor
            // cores keep a running sum of ~14 bits across a whole K = 2048: on an H100
            // (2026-12-07) 2.3e-3 of the largest output (2.5e-4 with TL_FP8_FAST_ACCUM=fprop,
            // where cuBLASLt promotes to f32 between MMAs); a wrong scale or operand is off
            // by far more.
            Tensor out = mode == 1   ? r.inout("out", DType::F32, {g.N, g.M}, 1.0, 4e-3)
                         : mode == 2 ? r.out("out", DType::F32, {g.N, g.M}, 4e-3)
                                     : r.out("out", r.act(), {g.N, g.M});
            r.be().fp8_matmul(out, a, b, sa, sb, g.fa, g.fb, acc);
          });
    }
}

void attention(std::vector<OpCase>& v) {
  // One row, partial tiles, exact tiles and tiles + 2; GQA groups of 2, multi-query (K=1),
  // no grouping (K=H); head dims 16 (golden fixture), 32 (tiny preset), 64 and 128 (fa2 and
  // cuDNN), 6 (not a multiple of 8); the 1.1B shape.
  struct S {
    int64_t B, T;
    int H, K, D;
    bool big;
  };
  for (S k :
       {S{2, 1, 4, 2, 64, false}, S{2, 65, 4, 2, 64, false}, S{2, 128, 4, 1, 64, false},
        S{1, 130, 4, 4, 128, false}, S{2, 64, 6, 2, 32, false}, S{2, 17, 4, 2, 16, false},
        S{1, 9, 2, 1, 6, false}, S{2, 2048, 32, 4, 64, true}}) {  // big: the 1.1B layer, 2 rows
    const int64_t Q = int64_t(k.H + 2 * k.K) * k.D, O = int64_t(k.H) * k.D;
    for (bool fwd : {true, false}) {
      OpCase c;
      c.op = fwd ? "attention_forward" : "attention_backward";
      c.shape = dims({{"B", k.B}, {"T", k.T}, {"H", k.H}, {"K", k.K}, {"D", k.D}});
      c.big = k.big;
      c.attn_T = int(k.T), c.attn_H = k.H, c.attn_K = k.K, c.attn_D = k.D;
      c.run = [=](OpRun& r) {
        Tensor qkv = r.in_act({k.B, k.T, Q});
        if (fwd) {
          r.be().attention_forward(r.out("out", r.act(), {k.B, k.T, O}, kAttention),
                                   r.out("lse", DType::F32, {k.B, k.H, k.T}), qkv, k.H, k.K);
          return;
        }
        // The forward's out and lse, as this backend computes them, feed its backward.
        backend_test::Arr out = backend_test::alloc(r.be(), r.act(), {k.B, k.T, O});
        backend_test::Arr lse = backend_test::alloc(r.be(), DType::F32, {k.B, k.H, k.T});
        r.be().attention_forward(out.t, lse.t, qkv, k.H, k.K);
        Tensor dout = r.in_act({k.B, k.T, O});
        r.be().attention_backward(r.out("dqkv", r.act(), {k.B, k.T, Q}, kAttention), dout, qkv,
                                  out.t, lse.t, k.H, k.K);
      };
      v.push_back(std::move(c));
    }
  }
  // Incremental decoding over a KV cache: decode (Tn = 1) and prefill (Tn > 1) steps at
  // per-row positions, head dims with and without the 8-wide path, GQA groups of 1..32 (more
  // than 8 heads per KV head), contexts long enough to split the keys (flash-decoding); few
  // rows (the CUDA kernel's blocks take 1 or 2 query heads, 512 keys a pass up to head dim
  // 128; 256 keeps 128 keys) and 24 (8 heads a block, 128 keys a pass).
  struct Dc {
    int B, Tn, H, K, D, Tmax;
    std::vector<int32_t> pos;
  };
  for (const Dc& k :
       {Dc{1, 1, 32, 4, 64, 2048, {1500}}, Dc{3, 1, 32, 4, 64, 700, {0, 129, 640}},
        Dc{2, 5, 8, 8, 128, 300, {0, 200}}, Dc{2, 3, 6, 2, 6, 40, {4, 30}},
        Dc{1, 1, 32, 1, 16, 520, {515}}, Dc{1, 1, 8, 2, 256, 600, {520}},
        Dc{4, 17, 4, 2, 64, 64, {0, 10, 20, 47}}, Dc{1, 1, 1, 1, 2, 1, {0}},
        Dc{24, 1, 32, 4, 64, 300, {0,  9,   299, 150, 17,  256, 255, 1, 128, 127, 64, 200,
                                   33, 290, 2,   100, 180, 260, 77,  5, 240, 130, 60, 222}}}) {
    const int64_t Q = int64_t(k.H + 2 * k.K) * k.D, KD = int64_t(k.K) * k.D;
    int kv_len = 0;
    for (int32_t p : k.pos) kv_len = std::max(kv_len, p + k.Tn);
    std::vector<float> c, s;
    rope_tables(k.Tmax, k.D, 10000.0f, c, s);
    add(v, "attention_decode",
        dims({{"B", k.B}, {"Tn", k.Tn}, {"H", k.H}, {"K", k.K}, {"D", k.D}, {"Tmax", k.Tmax}}),
        false, [=](OpRun& r) {
          Tensor cos = r.in_values(DType::F32, {k.Tmax, k.D / 2}, c);
          Tensor sin = r.in_values(DType::F32, {k.Tmax, k.D / 2}, s);
          Tensor pos = r.in_ids({k.B}, k.pos);
          Tensor qkv = r.in_act({k.B, k.Tn, Q});
          Tensor kc = r.inout("k_cache", r.act(), {k.B, k.Tmax, KD});
          Tensor vc = r.inout("v_cache", r.act(), {k.B, k.Tmax, KD}, 1.0, kExact);  // copies
          r.be().attention_decode(r.out("out", r.act(), {k.B, k.Tn, int64_t(k.H) * k.D}), qkv, kc,
                                  vc, cos, sin, pos, kv_len, k.H, k.K);
        });
  }
}

}  // namespace

std::vector<OpCase> op_cases() {
  std::vector<OpCase> v;
  embedding(v);
  rmsnorm(v);
  matmul(v);
  rope_swiglu(v);
  head(v);
  argmax(v);
  optimizer(v);
  fp8(v);
  attention(v);
  return v;
}

}  // namespace backend_ops
