#include "parallel/bootstrap.h"

#include <cstdlib>

#include "core/log.h"
#include "parallel/fake_communicator.h"
#include "parallel/rendezvous.h"
#ifdef TL_WITH_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace tl {

std::string DistSession::describe() const {
  return cat(launch.describe(), "; ", ranks_per_node, " rank(s) per node",
             hosts.empty() ? std::string() : cat(", rank 0 on ", hosts[0]));
}

int cuda_device_for_local_rank(int visible_devices, int local_rank) {
  TL_CHECK(visible_devices > 0, "local rank ", local_rank,
           " needs a GPU, but no CUDA device is visible to this process (CUDA_VISIBLE_DEVICES?)");
  if (local_rank < visible_devices) return local_rank;  // the node's GPUs, one per local rank
  if (visible_devices == 1) return 0;                   // the launcher bound one GPU to this task
  fail("local rank ", local_rank, " needs GPU ", local_rank, ", but only ", visible_devices,
       " CUDA devices are visible to this process: make all of the node's GPUs visible to every "
       "rank, or bind exactly one GPU to each task (e.g. srun --gpus-per-task=1)");
}

std::string device_for_rank(const std::string& requested, const LaunchInfo& li,
                            int visible_devices) {
  if (requested == "cpu") return "cpu";
  if (requested.rfind("cuda:", 0) == 0) return requested;
  // No GPU: "auto" falls back to the CPU, "cuda" gets make_backend's message (no GPU
  // visible, or a build without CUDA).
  if (visible_devices <= 0) return requested;
  if (requested == "cuda" || requested == "auto")
    return cat("cuda:", cuda_device_for_local_rank(visible_devices, li.local_rank));
  return requested;
}

std::string device_for_rank(const std::string& requested, const LaunchInfo& li) {
  if (requested == "cpu" || requested.rfind("cuda:", 0) == 0) return requested;
  return device_for_rank(requested, li, cuda_visible_device_count());
}

namespace {

[[maybe_unused]] int count_per_node(const std::vector<std::string>& hosts, int rank) {
  int n = 0;
  for (const auto& h : hosts) n += h == hosts[size_t(rank)];
  return n;
}

}  // namespace

std::unique_ptr<DistSession> start_session(const LaunchInfo& li, Backend& be, double timeout_s,
                                           bool copy_engines) {
  auto sp = std::make_unique<DistSession>();
  DistSession& s = *sp;
  s.launch = li;
  if (be.device() == Device::CPU) {
    TL_CHECK(li.world == 1, "multi-process training needs the CUDA backend (NCCL); this job has ",
             li.world, " ranks on device '", be.describe(), "'");
    s.world = std::move(make_fake_communicators(1, timeout_s)[0]);
    s.hosts = {host_name()};
    s.live = s.world.get();
    return sp;
  }
#ifdef TL_WITH_NCCL
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  void* stream = be.native_stream();
  const int device = be.device_index();
  TL_CHECK(stream && device >= 0, "distributed training needs a backend with a device stream");
  std::string id;
  if (li.world == 1) {
    id = nccl_unique_id();
    s.hosts = {host_name()};
  } else {
    Rendezvous rv = rendezvous(
        li, [] { return nccl_unique_id(); }, timeout_s);
    id = rv.payload;
    s.hosts = rv.hosts;
    // The health links start before NCCL: a rank that dies during NCCL's own start-up is
    // reported (and the others exit) instead of blocking them in ncclCommInitRank.
    HealthOptions ho;
    ho.timeout_s = timeout_s;
    auto* session = &s;
    s.health = std::make_unique<HealthMonitor>(
        std::move(rv.links), li.rank, li.world, ho,
        [session] {
          HealthProbe p;
          Communicator* w = session->live.load();
          if (!w) return p;
          NcclProgress n = nccl_progress(*w);
          p.issued = n.issued;
          p.oldest_pending_s = n.oldest_pending_s;
          p.local_error = n.error;
          return p;
        },
        [session](const std::string& why) {
          if (Communicator* w = session->live.load()) w->abort(why);
        });
  }
  s.world = make_nccl_communicator(id, li.rank, li.world, device, stream, copy_engines);
  s.live = s.world.get();
  s.ranks_per_node = li.local_world > 0 ? li.local_world : count_per_node(s.hosts, li.rank);
  log_info("dist: ", s.describe(), "; NCCL ", nccl_version(),
           copy_engines ? ", all-gathers on the copy engines" : "");
  return sp;
#else
  fail(
      "this tinyllama was built without NCCL: multi-GPU training is not available (install "
      "NCCL and rebuild with the CUDA backend)");
#endif
}

}  // namespace tl
