// Starting a job: from the launcher's variables to a world communicator and health links.
//   1. detect_launch() (launch_env.h) says who this process is; the caller makes the backend
//      on device_for_rank() (one GPU per process: by local rank, or the one GPU visible);
//   2. start_session(): the TCP rendezvous hands out rank 0's NCCL unique id, NCCL joins the
//      ranks, and the rendezvous links become the health monitor (health.h), which aborts
//      the communicators and names the rank when one dies, fails or hangs.
// On the CPU backend only a single process is possible (the in-process fake communicator
// serves tests, parallel/fake_communicator.h).
//
// NVLink SHARP (NCCL_NVLS_ENABLE) is turned off unless the environment already sets it:
// the machines this was built on require it off, and FSDP's collectives gain little from it.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "parallel/communicator.h"
#include "parallel/health.h"
#include "parallel/launch_env.h"

namespace tl {

struct DistSession {
  DistSession() = default;
  DistSession(const DistSession&) = delete;  // the health thread holds its address
  DistSession& operator=(const DistSession&) = delete;
  LaunchInfo launch;
  std::unique_ptr<Communicator> world;
  std::atomic<Communicator*> live{nullptr};  // `world` once made (read by the health thread)
  std::unique_ptr<HealthMonitor> health;     // null for a single process; stops before `world` goes
  std::vector<std::string> hosts;            // host name of every rank
  int ranks_per_node = 1;                    // from the launcher, else counted from hosts
  std::string describe() const;
};

// "cuda:<device>" for cuda/auto requests when this build has CUDA and a GPU is visible
// (device: cuda_device_for_local_rank), else `requested` ("cpu" stays "cpu").
std::string device_for_rank(const std::string& requested, const LaunchInfo& li);
// The same with the number of visible CUDA devices given (pure: no CUDA call).
std::string device_for_rank(const std::string& requested, const LaunchInfo& li,
                            int visible_devices);

// The CUDA device of the rank with this local rank, among the devices visible to it: its
// local rank when the node's GPUs are all visible; device 0 when exactly one is visible
// (Slurm or MPI binding one GPU to each task). Throws naming both numbers when several
// but fewer than local_rank + 1 are visible, or none.
int cuda_device_for_local_rank(int visible_devices, int local_rank);

// Throws with a message naming the missing piece (NCCL, a GPU) when the job cannot start.
// copy_engines: dist.all_gather "copy_engines" (nccl_communicator.h); ignored on the CPU.
std::unique_ptr<DistSession> start_session(const LaunchInfo& li, Backend& be, double timeout_s,
                                           bool copy_engines = false);

}  // namespace tl
