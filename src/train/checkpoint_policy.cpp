#include "train/checkpoint_policy.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"

namespace tl {

namespace fs = std::filesystem;

namespace {
// "<name>.tmp.<pid>", as write_file_atomic names its temporary files.
bool is_temp_name(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at + 5 == name.size()) return false;
  return name.find_first_not_of("0123456789", at + 5) == std::string::npos;
}
}  // namespace

std::string checkpoint_dir(const std::string& run_dir) { return run_dir + "/checkpoints"; }

std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step_%08lld.tlck", static_cast<long long>(step));
  return checkpoint_dir(run_dir) + "/" + name;
}

std::vector<CheckpointFile> list_checkpoints(const std::string& run_dir) {
  const std::string dir = checkpoint_dir(run_dir);
  std::vector<CheckpointFile> out;
  if (!is_directory(dir)) return out;
  for (const std::string& path : list_files(dir, ".tlck")) {
    // Parse the step: names past 8 digits would sort wrongly as text.
    const std::string name = fs::path(path).filename().string();
    long long step = -1;
    int used = 0;
    if (std::sscanf(name.c_str(), "step_%lld.tlck%n", &step, &used) == 1 &&
        size_t(used) == name.size() && step >= 0)
      out.push_back({step, path});
  }
  std::sort(out.begin(), out.end(),
            [](const CheckpointFile& a, const CheckpointFile& b) { return a.step < b.step; });
  return out;
}

std::vector<int64_t> steps_to_prune(std::vector<int64_t> steps, int keep, int64_t keep_every) {
  std::sort(steps.begin(), steps.end());
  std::vector<int64_t> out;
  const size_t newest_kept = steps.size() > size_t(keep) ? steps.size() - size_t(keep) : 0;
  for (size_t i = 0; i < newest_kept; ++i)
    if (!(keep_every > 0 && steps[i] % keep_every == 0)) out.push_back(steps[i]);
  return out;
}

int prune_checkpoints(const std::string& run_dir, int keep, int64_t keep_every) {
  std::vector<int64_t> steps;
  for (const auto& c : list_checkpoints(run_dir)) steps.push_back(c.step);
  int removed = 0;
  for (int64_t s : steps_to_prune(steps, keep, keep_every)) {
    const std::string path = checkpoint_path(run_dir, s);
    if (std::remove(path.c_str()) == 0)
      ++removed;
    else
      log_warn("cannot delete old checkpoint '", path, "'");
  }
  return removed;
}

int remove_stale_temp_files(const std::string& run_dir) {
  int removed = 0;
  for (const std::string& dir : {run_dir, checkpoint_dir(run_dir)}) {
    if (!is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (!e.is_regular_file() || !is_temp_name(name)) continue;
      std::error_code ec;
      if (fs::remove(e.path(), ec)) {
        ++removed;
        log_info("removed '", e.path().string(), "', left by an interrupted write");
      }
    }
  }
  return removed;
}

std::string quarantine_checkpoint(const std::string& path) {
  const std::string to = path + ".damaged";
  std::error_code ec;
  fs::rename(path, to, ec);
  TL_CHECK(!ec, "cannot rename damaged checkpoint '", path, "': ", ec.message());
  return to;
}

}  // namespace tl
