// Where a run's checkpoints live and which ones it keeps.
//   RUN_DIR/checkpoints/step_00001234.tlck    complete checkpoints (renamed into place)
//   RUN_DIR/checkpoints/*.tmp.<pid>           a write in progress, or one a crash cut short
//   RUN_DIR/checkpoints/*.tlck.damaged        failed verification on resume; kept for a human
// Retention: the newest `keep` checkpoints, plus every one whose step is a multiple of
// `keep_every` (history for later evaluation); the rest are deleted after each save.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

struct CheckpointFile {
  int64_t step = 0;
  std::string path;
};

std::string checkpoint_dir(const std::string& run_dir);
std::string checkpoint_path(const std::string& run_dir, int64_t step);
// Complete checkpoints (by name; contents unchecked), oldest step first.
std::vector<CheckpointFile> list_checkpoints(const std::string& run_dir);
// The steps among `steps` that retention deletes.
std::vector<int64_t> steps_to_prune(std::vector<int64_t> steps, int keep, int64_t keep_every);
// Deletes what retention says; returns how many files went.
int prune_checkpoints(const std::string& run_dir, int keep, int64_t keep_every);
// Deletes leftovers of interrupted atomic writes ("*.tmp.<pid>") in the run folder and its
// checkpoint folder. Only safe while holding the run lock (no other writer).
int remove_stale_temp_files(const std::string& run_dir);
// Moves a checkpoint that failed verification out of the way ("<path>.damaged").
std::string quarantine_checkpoint(const std::string& path);

}  // namespace tl
