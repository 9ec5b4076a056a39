// Native checkpoints: one file, written atomically.
//   "TLCKPT\0\0" (8 bytes) | u32 version | u32 header crc32 | u64 header bytes | header JSON |
//   zero padding to a 64-byte boundary | sections (each 64-byte aligned)
// The header holds "meta" (free JSON: model config, train config, step, loader and RNG
// state, ...) and "sections": [{name, dtype, numel, offset, bytes, crc32, block_bytes,
// block_crc32}], offsets relative to the start of the file; block_crc32 lists the CRC-32
// of every block_bytes (1 MiB) block, so that a partial read verifies what it reads (files
// written before 2026-12-05 lack them: a partial read of those reads whole sections). The header's
// CRC-32 is verified whenever it is read, and each section's CRC-32 whenever that section is read:
// a load without the optimizer state (eval, export, generate, --init-from) neither reads nor
// verifies adam_m/adam_v (verifying them would triple its I/O: 8.8 GB more for a 1.1B model), so
// damage there is found by the next load that uses it (a resume). Version 1 files (no header CRC)
// are refused.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/json_reader.h"

namespace tl {

constexpr uint32_t kCheckpointVersion = 2;

struct CheckpointData {
  json meta = json::object();
  std::vector<float> params;  // flat, ParamLayout order (model/param_layout.h)
  std::vector<float> adam_m;  // empty in a model-only checkpoint
  std::vector<float> adam_v;
};

// Atomic (core/fs.h). before_commit, if given, runs once everything is written to the
// temporary file and before it is synced and renamed (crash tests stretch that window).
void save_checkpoint(const std::string& path, const CheckpointData& data,
                     const std::function<void()>& before_commit = {});
// Throws naming the file on a bad magic, version, truncation or CRC mismatch (of the
// header and of the sections read: adam_m/adam_v only with_optimizer).
CheckpointData load_checkpoint(const std::string& path, bool with_optimizer = true);
json read_checkpoint_meta(const std::string& path);  // header only (CRC-checked), cheap
// The header's meta and section sizes, read and checked as load_checkpoint does but
// without reading a section: lets a caller check sizes before it allocates anything.
struct CheckpointInfo {
  json meta;
  uint64_t params = 0;         // values in the params section
  bool has_optimizer = false;  // adam_m and adam_v, each the size of params
  uint64_t header_bytes = 0;   // what reading this cost
};
CheckpointInfo read_checkpoint_info(const std::string& path);

// Values [src, src + len) of a section, to [dst, dst + len) of the caller's vector.
struct ValueRange {
  uint64_t src = 0, dst = 0, len = 0;
};
// Reads the same ranges of params, adam_m and adam_v into out.params/adam_m/adam_v (sized
// by the caller) and sets out.meta: only the blocks that hold the ranges are read, each
// checked against its CRC-32 (a file without block CRCs: the whole sections, checked
// against theirs). Throws naming the file on damage (out then holds partial data). Returns
// the bytes read, header included: what a resuming rank pays (sharded.h).
uint64_t read_checkpoint_ranges(const std::string& path, std::vector<ValueRange> ranges,
                                CheckpointData& out);

}  // namespace tl
