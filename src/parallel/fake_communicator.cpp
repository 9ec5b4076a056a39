// Every collective is a two-phase meeting of the group's ranks under one mutex:
//   arrive: each rank posts its buffers; all wait until the whole group has posted;
//   work:   each rank computes its own output from the others' send buffers (unlocked);
//   leave:  all wait until everyone has read what it needed; only then may a rank reuse
//           its buffers (in-place results are copied in after this point).
#include "parallel/fake_communicator.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <type_traits>

#include "core/dtype.h"

namespace tl {

namespace {

using Clock = std::chrono::steady_clock;

// Shared by all groups made from one world: one lock, one failure.
struct FakeWorld {
  std::mutex mu;
  std::condition_variable cv;
  std::string failure;  // empty while healthy
  double timeout_s = 0;
};

struct Post {
  std::string op;
  const void* send = nullptr;
  void* recv = nullptr;
  int64_t count = 0;  // elements per rank (send count for all_gather, recv for reduce_scatter)
  DType dtype = DType::F32;
  ReduceOp rop = ReduceOp::Sum;
  int root = 0, color = 0, key = 0;
};

struct FakeGroup {
  std::shared_ptr<FakeWorld> world;
  int n = 0;
  std::vector<int> world_ranks;  // group rank -> world rank, for messages
  std::vector<Post> posts;
  std::vector<uint64_t> entered;  // collectives each rank has entered
  uint64_t generation = 0;        // collectives completed by the whole group
  int arrived = 0, left = 0;
  std::map<std::pair<uint64_t, int>, std::shared_ptr<FakeGroup>> children;  // (gen, color)
};

template <class T>
void reduce_into(T* out, const std::vector<const T*>& in, int64_t n, ReduceOp op) {
  for (int64_t i = 0; i < n; ++i) {
    T acc = in[0][i];
    for (size_t r = 1; r < in.size(); ++r)
      acc = op == ReduceOp::Max ? std::max(acc, in[r][i]) : T(acc + in[r][i]);
    if (op == ReduceOp::Avg) acc = T(acc / T(in.size()));
    out[i] = acc;
  }
}

void reduce_any(void* out, const std::vector<const void*>& in, int64_t offset, int64_t n, DType dt,
                ReduceOp op) {
  auto run = [&](auto* typed_out) {
    using T = std::remove_pointer_t<decltype(typed_out)>;
    std::vector<const T*> src;
    for (const void* p : in) src.push_back(static_cast<const T*>(p) + offset);
    reduce_into(typed_out, src, n, op);
  };
  switch (dt) {
    case DType::BF16: {
      // As a ring reduces bf16: each hop adds in f32 and rounds to bf16 (here in rank order).
      TL_CHECK(op == ReduceOp::Sum, "fake communicator: bf16 reduces by sum only");
      auto* o = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t acc = static_cast<const uint16_t*>(in[0])[offset + i];
        for (size_t r = 1; r < in.size(); ++r)
          acc = f32_to_bf16(bf16_to_f32(acc) +
                            bf16_to_f32(static_cast<const uint16_t*>(in[r])[offset + i]));
        o[i] = acc;
      }
      break;
    }
    case DType::F32: run(static_cast<float*>(out)); break;
    case DType::F64: run(static_cast<double*>(out)); break;
    case DType::I32: run(static_cast<int32_t*>(out)); break;
    default: fail("fake communicator: cannot reduce ", dtype_name(dt));
  }
}

class FakeCommunicator final : public Communicator {
 public:
  FakeCommunicator(std::shared_ptr<FakeGroup> g, int rank, std::shared_ptr<CommCounts> counts)
      : g_(std::move(g)), rank_(rank), counts_(std::move(counts)) {}

  int rank() const override { return rank_; }
  int world() const override { return g_->n; }
  uint64_t issued() const override {
    std::lock_guard<std::mutex> lock(g_->world->mu);
    return g_->entered[size_t(rank_)];
  }
  const CommCounts& counts() const { return *counts_; }

  CommWork all_gather(Tensor recv, Tensor send) override {
    check_host("all_gather", recv, send);
    TL_CHECK(recv.numel() == send.numel() * g_->n && recv.dtype == send.dtype, "all_gather: recv ",
             recv.str(), " must hold world (", g_->n, ") x send ", send.str());
    Post p{"all_gather", send.data, recv.data, send.numel(), send.dtype};
    const size_t bytes = send.nbytes();
    meet(p, [&](const std::vector<Post>& all) {
      for (int r = 0; r < g_->n; ++r)
        std::memcpy(static_cast<char*>(recv.data) + size_t(r) * bytes, all[size_t(r)].send, bytes);
    });
    return {};
  }

