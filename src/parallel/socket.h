// Small blocking TCP helpers with deadlines, for the rendezvous and the health links
// (a few bytes a second; no framework needed). Errors throw tl::Error saying what was
// being done and with whom.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace tl {

using Deadline = std::chrono::steady_clock::time_point;
Deadline deadline_in(double seconds);
double seconds_left(Deadline d);  // <= 0 once passed

// Owns a socket descriptor (closed on destruction).
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() { close(); }
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void close() noexcept;

 private:
  int fd_ = -1;
};

// Listens on all interfaces; port 0 picks a free one (bound_port tells which).
Socket tcp_listen(int port, int backlog);
int bound_port(const Socket& s);
// Waits for one connection until the deadline; an invalid Socket on timeout.
Socket tcp_accept(const Socket& listener, Deadline d);
// Connects to host:port, retrying while the peer is not listening yet, until the deadline;
// an invalid Socket on timeout. Throws when the host name does not resolve.
Socket tcp_connect(const std::string& host, int port, Deadline d);

// Whole-buffer transfers; false on timeout, throw on a closed or broken connection.
bool send_all(const Socket& s, const void* data, size_t n, Deadline d, const std::string& peer);
bool recv_all(const Socket& s, void* data, size_t n, Deadline d, const std::string& peer);

// Length-prefixed strings (u32 length, then the bytes; at most 1 MiB).
bool send_string(const Socket& s, const std::string& v, Deadline d, const std::string& peer);
bool recv_string(const Socket& s, std::string& v, Deadline d, const std::string& peer);

std::string host_name();

}  // namespace tl
