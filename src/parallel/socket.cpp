#include "parallel/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/error.h"

namespace tl {

Deadline deadline_in(double seconds) {
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
             std::chrono::duration<double>(seconds));
}

double seconds_left(Deadline d) {
  return std::chrono::duration<double>(d - std::chrono::steady_clock::now()).count();
}

namespace {
int poll_ms(Deadline d) {
  const double s = seconds_left(d);
  return s <= 0 ? 0 : int(std::min(s * 1000.0 + 1, 1e9));
}

// Waits until fd is ready for `events` or the deadline passes (false).
bool wait_fd(int fd, short events, Deadline d) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, poll_ms(d));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) fail("poll failed: ", std::strerror(errno));
  }
}
}  // namespace

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void Socket::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Socket tcp_listen(int port, int backlog) {
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  TL_CHECK(s.valid(), "cannot create a socket: ", std::strerror(errno));
  int one = 1;
  ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(uint16_t(port));
  TL_CHECK(::bind(s.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "cannot listen on port ",
           port, ": ", std::strerror(errno),
           " (another job on this node? set MASTER_PORT to a free port)");
  TL_CHECK(::listen(s.fd(), backlog) == 0, "listen on port ", port, ": ", std::strerror(errno));
  return s;
}

int bound_port(const Socket& s) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  TL_CHECK(::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&a), &len) == 0,
           "getsockname: ", std::strerror(errno));
  return ntohs(a.sin_port);
}

Socket tcp_accept(const Socket& listener, Deadline d) {
  if (!wait_fd(listener.fd(), POLLIN, d)) return Socket();
  Socket c(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC));
  TL_CHECK(c.valid(), "accept failed: ", std::strerror(errno));
  int one = 1;
  ::setsockopt(c.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return c;
}

Socket tcp_connect(const std::string& host, int port, Deadline d) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  TL_CHECK(rc == 0 && res, "cannot resolve '", host, "': ", ::gai_strerror(rc));
  sockaddr_in addr;
  std::memcpy(&addr, res->ai_addr, sizeof addr);
  ::freeaddrinfo(res);
  while (seconds_left(d) > 0) {
    Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    TL_CHECK(s.valid(), "cannot create a socket: ", std::strerror(errno));
    if (::connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      int one = 1;
      ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return s;
    }
    // Not listening yet (rank 0 starts later) or not reachable yet: try again shortly.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Socket();
}

bool send_all(const Socket& s, const void* data, size_t n, Deadline d, const std::string& peer) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (!wait_fd(s.fd(), POLLOUT, d)) return false;
    ssize_t k = ::send(s.fd(), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    TL_CHECK(k > 0, "connection to ", peer, " broke: ", std::strerror(errno));
    p += k;
    n -= size_t(k);
  }
  return true;
}

bool recv_all(const Socket& s, void* data, size_t n, Deadline d, const std::string& peer) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    if (!wait_fd(s.fd(), POLLIN, d)) return false;
    ssize_t k = ::recv(s.fd(), p, n, MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    TL_CHECK(k != 0, "connection to ", peer, " closed");
    TL_CHECK(k > 0, "connection to ", peer, " broke: ", std::strerror(errno));
    p += k;
    n -= size_t(k);
  }
  return true;
}

bool send_string(const Socket& s, const std::string& v, Deadline d, const std::string& peer) {
  const uint32_t len = uint32_t(v.size());
  return send_all(s, &len, 4, d, peer) && send_all(s, v.data(), v.size(), d, peer);
}

bool recv_string(const Socket& s, std::string& v, Deadline d, const std::string& peer) {
  uint32_t len = 0;
  if (!recv_all(s, &len, 4, d, peer)) return false;
  TL_CHECK(len <= (1u << 20), "garbled message from ", peer, " (", len, "-byte string)");
  v.resize(len);
  return recv_all(s, v.data(), len, d, peer);
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

}  // namespace tl
