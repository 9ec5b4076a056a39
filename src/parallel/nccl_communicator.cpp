#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "backend/cuda/cuda_common.h"

namespace tl {

namespace {

[[noreturn]] void nccl_fail(ncclResult_t r, ncclComm_t comm, const char* expr, const char* file,
                            int line, int rank) {
  const char* last = ncclGetLastError(comm);
  fail("rank ", rank, ": NCCL error '", ncclGetErrorString(r), "'",
       last && *last ? cat(" (", last, ")") : std::string(), " in ", expr, " at ", file, ":", line);
}

#define TL_NCCL_CHECK(expr, comm, rank)                                                  \
  do {                                                                                   \
    ncclResult_t tl_nr_ = (expr);                                                        \
    if (tl_nr_ != ncclSuccess) nccl_fail(tl_nr_, comm, #expr, __FILE__, __LINE__, rank); \
  } while (0)

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F64: return ncclFloat64;
    case DType::I32: return ncclInt32;
    default: fail("NCCL: unsupported dtype ", dtype_name(t));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

// The stream, events and failure state shared by a communicator and its splits.
struct CommStream {
  int device = 0, world_rank = 0;
  bool copy_engines = false;  // zero-CTA communicators; collective_buffer() registers windows
  cudaStream_t compute = nullptr, comm = nullptr;
  cudaEvent_t before = nullptr;  // compute -> comm ordering; reused (a wait captures its state)
  std::mutex mu;                 // everything below
  uint64_t next_id = 1, issued = 0;
  struct Op {
    uint64_t id;
    cudaEvent_t done;
    double issued_at;
  };
  std::deque<Op> pending;
  // Read without mu by the health thread (the main thread may hold mu inside NCCL).
  std::atomic<uint64_t> issued_seen{0};
  std::atomic<double> oldest_issue_time{0};  // of the oldest pending op; 0 when none
  std::vector<cudaEvent_t> free_done, free_timing;
  struct Wait {
    cudaEvent_t a, b;
  };
  std::deque<Wait> waits;
  double wait_s = 0;
  void* scratch = nullptr;        // 256 bytes for barrier()
  std::mutex comms_mu;            // guards comms only (abort must not wait for mu)
  std::vector<ncclComm_t> comms;  // every communicator on this stream
  std::atomic<bool> failed{false};
  // Separate from failed: a failure seen first by check() must still abort the communicators,
  // or teardown waits forever on NCCL kernels that never finish.
  std::atomic<bool> aborted{false};
  std::mutex fail_mu;
  std::string failure;

  ~CommStream() {
    cudaSetDevice(device);
    if (comm) cudaStreamSynchronize(comm);
    for (auto& op : pending) cudaEventDestroy(op.done);
    for (auto e : free_done) cudaEventDestroy(e);
    for (auto& w : waits) {
      cudaEventDestroy(w.a);
      cudaEventDestroy(w.b);
    }
    for (auto e : free_timing) cudaEventDestroy(e);
    if (before) cudaEventDestroy(before);
    if (scratch) cudaFree(scratch);
    if (comm) cudaStreamDestroy(comm);
  }

  cudaEvent_t take(std::vector<cudaEvent_t>& pool, unsigned flags) {
    if (!pool.empty()) {
      cudaEvent_t e = pool.back();
      pool.pop_back();
      return e;
    }
    cudaEvent_t e;
    TL_CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
    return e;
  }

  // Retires finished collectives and finished waits (non-blocking). Holding mu.
  void reap() {
    while (!pending.empty()) {
      cudaError_t q = cudaEventQuery(pending.front().done);
      if (q == cudaErrorNotReady) break;
      TL_CUDA_CHECK(q);
      free_done.push_back(pending.front().done);
      pending.pop_front();
    }
    oldest_issue_time = pending.empty() ? 0.0 : pending.front().issued_at;
    while (!waits.empty()) {
      cudaError_t q = cudaEventQuery(waits.front().b);
      if (q == cudaErrorNotReady) break;
      TL_CUDA_CHECK(q);
      float ms = 0;
      TL_CUDA_CHECK(cudaEventElapsedTime(&ms, waits.front().a, waits.front().b));
      wait_s += double(ms) / 1000.0;
      free_timing.push_back(waits.front().a);
      free_timing.push_back(waits.front().b);
      waits.pop_front();
    }
  }

  void set_failure(const std::string& why) {
    std::lock_guard<std::mutex> lock(fail_mu);
    if (failure.empty()) failure = why;
    failed = true;
  }
  void check() {
    if (!failed) return;
    std::lock_guard<std::mutex> lock(fail_mu);
    throw Error(failure);
  }
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<CommStream> s, ncclComm_t comm) : s_(std::move(s)), comm_(comm) {
    TL_NCCL_CHECK(ncclCommUserRank(comm_, &rank_), comm_, s_->world_rank);
    TL_NCCL_CHECK(ncclCommCount(comm_, &world_), comm_, s_->world_rank);
    std::lock_guard<std::mutex> lock(s_->comms_mu);
    s_->comms.push_back(comm_);
  }
  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(s_->comms_mu);
      std::erase(s_->comms, comm_);
    }
    if (!s_->aborted) {
      cudaSetDevice(s_->device);
      ncclCommDestroy(comm_);  // after an abort the handle is gone already
    }
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  uint64_t issued() const override {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->issued;
  }

