// A test binary that crashes (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) prints its stack to
// stderr first: a crash on a GPU machine, which has no debugger, can then be located here with
// `addr2line -f -C -e BINARY +OFFSET` on the same build (frames read "binary(+0xOFFSET)").
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <initializer_list>

namespace {

void print_stack_and_die(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  static const char kHeader[] =
      "\n*** fatal signal; the stack (addr2line -f -C -e BINARY +OFFSET):\n";
  (void)!write(STDERR_FILENO, kHeader, sizeof kHeader - 1);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  raise(sig);  // SA_RESETHAND: the default action now (the exit status says which signal)
}

const bool crash_backtrace_installed = [] {
  void* warm[1];
  backtrace(warm, 1);  // loads the unwinder now, not inside the handler
  struct sigaction sa = {};
  sa.sa_handler = print_stack_and_die;
  sa.sa_flags = SA_RESETHAND;
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    // A handler already there (a sanitizer's, which reports more) stays.
    struct sigaction old = {};
    if (sigaction(sig, nullptr, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_DFL)
      sigaction(sig, &sa, nullptr);
  }
  return true;
}();

}  // namespace
