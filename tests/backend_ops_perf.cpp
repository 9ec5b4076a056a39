// The perf registry of the backend-ops table: every non-attention op at the TinyLlama-1.1B
// micro-batch (8 x 2048 tokens), with the bytes or FLOP that bench/NOTES.md predicts from.
#include "backend_ops.h"
#include "model/llama.h"

namespace backend_ops {

namespace bt = backend_test;

std::vector<PerfOp> perf_ops(Backend& g, std::vector<bt::Arr>& keep) {
  const int64_t B = 8, T = 2048, N = B * T, C = 2048, I = 5632, V = 32000, H = 32, K = 4, D = 64;
  const int64_t Q = (H + 2 * K) * D, L = 22;
  const int64_t P = 1100048384;  // parameters
  keep.reserve(64);              // the ops hold Tensor views into these
  auto arr = [&](DType dt, Shape s, uint64_t seed, double scale, double mean) -> Tensor {
    keep.push_back(bt::alloc(g, dt, s));
    if (dt != DType::I32) bt::upload(g, keep.back().t, bt::fast_fill(s.numel(), seed, scale, mean));
    return keep.back().t;
  };
  const DType act = g.compute_dtype();
  auto a = [&](Shape s, uint64_t seed, double scale = 1.0, double mean = 0.0) {
    return arr(act, s, seed, scale, mean);
  };
  auto f32 = [&](Shape s, uint64_t seed, double scale = 1.0, double mean = 0.0) {
    return arr(DType::F32, s, seed, scale, mean);
  };
  Tensor x = a({N, C}, 1), x2 = a({N, C}, 2), y = a({N, C}, 3), dx = a({N, C}, 4);
  Tensor nw = a({C}, 5, 0.1, 1.0), rstd = f32({N}, 6, 0.1, 1.0), dnw = f32({C}, 7);
  Tensor qkv = a({B, T, Q}, 8), gu = a({N, 2 * I}, 9), sw = a({N, I}, 10);
  Tensor dgu = a({N, 2 * I}, 11), dsw = a({N, I}, 12);
  Tensor wqkv = a({Q, C}, 13, 0.02), wgu = a({2 * I, C}, 14, 0.02), wdown = a({C, I}, 15, 0.02);
  Tensor wo = a({C, C}, 16, 0.02), whead = a({V, C}, 17, 0.02), emb = a({V, C}, 18, 0.02);
  Tensor dwqkv = f32({Q, C}, 19), dwgu = f32({2 * I, C}, 20), dwdown = f32({C, I}, 21);
  Tensor dwo = f32({C, C}, 22), dwhead = f32({V, C}, 23), demb = f32({V, C}, 24);
  Tensor tok = arr(DType::I32, {N}, 0, 0, 0), losses = f32({N}, 26);
  const std::vector<int32_t> ids = bt::ids(N, V, 25);
  g.upload(tok, ids.data());
  std::vector<float> c, s;
  rope_tables(int(T), int(D), 10000.0f, c, s);
  Tensor cos = f32({T, D / 2}, 27), sin = f32({T, D / 2}, 28);
  bt::upload(g, cos, c);
  bt::upload(g, sin, s);

  std::vector<PerfOp> ops;
  auto op = [&](std::string name, double bytes, double flops, int64_t calls,
                std::function<void()> run) {
    ops.push_back({std::move(name), bytes, flops, int(calls), 1.0, std::move(run)});
  };
  const double act_bytes = double(N) * C * 2;  // one [N, C] bf16 activation
  op("embedding_forward", 2 * act_bytes, 0, 1, [=, &g] { g.embedding_forward(x, emb, tok); });
  op("embedding_backward", act_bytes + 2.0 * N * C * 4, 0, 1,
     [=, &g] { g.embedding_backward(demb, dx, tok); });
  op("rmsnorm_forward", 2 * act_bytes, 0, 1, [=, &g] { g.rmsnorm_forward(y, rstd, x, nw, 1e-5f); });
  op("add_rmsnorm_forward", 4 * act_bytes, 0, 2 * L,
     [=, &g] { g.add_rmsnorm_forward(x2, y, rstd, x, dx, nw, 1e-5f); });
  op("rmsnorm_backward", 4 * act_bytes, 0, 2 * L + 1,
     [=, &g] { g.rmsnorm_backward(dx, dnw, y, x, nw, rstd); });
  const double qk_bytes = 2.0 * N * (H + K) * D * 2;
  op("rope_forward", qk_bytes, 0, L, [=, &g] { g.rope_forward(qkv, cos, sin, H, K, 0); });
  op("rope_backward", qk_bytes, 0, L, [=, &g] { g.rope_backward(qkv, cos, sin, H, K, 0); });
  op("swiglu_forward", 3.0 * N * I * 2, 0, L, [=, &g] { g.swiglu_forward(sw, gu); });
  op("swiglu_backward", 5.0 * N * I * 2, 0, L, [=, &g] { g.swiglu_backward(dgu, dsw, gu); });
  struct Gemm {
    const char* name;
    Tensor in, w, out, dw, din;
    int64_t In, O;
  };
  for (const Gemm& m :
       {Gemm{"qkv", y, wqkv, qkv, dwqkv, dx, C, Q}, Gemm{"wo", y, wo, x2, dwo, dx, C, C},
        Gemm{"gate_up", y, wgu, gu, dwgu, dx, C, 2 * I},
        Gemm{"down", sw, wdown, x2, dwdown, dsw, I, C}}) {
    const double fl = 2.0 * N * m.In * m.O;
    const Tensor out2 = m.out.view({N, m.O});
    op(cat("matmul_forward ", m.name), 0, fl, L, [=, &g] { g.matmul_forward(out2, m.in, m.w); });
    op(cat("matmul_backward dinp ", m.name), 0, fl, L,
       [=, &g] { g.matmul_backward(m.din, Tensor(), out2, m.in, m.w, false, false); });
    op(cat("matmul_backward dweight ", m.name), 0, fl, L,
       [=, &g] { g.matmul_backward(Tensor(), m.dw, out2, m.in, m.w, false, false); });
  }
  op("head_cross_entropy (3 GEMMs + softmax)", 0, 3 * 2.0 * N * C * V, 1,
     [=, &g] { g.head_cross_entropy(losses, dx, dwhead, y, whead, tok, 1.0f / N); });
  // The optimizer runs once per optimizer step over all P parameters (not per micro-batch):
  // timed over a quarter of the model, reported for P.
  const int64_t Pc = int64_t(1) << 28;
  const double k = double(P) / double(Pc);
  Tensor p = f32({Pc}, 30, 0.02), gr = f32({Pc}, 31, 1e-4), mm = f32({Pc}, 32, 1e-5);
  Tensor vv = f32({Pc}, 33, 1e-9, 1e-9), pc = a({Pc}, 34), nsq = f32({1}, 35, 0.0, 1.0);
  ops.push_back({"sum_squares (all params, once per step)", 4.0 * P, 0, 0, k,
                 [=, &g] { g.sum_squares(nsq, gr); }});
  AdamWArgs args;
  args.lr = 4e-4f;
  ops.push_back({"adamw_update (all params, once per step)", 30.0 * P, 0, 0, k, [=, &g] {
                   g.adamw_update(p, gr, mm, vv, act == DType::F32 ? Tensor() : pc, nsq, args);
                 }});
  return ops;
}

}  // namespace backend_ops
