#include "train/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace tl {

RunLock::RunLock(const std::string& run_dir) {
  const std::string path = run_dir + "/.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  TL_CHECK(fd_ >= 0, "cannot open '", path, "': ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {};
    ssize_t n = ::pread(fd_, holder, sizeof holder - 1, 0);
    ::close(fd_);
    fd_ = -1;
    TL_CHECK(err != EWOULDBLOCK, "run folder '", run_dir, "' is in use by another trainer (pid ",
             n > 0 ? std::string(holder, size_t(n)) : std::string("?"), ")");
    fail("cannot lock '", path, "': ", std::strerror(err));
  }
  const std::string pid = std::to_string(::getpid());
  // The pid only serves other trainers' messages: failing to write it changes nothing.
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

}  // namespace tl