  CommWork all_gather(Tensor recv, Tensor send) override {
    check_args("all_gather", recv, send);
    TL_CHECK(recv.numel() == send.numel() * world_ && recv.dtype == send.dtype, "all_gather: recv ",
             recv.str(), " must hold world (", world_, ") x send ", send.str());
    return enqueue([&](cudaStream_t st) {
      return ncclAllGather(send.data, recv.data, size_t(send.numel()), nccl_type(send.dtype), comm_,
                           st);
    });
  }
  CommWork reduce_scatter(Tensor recv, Tensor send, ReduceOp op) override {
    check_args("reduce_scatter", recv, send);
    TL_CHECK(send.numel() == recv.numel() * world_ && recv.dtype == send.dtype,
             "reduce_scatter: send ", send.str(), " must hold world (", world_, ") x recv ",
             recv.str());
    return enqueue([&](cudaStream_t st) {
      return ncclReduceScatter(send.data, recv.data, size_t(recv.numel()), nccl_type(recv.dtype),
                               nccl_op(op), comm_, st);
    });
  }
  CommWork all_reduce(Tensor buf, ReduceOp op) override {
    check_args("all_reduce", buf, Tensor());
    return enqueue([&](cudaStream_t st) {
      return ncclAllReduce(buf.data, buf.data, size_t(buf.numel()), nccl_type(buf.dtype),
                           nccl_op(op), comm_, st);
    });
  }
  CommWork broadcast(Tensor buf, int root) override {
    check_args("broadcast", buf, Tensor());
    return enqueue([&](cudaStream_t st) {
      return ncclBroadcast(buf.data, buf.data, size_t(buf.numel()), nccl_type(buf.dtype), root,
                           comm_, st);
    });
  }

  void wait(CommWork w) override {
    s_->check();
    if (w.id == 0) return;
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->reap();
    for (const auto& op : s_->pending) {
      if (op.id != w.id) continue;
      cudaEvent_t a = s_->take(s_->free_timing, cudaEventDefault);
      cudaEvent_t b = s_->take(s_->free_timing, cudaEventDefault);
      TL_CUDA_CHECK(cudaEventRecord(a, s_->compute));
      TL_CUDA_CHECK(cudaStreamWaitEvent(s_->compute, op.done, 0));
      TL_CUDA_CHECK(cudaEventRecord(b, s_->compute));
      s_->waits.push_back({a, b});
      return;
    }
    // Not pending any more: finished on the device already.
  }

  void synchronize() override {
    s_->check();
    TL_CUDA_CHECK(cudaStreamSynchronize(s_->comm));
    TL_CUDA_CHECK(cudaStreamSynchronize(s_->compute));
    s_->check();
  }

