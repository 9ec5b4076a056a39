// tests/crash_backtrace.cpp: a test binary that dies of a fatal signal says where (its stack on
// stderr), then dies of that signal. Under AddressSanitizer its own SIGSEGV handler stays and
// reports instead (and exits with an error rather than the signal).
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>

#include "sanitizer.h"

TEST(CrashBacktrace, AFatalSignalPrintsTheStackThenKillsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
#ifdef TL_TEST_UNDER_ASAN
  EXPECT_DEATH(raise(SIGSEGV), "AddressSanitizer");
#else
  EXPECT_EXIT(raise(SIGSEGV), testing::KilledBySignal(SIGSEGV), "fatal signal; the stack");
#endif
  EXPECT_EXIT(std::abort(), testing::KilledBySignal(SIGABRT), "fatal signal; the stack");
}
