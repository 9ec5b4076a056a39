#include "train/stop_signal.h"

#include <atomic>
#include <csignal>

namespace tl {

namespace {

std::atomic<bool> g_stop{false};  // written by the signal handler only

void on_stop_signal(int sig) {
  if (g_stop.exchange(true)) {  // the second signal: the user means now
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
}

bool stop_requested() { return g_stop.load(); }

}  // namespace tl
