// Where a run's checkpoints live, what they are named, and which ones it keeps.
//   RUN_DIR/checkpoints/step_00001234.tlck    complete checkpoints (renamed into place)
//   RUN_DIR/checkpoints/step_00001234/        a sharded run's checkpoint: complete once its
//                                             meta.json exists (written last, see
//                                             checkpoint/sharded.h); without it, a save
//                                             in progress or one a crash cut short
//   RUN_DIR/checkpoints/*.tmp.<pid>           a write in progress, or one a crash cut short
//                                             (also inside step folders)
//   RUN_DIR/checkpoints/*.tlck.damaged        failed verification on resume; kept for a human
//   RUN_DIR/checkpoints/step_*.damaged/       the same for a sharded folder
// Retention: the newest `keep` checkpoints, plus every one whose step is a multiple of
// `keep_every` (history for later evaluation); the rest are deleted after each save. Files
// and folders count alike (a run resumed on another number of GPUs holds both).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

struct CheckpointFile {
  int64_t step = 0;
  std::string path;
  bool sharded = false;  // a step folder of a sharded run (else a .tlck file)
};

std::string checkpoint_dir(const std::string& run_dir);
std::string checkpoint_path(const std::string& run_dir, int64_t step);          // the file
std::string sharded_checkpoint_path(const std::string& run_dir, int64_t step);  // the folder
// "step_%08d": a step's checkpoint name without the ".tlck" of a file.
std::string step_name(int64_t step);
// Complete checkpoints (by name and, for folders, meta.json; contents unchecked), oldest
// step first; at one step, the file before the folder.
std::vector<CheckpointFile> list_checkpoints(const std::string& run_dir);
// The newest of list_checkpoints (contents not verified: the trainer verifies on load and
// falls back); "" if none.
std::string find_latest_checkpoint(const std::string& run_dir);
// Step folders without meta.json: sharded saves that never finished. They are not
// checkpoints (resume skips them); a later save of that step writes over them.
std::vector<CheckpointFile> list_incomplete_checkpoints(const std::string& run_dir);
// The steps among `steps` that retention deletes.
std::vector<int64_t> steps_to_prune(std::vector<int64_t> steps, int keep, int64_t keep_every);
// Deletes what retention says; returns how many checkpoints (files or folders) went.
int prune_checkpoints(const std::string& run_dir, int keep, int64_t keep_every);
// Deletes leftovers of interrupted atomic writes ("*.tmp.<pid>") in the run folder, its
// checkpoint folder and the step folders there. Only safe while holding the run lock (no
// other writer).
int remove_stale_temp_files(const std::string& run_dir);
// Moves a checkpoint (file or step folder) that failed verification out of the way
// ("<path>.damaged"; a folder goes to "<path>.damaged.N" when that name is taken).
std::string quarantine_checkpoint(const std::string& path);

}  // namespace tl
