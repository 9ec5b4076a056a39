// Training and validation data loaders over packed shards.
//
// Training: several named sources with weights; each source's shards are cut into
// non-overlapping blocks of seq_len + 1 tokens (within a shard, as TinyLlama reads them).
// Every choice (which source a sample comes from, the order of blocks within a source) is
// a pure function of (seed, counters), so the loader's state is a few integers and a
// resumed run sees exactly the blocks the uninterrupted run would, with no replay.
//
// Order: global sample i comes from the source picked by a uniform hash of (seed, i)
// through the normalized cumulative weights; the m-th sample that picks a source gets the
// block at position m of that source's endless block stream. A stream runs epoch after
// epoch; each epoch orders the shards by a seeded permutation, groups them into windows
// of shuffle_window shards, and permutes all blocks of a window together.
// Ranks: rank r of world w takes global samples r, r+w, r+2w, ..., so ranks get disjoint
// blocks. Every rank walks the source choices of all ranks' samples, so the state (the
// global sample counter and per-source block counters) is the same on every rank and
// does not depend on world or micro_batch: one copy resumes every rank, even on a
// different world size.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/json_reader.h"

namespace tl {

struct DataSourceSpec {
  std::string name;
  std::vector<std::string> paths;  // shard files and/or folders of *.bin shards
  double weight = 1.0;
};

struct TrainLoaderOptions {
  std::vector<DataSourceSpec> sources;
  int seq_len = 0;
  int micro_batch = 1;
  uint64_t seed = 0;
  int rank = 0;
  int world = 1;
  int shuffle_window = 8;  // shards whose blocks are shuffled together
  // Micro-batches read ahead by a background thread (0: read inside next()). The order
  // and the state do not depend on it.
  int prefetch = 4;
  // > 0: next() throws on a token id >= vocab_size (checked on every block it reads).
  uint64_t vocab_size = 0;
};

class TrainLoader {
 public:
  // Throws naming the source when it has no shards or no complete block, or naming the
  // shard whose header is bad (every header is read and checked here). Reads no tokens.
  explicit TrainLoader(const TrainLoaderOptions& opts);
  ~TrainLoader();  // stops the prefetch thread
  // Next micro-batch: tokens[B*T] and targets[B*T] (targets = tokens shifted by one).
  // An error met while reading ahead is thrown here, by the call that needs the batch.
  void next(int32_t* tokens, int32_t* targets);
  // Seconds spent inside next() so far, waiting for data and copying it: the trainer logs
  // its growth per step to show whether a step ever waits on the disk.
  double wait_seconds() const;
  // {"version", "samples", "consumed": [per source], "fingerprint": {seq_len, seed,
  // shuffle_window, sources: [{name, shards, blocks}]}}: the batches handed out so far
  // (not those read ahead); small, the same on every rank.
  json state() const;
  void restore(const json& state);  // throws naming the fingerprint field that differs
  int64_t blocks_in_source(size_t i) const;
  // Largest token id in the sources, computed on the first call: from the manifests'
  // max_token_id where they cover the shards; shards without one are scanned in full when
  // they hold at most 2^28 tokens, else a spread sample of them is (see
  // max_token_id_origin(); set vocab_size for a check of every block read).
  uint64_t max_token_id() const;
  std::string max_token_id_origin() const;  // "manifests", "manifests + scan", "... + sample ..."

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The non-overlapping (seq_len+1)-token blocks of a set of shards, in file-name and
// position order (for evaluation). Throws when they hold no complete block.
class SequentialBlocks {
 public:
  SequentialBlocks(const std::vector<std::string>& paths, int seq_len);
  ~SequentialBlocks();
  int64_t num_blocks() const;
  // tokens[T] and targets[T] of block i.
  void read(int64_t i, int32_t* tokens, int32_t* targets) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Expands folders (their *.bin files, sorted, not recursive) and checks that files exist;
// throws on a missing path, a folder without shards, or a file listed twice.
std::vector<std::string> expand_shard_paths(const std::vector<std::string>& paths);

}  // namespace tl
