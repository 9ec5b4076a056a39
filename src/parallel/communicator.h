// Collectives between the ranks of a group, ordered against the backend's compute stream.
//
// Ordering: a collective starts after all work enqueued so far on the compute stream (so
// it sees the values that work writes) and runs on the communicator's own stream, so
// compute enqueued afterwards overlaps with it. wait(work) makes compute enqueued after
// the call wait for the collective; the host never blocks there. On the CPU (fake
// communicator) collectives complete before the call returns and wait() is a no-op.
//
// Every rank of the group must issue the same collectives in the same order, with the
// same sizes and dtypes. Buffers stay untouched by the caller until the work is waited on.
//
// Failure: when a rank dies, hangs past the timeout or hits a communication error, calls
// throw tl::Error naming the rank and the cause (check() too), on every rank.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/tensor.h"

namespace tl {

enum class ReduceOp { Sum, Avg, Max };

// A collective in flight; the default value (id 0) is "nothing to wait for".
struct CommWork {
  uint64_t id = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;

  // recv[world * n] = the ranks' send[n] in rank order. dtypes f32, bf16, i32, f64.
  virtual CommWork all_gather(Tensor recv, Tensor send) = 0;
  // recv[n] = op over ranks of send[world * n] chunk `rank`. f32, f64, or bf16 (Sum only).
  virtual CommWork reduce_scatter(Tensor recv, Tensor send, ReduceOp op) = 0;
  // buf = op over ranks of buf, in place. f32, f64 or i32 (Max only for i32).
  virtual CommWork all_reduce(Tensor buf, ReduceOp op) = 0;
  // buf = root's buf, in place.
  virtual CommWork broadcast(Tensor buf, int root) = 0;

  // Memory for the buffers this group's all-gathers read and write. Where the group moves
  // all-gathers with the copy engines (NCCL, dist.all_gather "copy_engines") it is memory
  // registered with every rank, so: collective (every rank calls it with the same bytes in
  // the same order), and a collective's views must sit at the same offset on every rank.
  // Elsewhere it is ordinary memory from be.
  virtual Buffer collective_buffer(Backend& be, size_t bytes) { return Buffer(be, bytes); }

  // Compute enqueued after this waits for w (host does not block).
  virtual void wait(CommWork w) = 0;
  // The host waits for everything issued so far on this group and on the compute stream.
  virtual void synchronize() = 0;
  // Every rank reaches this point (host-side), then continues.
  virtual void barrier() = 0;

  // A group of the ranks that pass the same color, ordered by key. Collective: every rank
  // calls it. The child shares the parent's stream, so work on parent and child runs in
  // issue order, and a failure of one fails both.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Throws if the group has failed (another rank died, hung, or reported an error).
  virtual void check() = 0;
  // Marks the group failed with `reason` (this rank's error), so every rank stops.
  virtual void abort(const std::string& reason) = 0;

  // Seconds the compute stream stood still waiting on collectives of this group (and of
  // its children) since the last call: measured with events around each wait. 0 on CPU.
  virtual double take_wait_seconds() { return 0; }
  // Collectives issued so far (for progress reports and tests).
  virtual uint64_t issued() const = 0;
};

}  // namespace tl
