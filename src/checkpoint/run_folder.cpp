#include "checkpoint/run_folder.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "checkpoint/sharded.h"
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

// Step folders ("step_<digits>", nothing after), complete or not, in no particular order.
std::vector<CheckpointFile> step_folders(const std::string& run_dir) {
  const std::string dir = checkpoint_dir(run_dir);
  std::vector<CheckpointFile> out;
  std::error_code ec;
  if (!is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::error_code ec2;
    if (!e.is_directory(ec2)) continue;
    const std::string name = e.path().filename().string();
    long long step = -1;
    int used = 0;
    if (std::sscanf(name.c_str(), "step_%lld%n", &step, &used) == 1 &&
        size_t(used) == name.size() && step >= 0 &&
        name.find_first_not_of("0123456789", 5) == std::string::npos)
      out.push_back({step, dir + "/" + name, true});
  }
  return out;
}

void sort_by_step(std::vector<CheckpointFile>& v) {
  std::sort(v.begin(), v.end(), [](const CheckpointFile& a, const CheckpointFile& b) {
    return a.step != b.step ? a.step < b.step : a.sharded < b.sharded;
  });
}
}  // namespace

std::string checkpoint_dir(const std::string& run_dir) { return run_dir + "/checkpoints"; }

std::string step_name(int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return name;
}

std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  return checkpoint_dir(run_dir) + "/" + step_name(step) + ".tlck";
}

std::string sharded_checkpoint_path(const std::string& run_dir, int64_t step) {
  return checkpoint_dir(run_dir) + "/" + step_name(step);
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
  for (CheckpointFile& f : step_folders(run_dir))
    if (is_sharded_checkpoint(f.path)) out.push_back(std::move(f));
  sort_by_step(out);
  return out;
}

std::string find_latest_checkpoint(const std::string& run_dir) {
  std::vector<CheckpointFile> files = list_checkpoints(run_dir);
  return files.empty() ? "" : files.back().path;
}

std::vector<CheckpointFile> list_incomplete_checkpoints(const std::string& run_dir) {
  std::vector<CheckpointFile> out;
  for (CheckpointFile& f : step_folders(run_dir))
    if (!is_sharded_checkpoint(f.path)) out.push_back(std::move(f));
  sort_by_step(out);
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
  const std::vector<CheckpointFile> all = list_checkpoints(run_dir);  // oldest first
  std::vector<int64_t> steps;
  for (const auto& c : all) steps.push_back(c.step);
  // steps_to_prune names the oldest entries first; a step listed twice (a file and a
  // folder) is pruned twice, oldest entry first, as the list is ordered.
  std::vector<int64_t> doomed = steps_to_prune(steps, keep, keep_every);
  int removed = 0;
  size_t next = 0;
  for (const CheckpointFile& c : all) {
    if (next == doomed.size()) break;
    if (c.step != doomed[next]) continue;
    ++next;
    bool ok = true;
    if (c.sharded) {
      try {
        remove_sharded_checkpoint(c.path);
      } catch (const Error&) {
        ok = false;
      }
    } else {
      ok = std::remove(c.path.c_str()) == 0;
    }
    if (ok)
      ++removed;
    else
      log_warn("cannot delete old checkpoint '", c.path, "'");
  }
  return removed;
}

int remove_stale_temp_files(const std::string& run_dir) {
  int removed = 0;
  std::vector<std::string> dirs = {run_dir, checkpoint_dir(run_dir)};
  for (const CheckpointFile& f : step_folders(run_dir)) dirs.push_back(f.path);
  for (const std::string& dir : dirs) {
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
  std::string to = path + ".damaged";
  std::error_code ec;
  // A folder cannot replace one set aside before; a file replaces its namesake.
  for (int n = 1; is_directory(path) && fs::exists(to, ec); ++n) to = cat(path, ".damaged.", n);
  fs::rename(path, to, ec);
  TL_CHECK(!ec, "cannot rename damaged checkpoint '", path, "': ", ec.message());
  return to;
}

}  // namespace tl