  void barrier() override {
    Tensor t(s_->scratch, DType::F32, Device::CUDA, {1});
    wait(all_reduce(t, ReduceOp::Sum));
    synchronize();
  }

  Buffer collective_buffer(Backend& be, size_t bytes) override {
    if (!s_->copy_engines || bytes == 0) return Buffer(be, bytes);
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 28, 0)
    s_->check();
    TL_CUDA_CHECK(cudaSetDevice(s_->device));
    void* p = nullptr;
    TL_NCCL_CHECK(ncclMemAlloc(&p, bytes), comm_, s_->world_rank);
    ncclWindow_t win = nullptr;  // collective: every rank registers its buffer in turn
    const ncclResult_t r = ncclCommWindowRegister(comm_, p, bytes, &win, NCCL_WIN_COLL_SYMMETRIC);
    if (r != ncclSuccess) {
      ncclMemFree(p);
      TL_NCCL_CHECK(r, comm_, s_->world_rank);
    }
    std::shared_ptr<CommStream> s = s_;
    ncclComm_t c = comm_;
    return Buffer(be, p, bytes, [s, c, p, win] {
      cudaSetDevice(s->device);
      {  // deregister only while the communicator lives (not after its destruction or an abort)
        std::lock_guard<std::mutex> lock(s->comms_mu);
        if (!s->aborted && std::find(s->comms.begin(), s->comms.end(), c) != s->comms.end())
          ncclCommWindowDeregister(c, win);
      }
      ncclMemFree(p);
    });
#else
    fail("unreachable: copy-engine all-gathers in a build without NCCL 2.28");
#endif
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    s_->check();
    ncclComm_t child = nullptr;
    TL_NCCL_CHECK(ncclCommSplit(comm_, color, key, &child, nullptr), comm_, s_->world_rank);
    TL_CHECK(child != nullptr, "ncclCommSplit gave no communicator for color ", color);
    return std::make_unique<NcclCommunicator>(s_, child);
  }

  void check() override {
    s_->check();
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess &&
        async != ncclInProgress) {
      abort_all(*s_, cat("rank ", s_->world_rank, ": NCCL asynchronous error '",
                         ncclGetErrorString(async), "'"));
      s_->check();
    }
  }

  void abort(const std::string& reason) override { abort_all(*s_, reason); }

  double take_wait_seconds() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    if (!s_->waits.empty()) TL_CUDA_CHECK(cudaEventSynchronize(s_->waits.back().b));
    s_->reap();
    const double s = s_->wait_s;
    s_->wait_s = 0;
    return s;
  }

  NcclProgress progress() {
    NcclProgress p;
    cudaSetDevice(s_->device);  // called from the health monitor's thread
    {
      // try_lock: the main thread may sit inside an NCCL call holding mu; then report what
      // was last seen (the age keeps growing, so a stuck call is still noticed).
      std::unique_lock<std::mutex> lock(s_->mu, std::try_to_lock);
      if (lock.owns_lock() && !s_->failed) s_->reap();
    }
    p.issued = s_->issued_seen;
    const double oldest = s_->oldest_issue_time;
    if (oldest > 0) p.oldest_pending_s = now_s() - oldest;
    if (!s_->failed) {
      std::lock_guard<std::mutex> lock(s_->comms_mu);
      for (ncclComm_t c : s_->comms) {
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(c, &async) == ncclSuccess && async != ncclSuccess &&
            async != ncclInProgress)
          p.error = cat("NCCL asynchronous error '", ncclGetErrorString(async), "'");
      }
    }
    return p;
  }

  static void abort_all(CommStream& s, const std::string& reason) {
    s.set_failure(reason);  // keeps the first reason
    if (s.aborted.exchange(true)) return;
    // Not under s.mu: the main thread may be blocked inside an NCCL call holding it.
    cudaSetDevice(s.device);
    std::lock_guard<std::mutex> lock(s.comms_mu);
    for (ncclComm_t c : s.comms) ncclCommAbort(c);
  }

 private:
  void check_args(const char* op, const Tensor& a, const Tensor& b) {
    s_->check();
    check_device(op, "buffer", a, Device::CUDA);
    if (!b.empty()) check_device(op, "send", b, Device::CUDA);
  }

  template <class Call>
  CommWork enqueue(Call call) {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->reap();
    TL_CUDA_CHECK(cudaEventRecord(s_->before, s_->compute));
    TL_CUDA_CHECK(cudaStreamWaitEvent(s_->comm, s_->before, 0));
    TL_NCCL_CHECK(call(s_->comm), comm_, s_->world_rank);
    cudaEvent_t done = s_->take(s_->free_done, cudaEventDisableTiming);
    TL_CUDA_CHECK(cudaEventRecord(done, s_->comm));
    const uint64_t id = s_->next_id++;
    s_->issued++;
    s_->pending.push_back({id, done, now_s()});
    s_->issued_seen = s_->issued;
    if (s_->pending.size() == 1) s_->oldest_issue_time = s_->pending.front().issued_at;
    return CommWork{id};
  }

  std::shared_ptr<CommStream> s_;
  ncclComm_t comm_;
  int rank_ = 0, world_ = 1;
};

}  // namespace

