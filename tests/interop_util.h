// Real consumers of our files from npm (tests/interop/package.json): installed once per build
// folder by the first test that needs them, under a lock so parallel CTest processes share
// one install. Tests skip, saying why, only where Node.js or npm is absent.
#pragma once
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "ckpt_test_util.h"

namespace interop {

inline bool have_node() {
  return std::system("command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1") == 0;
}

// The folder holding node_modules and the scripts of tests/interop, installing the packages
// when missing or when package.json changed; "" with *error set when npm failed.
inline std::string node_dir(std::string* error) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(TL_BINARY).parent_path() / "interop-node";
  const fs::path src = fs::path(TL_SOURCE_DIR) / "tests" / "interop";
  fs::create_directories(dir);
  const int lock = ::open((dir / ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  ::flock(lock, LOCK_EX);
  const std::string want = ckpt_test::read_bytes((src / "package.json").string()) +
                           ckpt_test::read_bytes((src / "package-lock.json").string());
  const std::string stamp = (dir / ".installed").string();
  std::string result = dir.string();
  if (!fs::exists(dir / "node_modules") || ckpt_test::read_bytes(stamp) != want) {
    for (const char* f : {"package.json", "package-lock.json"})
      fs::copy_file(src / f, dir / f, fs::copy_options::overwrite_existing);
    // --omit=optional: node-llama-cpp lists prebuilt binaries for every platform (CUDA and
    // Vulkan builds among them, hundreds of MB); package.json names the linux-x64 CPU one.
    const auto r =
        ckpt_test::run_cmd("cd '" + dir.string() +
                           "' && npm ci --omit=optional --no-audit --no-fund --loglevel=error");
    if (r.rc != 0) {
      *error = "npm ci in " + dir.string() + " failed:\n" + r.output;
      result = "";
    } else {
      ckpt_test::write_bytes(stamp, want);
    }
  }
  // The scripts run from beside node_modules (Node resolves packages from a script's folder).
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().extension() == ".mjs")
      fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  ::flock(lock, LOCK_UN);
  ::close(lock);
  return result;
}

}  // namespace interop
