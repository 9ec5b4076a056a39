#include "core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace tl {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TL_CHECK(in.good(), "cannot open '", path, "': ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  TL_CHECK(!in.bad(), "error reading '", path, "'");
  return ss.str();
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

bool is_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

uint64_t file_size(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  TL_CHECK(!ec, "cannot read the size of '", path, "': ", ec.message());
  return n;
}

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  fs::create_directories(path, ec);
  TL_CHECK(!ec, "cannot create folder '", path, "': ", ec.message());
}

void write_all(std::FILE* f, const void* data, size_t n, const std::string& path) {
  if (n == 0) return;
  size_t w = std::fwrite(data, 1, n, f);
  TL_CHECK(w == n, "cannot write '", path, "': ", std::strerror(errno));
}

bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string("/\0", 2)) == std::string::npos;
}

void sync_dir(const std::string& dir) {
  const std::string d = dir.empty() ? "." : dir;
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TL_CHECK(fd >= 0, "cannot open folder '", d, "' to sync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Without the folder's sync a rename may not survive a power loss: say so.
  TL_CHECK(rc == 0 || err == EINVAL, "cannot sync folder '", d, "': ", std::strerror(err));
}

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  TL_CHECK(f, "cannot create '", tmp, "': ", std::strerror(errno));
  try {
    write(f);
    TL_CHECK(std::fflush(f) == 0, "cannot write '", tmp, "': ", std::strerror(errno));
    TL_CHECK(::fsync(::fileno(f)) == 0, "cannot sync '", tmp, "': ", std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    fail("cannot close '", tmp, "': ", std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    fail("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err));
  }
  sync_dir(fs::path(path).parent_path().string());
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_file_atomic(path,
                    [&](std::FILE* f) { write_all(f, contents.data(), contents.size(), path); });
}

std::vector<std::string> list_files(const std::string& dir, const std::string& suffix) {
  TL_CHECK(is_directory(dir), "'", dir, "' is not a folder");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string name = e.path().filename().string();
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace tl
