// The NCCL communicator (built with the CUDA backend when NCCL is found: TL_WITH_NCCL).
// No CUDA or NCCL types here, so the rest of src/parallel/ compiles without them.
//
// One communication stream per job (shared by the world communicator and its splits), at
// the highest priority so collective kernels get SMs while compute fills the GPU. Each
// collective waits for an event recorded on the compute stream at issue time and records
// a completion event; wait() makes the compute stream wait for it, bracketed by two timing
// events whose gap is the time compute actually stood still (take_wait_seconds()).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace tl {

bool nccl_available();         // built with NCCL
std::string nccl_unique_id();  // rank 0 makes it; the rendezvous hands it out (128 bytes)
std::string nccl_version();    // "2.28.3" (the library loaded)

// Collective over `world` processes: every rank passes the same id. device: the CUDA
// device this process computes on; compute_stream: Backend::native_stream().
// copy_engines (dist.all_gather "copy_engines", NCCL >= 2.28): the communicator and its
// splits take the zero-CTA policy, and collective_buffer() gives ncclMemAlloc'd memory
// registered as a symmetric window, so all-gathers between such buffers run on the copy
// engines over NVLink and take no SMs from the GEMMs beside them (reductions still use SMs).
// That memory is outside the backend's allocator and its memory figures.
std::unique_ptr<Communicator> make_nccl_communicator(const std::string& unique_id, int rank,
                                                     int world, int device, void* compute_stream,
                                                     bool copy_engines = false);

// For the health monitor (any thread): collectives issued, age of the oldest incomplete
// one, and an asynchronous NCCL error ("" when none).
struct NcclProgress {
  uint64_t issued = 0;
  double oldest_pending_s = 0;
  std::string error;
};
NcclProgress nccl_progress(Communicator& c);

}  // namespace tl
