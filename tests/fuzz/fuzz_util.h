// Shared helpers of the libFuzzer targets (tests/fuzz/fuzz_<name>.cpp).
//
// What counts as a finding: a crash, a sanitizer report (ASAN, UBSan), a timeout, or an
// allocation over libFuzzer's -malloc_limit_mb / -rss_limit_mb. A parser that refuses the
// input by throwing tl::Error (or another std::exception) with a message has done its job.
// With TL_FUZZ_STRICT=1 an exception other than tl::Error is a finding too (an escaped
// nlohmann::json or std::filesystem error names neither the file nor the field).
#pragma once
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace tlfuzz {

// A folder of this process's own under $TMPDIR (else /tmp), removed at exit.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/tl_fuzz_XXXXXX";
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    static std::string keep = tmpl;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(keep, ec);
    });
    return tmpl;
  }();
  return dir;
}

inline std::string scratch(const std::string& name) { return scratch_dir() + "/" + name; }

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

inline void write_file(const std::string& path, std::string_view s) {
  write_file(path, reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

inline void other_exception(const std::exception& e) {
  static const bool strict = [] {
    const char* s = std::getenv("TL_FUZZ_STRICT");
    return s && *s && std::strcmp(s, "0") != 0;
  }();
  if (strict) {
    std::fprintf(stderr, "fuzz: an exception other than tl::Error escaped: %s\n", e.what());
    std::abort();
  }
}

// Runs f; a thrown error is the parser refusing the input, which is fine.
template <class F>
void run(F&& f) {
  try {
    f();
  } catch (const tl::Error&) {
  } catch (const std::exception& e) {
    other_exception(e);
  }
}

}  // namespace tlfuzz