bool nccl_available() { return true; }

std::string nccl_unique_id() {
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  TL_CHECK(r == ncclSuccess, "ncclGetUniqueId failed: ", ncclGetErrorString(r));
  return std::string(id.internal, sizeof id.internal);
}

std::string nccl_version() {
  int v = 0;
  ncclGetVersion(&v);
  return cat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
}

std::unique_ptr<Communicator> make_nccl_communicator(const std::string& unique_id, int rank,
                                                     int world, int device, void* compute_stream,
                                                     bool copy_engines) {
  ncclUniqueId id;
  TL_CHECK(unique_id.size() == sizeof id.internal, "NCCL unique id has ", unique_id.size(),
           " bytes, expected ", sizeof id.internal);
  std::memcpy(id.internal, unique_id.data(), sizeof id.internal);
  TL_CHECK(compute_stream != nullptr, "NCCL needs the CUDA backend's stream");
  auto s = std::make_shared<CommStream>();
  s->device = device;
  s->world_rank = rank;
  s->compute = static_cast<cudaStream_t>(compute_stream);
  TL_CUDA_CHECK(cudaSetDevice(device));
  int lo = 0, hi = 0;
  TL_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
  TL_CUDA_CHECK(cudaStreamCreateWithPriority(&s->comm, cudaStreamNonBlocking, hi));
  TL_CUDA_CHECK(cudaEventCreateWithFlags(&s->before, cudaEventDisableTiming));
  TL_CUDA_CHECK(cudaMalloc(&s->scratch, 256));
  TL_CUDA_CHECK(cudaMemset(s->scratch, 0, 256));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  if (copy_engines) {
#if NCCL_VERSION_CODE < NCCL_VERSION(2, 28, 0)
    fail("dist.all_gather \"copy_engines\" needs NCCL 2.28 or newer; this tinyllama was built "
         "with NCCL ", NCCL_MAJOR, ".", NCCL_MINOR, " (use \"kernels\")");
#else
    int v = 0;
    ncclGetVersion(&v);
    TL_CHECK(v >= 22800, "dist.all_gather \"copy_engines\" needs NCCL 2.28 or newer; this job "
             "loaded NCCL ", nccl_version(), " (use \"kernels\")");
    config.CTAPolicy = NCCL_CTA_POLICY_ZERO;  // splits inherit it
    s->copy_engines = true;
#endif
  }
  ncclComm_t comm = nullptr;
  TL_NCCL_CHECK(ncclCommInitRankConfig(&comm, world, id, rank, &config), comm, rank);
  return std::make_unique<NcclCommunicator>(s, comm);
}

NcclProgress nccl_progress(Communicator& c) {
  auto* n = dynamic_cast<NcclCommunicator*>(&c);
  TL_CHECK(n, "nccl_progress: not an NCCL communicator");
  return n->progress();
}

}  // namespace tl
