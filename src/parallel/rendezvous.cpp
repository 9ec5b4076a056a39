// Wire format (little-endian, this build on both ends):
//   hello  (rank -> 0): u32 magic "TLRV", u32 version, i32 rank, i32 world, string host
//   answer (0 -> rank): u32 status (0 ok, 1 refused), string payload-or-reason,
//                       then when ok: u32 n, n strings (host of each rank)
#include "parallel/rendezvous.h"

#include "core/error.h"
#include "core/log.h"

namespace tl {

namespace {
constexpr uint32_t kMagic = 0x56524c54;  // "TLRV"
constexpr uint32_t kVersion = 1;

struct Hello {
  uint32_t magic = kMagic, version = kVersion;
  int32_t rank = 0, world = 0;
};
}  // namespace

RendezvousServer::RendezvousServer(int port) : listener_(tcp_listen(port, 1024)) {
  port_ = bound_port(listener_);
}

Rendezvous RendezvousServer::serve(int world, const std::string& payload,
                                   const std::string& my_host, double timeout_s) {
  const Deadline d = deadline_in(timeout_s);
  Rendezvous out;
  out.payload = payload;
  out.hosts.assign(size_t(world), "");
  out.hosts[0] = my_host;
  out.links.resize(size_t(world));
  int joined = 1;
  auto refuse = [&](Socket& s, const std::string& why) {
    const uint32_t status = 1;
    send_all(s, &status, 4, deadline_in(2), "a joining rank");
    send_string(s, why, deadline_in(2), "a joining rank");
    fail("rendezvous on port ", port_, ": ", why);
  };
  while (joined < world) {
    Socket s = tcp_accept(listener_, d);
    if (!s.valid()) {
      std::string missing;
      for (int r = 1; r < world; ++r)
        if (!out.links[size_t(r)].valid()) missing += cat(missing.empty() ? "" : ", ", r);
      fail("rendezvous on port ", port_, ": after ", timeout_s, " s, rank(s) ", missing, " of ",
           world, " have not connected (did they start? can they reach this host, ", my_host,
           ", on that port?)");
    }
    Hello h;
    std::string host;
    // A connection that says nothing sensible is not one of ours: drop it and keep waiting.
    try {
      if (!recv_all(s, &h, sizeof h, deadline_in(5), "a joining rank") ||
          !recv_string(s, host, deadline_in(5), "a joining rank") || h.magic != kMagic) {
        log_warn("rendezvous: ignoring a connection that is not a tinyllama rank");
        continue;
      }
    } catch (const Error& e) {
      log_warn("rendezvous: ignoring a connection: ", e.what());
      continue;
    }
    if (h.version != kVersion) refuse(s, cat("rank ", h.rank, " runs another tinyllama version"));
    if (h.world != world)
      refuse(s, cat("rank ", h.rank, " (", host, ") was launched with world size ", h.world,
                    ", rank 0 with ", world));
    if (h.rank < 1 || h.rank >= world)
      refuse(s, cat("a rank from ", host, " says it is rank ", h.rank, " of ", world));
    if (out.links[size_t(h.rank)].valid())
      refuse(s, cat("two processes claim rank ", h.rank, " (", out.hosts[size_t(h.rank)], " and ",
                    host, ")"));
    out.hosts[size_t(h.rank)] = host;
    out.links[size_t(h.rank)] = std::move(s);
    joined++;
  }
  for (int r = 1; r < world; ++r) {
    const Socket& s = out.links[size_t(r)];
    const std::string peer = cat("rank ", r, " (", out.hosts[size_t(r)], ")");
    const uint32_t ok = 0, n = uint32_t(world);
    bool sent = send_all(s, &ok, 4, d, peer) && send_string(s, payload, d, peer) &&
                send_all(s, &n, 4, d, peer);
    for (const auto& h : out.hosts) sent = sent && send_string(s, h, d, peer);
    TL_CHECK(sent, "rendezvous: timed out sending to ", peer);
  }
  return out;
}

Rendezvous rendezvous_join(const std::string& addr, int port, int rank, int world,
                           const std::string& my_host, double timeout_s) {
  const Deadline d = deadline_in(timeout_s);
  const std::string where = cat("rank 0 at ", addr, ":", port);
  Socket s = tcp_connect(addr, port, d);
  TL_CHECK(s.valid(), "rendezvous: could not reach ", where, " within ", timeout_s,
           " s (is MASTER_ADDR/MASTER_PORT right, and did rank 0 start?)");
  Hello h;
  h.rank = rank;
  h.world = world;
  TL_CHECK(send_all(s, &h, sizeof h, d, where) && send_string(s, my_host, d, where),
           "rendezvous: timed out talking to ", where);
  uint32_t status = 0;
  std::string text;
  TL_CHECK(recv_all(s, &status, 4, d, where) && recv_string(s, text, d, where),
           "rendezvous: connected to ", where, " but got no answer within ", timeout_s,
           " s (rank 0 waits for every rank: did all ", world, " start?)");
  TL_CHECK(status == 0, "rendezvous: ", where, " refused rank ", rank, ": ", text);
  Rendezvous out;
  out.payload = text;
  uint32_t n = 0;
  TL_CHECK(recv_all(s, &n, 4, d, where) && n == uint32_t(world), "rendezvous: bad host list from ",
           where);
  out.hosts.resize(n);
  for (auto& host : out.hosts)
    TL_CHECK(recv_string(s, host, d, where), "rendezvous: bad host list from ", where);
  out.links.push_back(std::move(s));
  return out;
}

Rendezvous rendezvous(const LaunchInfo& li, const std::function<std::string()>& make_payload,
                      double timeout_s) {
  if (li.rank == 0) {
    RendezvousServer server(li.master_port);
    return server.serve(li.world, make_payload(), host_name(), timeout_s);
  }
  return rendezvous_join(li.master_addr, li.master_port, li.rank, li.world, host_name(), timeout_s);
}

}  // namespace tl
