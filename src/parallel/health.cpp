// Frames on the links: u32 type, i32 sender, u64 a, u64 b, u32 text length, text.
//   HEARTBEAT a = collectives issued, b = age of the oldest pending one in ms
//   FAIL      text = "rank R failed: ..." (a rank's own failure, to rank 0)
//   ABORT     text = the reason (rank 0 to every rank)
//   BYE       a clean end
#include "parallel/health.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace tl {

namespace {
enum : uint32_t { kHeartbeat = 1, kFail = 2, kAbort = 3, kBye = 4 };
constexpr size_t kHeader = 4 + 4 + 8 + 8 + 4;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

struct HealthMonitor::Peer {
  Socket sock;
  int rank = -1;
  std::string in;  // bytes received, not yet parsed
  double last_seen = 0;
  uint64_t issued = 0;
  double pending_s = 0;
  bool done = false;    // said goodbye
  bool closed = false;  // link gone
};

HealthMonitor::HealthMonitor(std::vector<Socket> links, int rank, int world, HealthOptions opts,
                             std::function<HealthProbe()> probe,
                             std::function<void(const std::string&)> on_failure)
    : rank_(rank),
      world_(world),
      opts_(opts),
      probe_(std::move(probe)),
      on_failure_(std::move(on_failure)) {
  if (opts_.interval_s <= 0) opts_.interval_s = std::min(1.0, opts_.timeout_s / 10);
  const double t = now_s();
  for (size_t i = 0; i < links.size(); ++i) {
    auto p = std::make_unique<Peer>();
    p->rank = rank == 0 ? int(i) : 0;
    p->last_seen = t;
    p->sock = std::move(links[i]);
    if (!p->sock.valid()) p->done = p->closed = true;  // rank 0's own slot
    peers_.push_back(std::move(p));
  }
  thread_ = std::thread([this] { run(); });
}

HealthMonitor::~HealthMonitor() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (finished_ || !failure().empty()) return;
  // Leaving without finish(): an exception is unwinding this rank. Tell the others now.
  std::string why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    why = !pending_report_.empty() ? pending_report_
                                   : cat("rank ", rank_, " stopped with an error (see its log)");
  }
  for (auto& p : peers_)
    if (!p->closed) send_frame(*p, rank_ == 0 ? kAbort : kFail, 0, 0, why);
}

void HealthMonitor::report_failure(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pending_report_.empty()) pending_report_ = cat("rank ", rank_, " failed: ", reason);
}

void HealthMonitor::finish() {
  if (finished_.exchange(true)) return;
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& p : peers_)
    if (!p->closed) send_frame(*p, kBye, 0, 0, "");
}

std::string HealthMonitor::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

void HealthMonitor::send_frame(Peer& p, uint32_t type, uint64_t a, uint64_t b,
                               const std::string& text) {
  std::string f(kHeader, '\0');
  const int32_t from = rank_;
  const uint32_t len = uint32_t(text.size());
  std::memcpy(&f[0], &type, 4);
  std::memcpy(&f[4], &from, 4);
  std::memcpy(&f[8], &a, 8);
  std::memcpy(&f[16], &b, 8);
  std::memcpy(&f[24], &len, 4);
  f += text;
  try {
    if (!send_all(p.sock, f.data(), f.size(), deadline_in(1.0), cat("rank ", p.rank)))
      p.closed = true;  // a peer that takes no bytes for a second is as good as gone
  } catch (const Error&) {
    p.closed = true;  // noticed as a closed link by the reading side
  }
}

void HealthMonitor::read_frames(Peer& p, double now) {
  char buf[4096];
  for (;;) {
    ssize_t k = ::recv(p.sock.fd(), buf, sizeof buf, MSG_DONTWAIT);
    if (k > 0) {
      p.in.append(buf, size_t(k));
      continue;
    }
    if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) p.closed = true;
    break;
  }
  while (p.in.size() >= kHeader) {
    uint32_t type, len;
    uint64_t a, b;
    std::memcpy(&type, &p.in[0], 4);
    std::memcpy(&a, &p.in[8], 8);
    std::memcpy(&b, &p.in[16], 8);
    std::memcpy(&len, &p.in[24], 4);
    if (p.in.size() < kHeader + len) break;
    const std::string text = p.in.substr(kHeader, len);
    p.in.erase(0, kHeader + len);
    p.last_seen = now;
    if (type == kHeartbeat) {
      p.issued = a;
      p.pending_s = double(b) / 1000.0;
    } else if (type == kBye) {
      p.done = true;
    } else if (type == kFail) {
      // Rank 0 relays it to everyone. A survivor's report (an NCCL error) can arrive before
      // the closed link of the rank that died is read: name that rank too.
      fail(rank_ == 0 ? text + closed_links_note() : text, true);
    } else if (type == kAbort) {
      fail(text, false);
    }
  }
}

