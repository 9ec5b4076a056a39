// The TCP rendezvous that starts a job: rank 0 listens on MASTER_PORT, every other rank
// connects to MASTER_ADDR:MASTER_PORT and says who it is; once all have come, rank 0 sends
// each of them its payload (the NCCL unique id) and every rank's host name. The
// connections stay open afterwards as the health links (parallel/health.h).
//
// Bounded in time: a rank that never comes, an address nobody listens on, or a rank 0
// that never answers end in an error that names the ranks, the address and the wait.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "parallel/launch_env.h"
#include "parallel/socket.h"

namespace tl {

struct Rendezvous {
  std::string payload;             // rank 0's bytes
  std::vector<std::string> hosts;  // host name of every rank
  // rank 0: links[r] connects to rank r (links[0] unused); other ranks: links[0] to rank 0.
  std::vector<Socket> links;
};

// Rank 0's side: binds now (port 0 = any free port), so tests can learn the port first.
class RendezvousServer {
 public:
  explicit RendezvousServer(int port);
  int port() const { return port_; }
  // Waits for world - 1 ranks, then answers each with payload and the host list.
  Rendezvous serve(int world, const std::string& payload, const std::string& my_host,
                   double timeout_s);

 private:
  Socket listener_;
  int port_ = 0;
};

Rendezvous rendezvous_join(const std::string& addr, int port, int rank, int world,
                           const std::string& my_host, double timeout_s);

// For a launched job: rank 0 serves make_payload(), the others join.
Rendezvous rendezvous(const LaunchInfo& li, const std::function<std::string()>& make_payload,
                      double timeout_s);

}  // namespace tl