  CommWork reduce_scatter(Tensor recv, Tensor send, ReduceOp op) override {
    check_host("reduce_scatter", recv, send);
    TL_CHECK(send.numel() == recv.numel() * g_->n && recv.dtype == send.dtype,
             "reduce_scatter: send ", send.str(), " must hold world (", g_->n, ") x recv ",
             recv.str());
    Post p{"reduce_scatter", send.data, recv.data, recv.numel(), recv.dtype, op};
    meet(p, [&](const std::vector<Post>& all) {
      std::vector<const void*> in;
      for (const auto& q : all) in.push_back(q.send);
      reduce_any(recv.data, in, int64_t(rank_) * recv.numel(), recv.numel(), recv.dtype, op);
    });
    return {};
  }

  CommWork all_reduce(Tensor buf, ReduceOp op) override {
    check_host("all_reduce", buf, Tensor());
    Post p{"all_reduce", buf.data, buf.data, buf.numel(), buf.dtype, op};
    std::vector<char> tmp(buf.nbytes());
    meet(
        p,
        [&](const std::vector<Post>& all) {
          std::vector<const void*> in;
          for (const auto& q : all) in.push_back(q.send);
          reduce_any(tmp.data(), in, 0, buf.numel(), buf.dtype, op);
        },
        [&] { std::memcpy(buf.data, tmp.data(), tmp.size()); });
    return {};
  }

  CommWork broadcast(Tensor buf, int root) override {
    check_host("broadcast", buf, Tensor());
    TL_CHECK(root >= 0 && root < g_->n, "broadcast: root ", root, " is not a rank of ", g_->n);
    Post p{"broadcast", buf.data, buf.data, buf.numel(), buf.dtype};
    p.root = root;
    std::vector<char> tmp(buf.nbytes());
    meet(
        p,
        [&](const std::vector<Post>& all) {
          std::memcpy(tmp.data(), all[size_t(root)].send, tmp.size());
        },
        [&] { std::memcpy(buf.data, tmp.data(), tmp.size()); });
    return {};
  }

  void wait(CommWork) override { check(); }
  void synchronize() override { check(); }
  void barrier() override {
    meet(Post{"barrier"}, [](const std::vector<Post>&) {});
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    Post p{"split"};
    p.color = color;
    p.key = key;
    std::shared_ptr<FakeGroup> child;
    int child_rank = 0;
    meet(p, [&](const std::vector<Post>& all) {
      std::vector<std::pair<int, int>> members;  // (key, group rank) of my color
      for (int r = 0; r < g_->n; ++r)
        if (all[size_t(r)].color == color) members.push_back({all[size_t(r)].key, r});
      std::sort(members.begin(), members.end());
      for (size_t i = 0; i < members.size(); ++i)
        if (members[i].second == rank_) child_rank = int(i);
      std::lock_guard<std::mutex> lock(g_->world->mu);
      auto& slot = g_->children[{g_->generation, color}];
      if (!slot) {
        slot = std::make_shared<FakeGroup>();
        slot->world = g_->world;
        slot->n = int(members.size());
        for (const auto& m : members)
          slot->world_ranks.push_back(g_->world_ranks[size_t(m.second)]);
        slot->posts.resize(members.size());
        slot->entered.assign(members.size(), 0);
      }
      child = slot;
    });
    return std::make_unique<FakeCommunicator>(child, child_rank, counts_);
  }

  void check() override {
    std::lock_guard<std::mutex> lock(g_->world->mu);
    if (!g_->world->failure.empty()) throw Error(g_->world->failure);
  }

  void abort(const std::string& reason) override {
    std::lock_guard<std::mutex> lock(g_->world->mu);
    if (g_->world->failure.empty())
      g_->world->failure = cat("rank ", my_world_rank(), " failed: ", reason);
    g_->world->cv.notify_all();
  }

 private:
  int my_world_rank() const { return g_->world_ranks[size_t(rank_)]; }

  void check_host(const char* op, const Tensor& a, const Tensor& b) const {
    check_device(op, "buffer", a, Device::CPU);
    if (!b.empty()) check_device(op, "send", b, Device::CPU);
    TL_CHECK(!a.empty() || a.numel() == 0, op, ": buffer is empty");
  }