std::string HealthMonitor::closed_links_note() {
  std::string gone;
  for (auto& p : peers_) {
    if (!p || p->rank == 0 || p->done) continue;
    char c;
    if (!p->closed && ::recv(p->sock.fd(), &c, 1, MSG_DONTWAIT | MSG_PEEK) == 0) p->closed = true;
    if (p->closed) gone += cat(" ", p->rank);
  }
  return gone.empty() ? std::string() : cat(" (link closed: rank", gone, ")");
}

void HealthMonitor::fail(const std::string& reason, bool tell_others) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failure_.empty()) return;
    failure_ = reason;
  }
  // The backstop runs on its own thread: on_failure (an NCCL abort) may itself block.
  if (opts_.exit_grace_s > 0)
    std::thread([reason, rank = rank_, grace = opts_.exit_grace_s] {
      std::this_thread::sleep_for(std::chrono::duration<double>(grace));
      std::fprintf(stderr, "error: %s (rank %d exits: it did not stop within %.0f s)\n",
                   reason.c_str(), rank, grace);
      std::fflush(stderr);
      std::_Exit(1);
    }).detach();
  if (tell_others)
    for (auto& p : peers_)
      if (!p->closed && !p->done) send_frame(*p, rank_ == 0 ? kAbort : kFail, 0, 0, reason);
  std::fprintf(stderr, "[rank %d] distributed failure: %s\n", rank_, reason.c_str());
  if (on_failure_) on_failure_(reason);
}

void HealthMonitor::tick_rank0(double now) {
  HealthProbe me;
  try {
    me = probe_ ? probe_() : HealthProbe{};
  } catch (const std::exception& e) {
    me.local_error = e.what();
  }
  if (!me.local_error.empty()) return fail(cat("rank 0 failed: ", me.local_error), true);
  uint64_t max_issued = me.issued;
  double max_pending = me.oldest_pending_s;
  int waiting_rank = 0;
  for (auto& p : peers_) {
    if (p->rank == 0 || p->done) continue;
    if (p->closed)
      return fail(cat("rank ", p->rank, " exited unexpectedly (its link to rank 0 closed)"), true);
    if (now - p->last_seen > opts_.timeout_s)
      return fail(cat("rank ", p->rank, " stopped responding: no heartbeat for ", opts_.timeout_s,
                      " s (process frozen or host unreachable)"),
                  true);
    max_issued = std::max(max_issued, p->issued);
    if (p->pending_s > max_pending) {
      max_pending = p->pending_s;
      waiting_rank = p->rank;
    }
  }
  if (max_pending <= opts_.timeout_s) return;
  std::string behind;
  auto note = [&](int r, uint64_t issued) {
    if (issued < max_issued) behind += cat(behind.empty() ? "" : ", ", r, " (issued ", issued, ")");
  };
  note(0, me.issued);
  for (auto& p : peers_)
    if (p->rank != 0 && !p->done) note(p->rank, p->issued);
  if (!behind.empty())
    return fail(cat("rank(s) ", behind, " hung: rank ", waiting_rank, " has waited ",
                    int(max_pending * 10) / 10.0, " s (timeout ", opts_.timeout_s,
                    " s) in collective #", max_issued, " for them"),
                true);
  fail(cat("collective #", max_issued, " has not completed on rank ", waiting_rank, " within ",
           opts_.timeout_s, " s although every rank issued it (communication failure)"),
       true);
}

void HealthMonitor::tick_other(double now) {
  Peer& p = *peers_[0];
  if (!p.done && p.closed) return fail("rank 0 exited unexpectedly (its link closed)", false);
  if (!p.done && now - p.last_seen > opts_.timeout_s)
    return fail(cat("rank 0 stopped responding: no heartbeat for ", opts_.timeout_s, " s"), false);
  HealthProbe me;
  try {
    me = probe_ ? probe_() : HealthProbe{};
  } catch (const std::exception& e) {
    me.local_error = e.what();
  }
  if (!me.local_error.empty()) fail(cat("rank ", rank_, " failed: ", me.local_error), true);
}

void HealthMonitor::run() {
  double last_beat = 0;
  while (!stop_) {
    std::vector<pollfd> fds;
    for (auto& p : peers_)
      if (!p->closed) fds.push_back({p->sock.fd(), POLLIN, 0});
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } else {
      ::poll(fds.data(), fds.size(), 50);
    }
    const double now = now_s();
    for (auto& p : peers_)
      if (!p->closed) read_frames(*p, now);
    if (!failure().empty()) continue;  // the error path (or the backstop) ends the process
    std::string report;
    {
      std::lock_guard<std::mutex> lock(mu_);
      report = pending_report_;
    }
    if (!report.empty()) {
      fail(report, true);
      continue;
    }
    if (rank_ == 0)
      tick_rank0(now);
    else
      tick_other(now);
    if (now - last_beat >= opts_.interval_s && failure().empty()) {
      last_beat = now;
      HealthProbe me;
      try {
        me = probe_ ? probe_() : HealthProbe{};
      } catch (const std::exception&) {
      }
      for (auto& p : peers_)
        if (!p->closed && !p->done)
          send_frame(*p, kHeartbeat, me.issued, uint64_t(me.oldest_pending_s * 1000), "");
    }
  }
}

}  // namespace tl
