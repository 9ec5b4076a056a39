#include "parallel/comm_check.h"

#include <algorithm>

#include "core/dtype.h"
#include "core/timer.h"

namespace tl {

namespace {

// Element i of rank r's data: a small integer, exact in bf16 and f32 sums.
float value(int r, int64_t i) { return float((r * 7 + i * 3) % 61); }

struct Checker {
  Backend& be;
  CommCheckResult& out;

  Buffer upload(const std::vector<float>& host, DType dt) {
    Buffer b(be, host.size() * dtype_size(dt));
    Tensor t = b.tensor(dt, {int64_t(host.size())});
    if (dt == DType::F32) {
      be.upload(t, host.data());
    } else {
      // Through the compute stream (f32 upload, then convert), as FSDP's buffers are written.
      Buffer f(be, host.size() * 4);
      be.upload(f.tensor(DType::F32, {int64_t(host.size())}), host.data());
      be.convert(t, f.tensor(DType::F32, {int64_t(host.size())}));
      be.synchronize();
    }
    return b;
  }
  std::vector<float> download(const Buffer& b, DType dt, int64_t n) {
    std::vector<float> host(static_cast<size_t>(n));
    if (dt == DType::F32) {
      be.download(host.data(), b.tensor(dt, {n}));
    } else {
      Buffer f(be, size_t(n) * 4);
      be.convert(f.tensor(DType::F32, {n}), b.tensor(dt, {n}));
      be.download(host.data(), f.tensor(DType::F32, {n}));
    }
    return host;
  }
  void expect(const std::string& what, int rank, const std::vector<float>& got,
              const std::vector<float>& want) {
    for (size_t i = 0; i < want.size(); ++i)
      TL_CHECK(got[i] == want[i], "comm-check ", what, " failed on rank ", rank, ": element ", i,
               " is ", got[i], ", expected ", want[i]);
    out.passed.push_back(what);
  }

  void all_gather(Communicator& c, DType dt, int64_t n, const std::string& what) {
    const int W = c.world(), r = c.rank();
    std::vector<float> mine(static_cast<size_t>(n)), want;
    for (int64_t i = 0; i < n; ++i) mine[size_t(i)] = value(r, i);
    for (int q = 0; q < W; ++q)
      for (int64_t i = 0; i < n; ++i) want.push_back(value(q, i));
    Buffer send = upload(mine, dt), recv(be, size_t(n * W) * dtype_size(dt));
    c.wait(c.all_gather(recv.tensor(dt, {n * W}), send.tensor(dt, {n})));
    expect(what, r, download(recv, dt, n * W), want);
  }

  void reduce_scatter(Communicator& c, int64_t n, const std::string& what) {
    const int W = c.world(), r = c.rank();
    std::vector<float> mine(static_cast<size_t>(n * W)), want(size_t(n), 0.0f);
    for (int64_t i = 0; i < n * W; ++i) mine[size_t(i)] = value(r, i);
    for (int q = 0; q < W; ++q)
      for (int64_t i = 0; i < n; ++i) want[size_t(i)] += value(q, int64_t(r) * n + i);
    Buffer send = upload(mine, DType::F32), recv(be, size_t(n) * 4);
    c.wait(c.reduce_scatter(recv.tensor(DType::F32, {n}), send.tensor(DType::F32, {n * W}),
                            ReduceOp::Sum));
    expect(what, r, download(recv, DType::F32, n), want);
  }

  void all_reduce(Communicator& c, ReduceOp op, int64_t n, const std::string& what) {
    const int W = c.world(), r = c.rank();
    std::vector<float> mine(static_cast<size_t>(n)),
        want(size_t(n), op == ReduceOp::Max ? -1.0f : 0.0f);
    for (int64_t i = 0; i < n; ++i) mine[size_t(i)] = value(r, i);
    for (int q = 0; q < W; ++q)
      for (int64_t i = 0; i < n; ++i)
        want[size_t(i)] = op == ReduceOp::Max ? std::max(want[size_t(i)], value(q, i))
                                              : want[size_t(i)] + value(q, i);
    Buffer buf = upload(mine, DType::F32);
    c.wait(c.all_reduce(buf.tensor(DType::F32, {n}), op));
    expect(what, r, download(buf, DType::F32, n), want);
  }

  void broadcast(Communicator& c, int64_t n, const std::string& what) {
    const int root = c.world() - 1;
    std::vector<float> mine(static_cast<size_t>(n)), want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      mine[size_t(i)] = value(c.rank(), i);
      want[size_t(i)] = value(root, i);
    }
    Buffer buf = upload(mine, DType::F32);
    c.wait(c.broadcast(buf.tensor(DType::F32, {n}), root));
    expect(what, c.rank(), download(buf, DType::F32, n), want);
  }
};

}  // namespace

CommCheckResult run_comm_check(Backend& be, Communicator& world, int hybrid_group,
                               int64_t bench_elements, int bench_iters) {
  CommCheckResult out;
  Checker ck{be, out};
  const int W = world.world();
  ck.all_gather(world, DType::BF16, 4096, "all_gather bf16 [4096]");
  ck.all_gather(world, DType::F32, 1001, "all_gather f32 [1001]");
  ck.reduce_scatter(world, 3000, "reduce_scatter sum f32 [3000]");
  ck.all_reduce(world, ReduceOp::Sum, 777, "all_reduce sum f32 [777]");
  ck.all_reduce(world, ReduceOp::Max, 5, "all_reduce max f32 [5]");
  ck.broadcast(world, 300, "broadcast f32 [300] from the last rank");
  world.barrier();
  out.passed.push_back("barrier");
  if (hybrid_group > 1 && hybrid_group < W && W % hybrid_group == 0) {
    const int r = world.rank();
    auto node = world.split(r / hybrid_group, r);
    auto across = world.split(r % hybrid_group, r);
    ck.reduce_scatter(*node, 2048, cat("reduce_scatter inside groups of ", hybrid_group));
    ck.all_gather(*node, DType::BF16, 2048, cat("all_gather bf16 inside groups of ", hybrid_group));
    ck.all_reduce(*across, ReduceOp::Sum, 2048,
                  cat("all_reduce across ", W / hybrid_group, " groups"));
  }
  // Bandwidth: the FSDP collectives at one layer's size, back to back.
  if (bench_elements > 0 && bench_iters > 0 && W > 1) {
    const int64_t n = bench_elements / W * W, chunk = n / W;
    Buffer full(be, size_t(n) * 4), part(be, size_t(chunk) * 4);
    be.zero(full.tensor(DType::F32, {n}));
    be.zero(part.tensor(DType::F32, {chunk}));
    auto time_it = [&](auto issue) {
      world.wait(issue());
      world.synchronize();
      Timer t;
      for (int i = 0; i < bench_iters; ++i) world.wait(issue());
      world.synchronize();
      return t.seconds() / bench_iters;
    };
    const double ag = time_it([&] {
      return world.all_gather(full.tensor(DType::BF16, {n}), part.tensor(DType::BF16, {chunk}));
    });
    const double rs = time_it([&] {
      return world.reduce_scatter(part.tensor(DType::F32, {chunk}), full.tensor(DType::F32, {n}),
                                  ReduceOp::Sum);
    });
    const double bus = double(W - 1) / double(W);
    out.all_gather_busbw = double(n) * 2 * bus / ag / 1e9;
    out.reduce_scatter_busbw = double(n) * 4 * bus / rs / 1e9;
    out.bench_elements = n;
  }
  return out;
}

}  // namespace tl