  // Ranks that have not entered collective number `gen` yet, for the timeout message.
  std::string missing_ranks(uint64_t gen) const {
    std::string s;
    for (int r = 0; r < g_->n; ++r)
      if (g_->entered[size_t(r)] <= gen)
        s += cat(s.empty() ? "" : ", ", g_->world_ranks[size_t(r)], " (issued ",
                 g_->entered[size_t(r)], ")");
    return s;
  }

  // Waits (holding lock) until done() or failure or the deadline; throws on the latter two.
  template <class Done>
  void wait_until(std::unique_lock<std::mutex>& lock, const Post& p, uint64_t gen, Done done) {
    FakeWorld& w = *g_->world;
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(w.timeout_s));
    while (!done() && w.failure.empty()) {
      if (w.cv.wait_until(lock, deadline) == std::cv_status::timeout && !done() &&
          w.failure.empty()) {
        w.failure = cat(p.op, " #", gen, " timed out after ", w.timeout_s, " s on rank ",
                        my_world_rank(), ", waiting for rank(s) ", missing_ranks(gen),
                        ": they died, hung or took another path");
        w.cv.notify_all();
      }
    }
    if (!w.failure.empty()) throw Error(w.failure);
  }

  // The two-phase meeting; work reads the posts, finish (optional) runs after everyone left.
  template <class Work>
  void meet(const Post& p, Work work, const std::function<void()>& finish = {}) {
    FakeGroup& g = *g_;
    std::unique_lock<std::mutex> lock(g.world->mu);
    if (!g.world->failure.empty()) throw Error(g.world->failure);
    (*counts_)[p.op]++;
    if (p.dtype == DType::BF16) (*counts_)[cat(p.op, ":bf16")]++;  // also counted by dtype
    const uint64_t gen = g.entered[size_t(rank_)]++;
    TL_ASSERT(gen == g.generation);
    g.posts[size_t(rank_)] = p;
    if (++g.arrived == g.n) g.world->cv.notify_all();
    wait_until(lock, p, gen, [&] { return g.arrived == g.n || g.generation > gen; });
    for (int r = 0; r < g.n; ++r) {
      const Post& q = g.posts[size_t(r)];
      if (q.op != p.op || q.count != p.count || q.dtype != p.dtype || q.rop != p.rop ||
          q.root != p.root) {
        g.world->failure = cat("collective #", gen, " differs between ranks: rank ",
                               my_world_rank(), " issued ", p.op, "(", p.count, " x ",
                               dtype_name(p.dtype), ") but rank ", g.world_ranks[size_t(r)],
                               " issued ", q.op, "(", q.count, " x ", dtype_name(q.dtype), ")");
        g.world->cv.notify_all();
        throw Error(g.world->failure);
      }
    }
    const std::vector<Post> posts = g.posts;
    lock.unlock();
    work(posts);
    lock.lock();
    if (++g.left == g.n) {
      g.arrived = 0;
      g.left = 0;
      g.generation++;
      g.world->cv.notify_all();
    }
    wait_until(lock, p, gen, [&] { return g.generation > gen; });
    lock.unlock();
    if (finish) finish();
  }

  std::shared_ptr<FakeGroup> g_;
  int rank_;
  std::shared_ptr<CommCounts> counts_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_fake_communicators(int world,
                                                                   double timeout_seconds) {
  TL_CHECK(world >= 1, "fake communicator: world must be at least 1");
  TL_CHECK(timeout_seconds > 0, "fake communicator: timeout must be positive");
  auto w = std::make_shared<FakeWorld>();
  w->timeout_s = timeout_seconds;
  auto g = std::make_shared<FakeGroup>();
  g->world = w;
  g->n = world;
  g->posts.resize(size_t(world));
  g->entered.assign(size_t(world), 0);
  for (int r = 0; r < world; ++r) g->world_ranks.push_back(r);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < world; ++r)
    out.push_back(std::make_unique<FakeCommunicator>(g, r, std::make_shared<CommCounts>()));
  return out;
}

CommCounts fake_comm_counts(const Communicator& c) {
  auto* f = dynamic_cast<const FakeCommunicator*>(&c);
  TL_CHECK(f, "fake_comm_counts: not a fake communicator");
  return f->counts();
}

}  // namespace tl
