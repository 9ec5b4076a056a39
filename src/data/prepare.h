// `prepare`: raw text → tokenized packed shards plus a manifest.
//
// Layout of the output folder DIR for a source NAME:
//   DIR/train/NAME_00000.bin ...   training shards (lit-gpt PackedDataset format)
//   DIR/val/NAME_00000.bin ...     held-out shards (with a validation split)
//   DIR/manifest.json              {"format", "version", "sources": {NAME: entry, ...}}
// Each document becomes its ids + EOS (no BOS) and documents are concatenated in input
// order, so the shards are byte-identical whatever the thread count.
//
// Memory is bounded whatever the input size: about three batches of text (batch_bytes,
// default max(16 MB, 4 MB per thread)) and their tokens, plus one parquet page and
// dictionary or one zstd window.
//
// Re-runs: each input is identified by its size and quick_file_identity(); a run whose
// inputs are already in DIR's manifest under another source is refused (its documents
// would be trained on twice) unless allow_duplicates; a run that repeats a finished one
// (same source, inputs and settings) says so and does nothing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "data/packed.h"

namespace tl {

constexpr const char* kPrepareTool = "tinyllama 0.2";
constexpr uint64_t kValSplitSeed = 0x7661'6c5f'7370'6c74ull;  // fixed: the split is reproducible

struct PrepareOptions {
  std::string tokenizer;  // SentencePiece .model
  std::string source;     // shard name prefix: letters, digits, '_', '-', '.'
  std::string out_dir;
  std::vector<std::string> inputs;  // files, folders and glob patterns
  std::vector<std::string> folder_suffixes = {".txt", ".jsonl", ".txt.zst", ".jsonl.zst",
                                              ".parquet"};
  std::optional<std::string> separator;  // text files: document separator line; none = one per file
  std::string text_field = "text";       // JSON lines: the field holding the text
  std::string column = "content";        // parquet: the column holding the text
  std::string set_field = "meta.redpajama_set_name";  // JSON lines: dotted path of a record's set
  std::vector<std::string> exclude_sets;  // JSON lines: records of these sets are skipped
  bool strict = false;                    // malformed JSON lines are errors, not skips
  uint64_t chunk_tokens = kDefaultChunkTokens;
  int threads = 0;          // 0 = all cores
  double val_fraction = 0;  // share of documents held out, in [0, 1)
  // Files held out whole: "" none, a count N (N files picked by a fixed hash of their
  // position), or a glob pattern matched against the input paths ('*' crosses '/').
  std::string val_files;
  bool overwrite = false;         // replace existing shards of this source
  bool allow_duplicates = false;  // prepare inputs that another source already holds
  size_t batch_bytes = 0;         // text per parallel batch; 0 = automatic
  bool progress = true;           // progress and a summary on stderr
  double progress_seconds = 30;   // period of the plain progress lines (not a terminal)
};

// Whether document `index` (0-based, counting every record of the inputs) is held out.
bool is_val_document(uint64_t index, double val_fraction);
// Which of the inputs are held out whole by a val_files spec (see PrepareOptions).
std::vector<bool> val_file_mask(const std::vector<std::string>& paths, const std::string& spec);

// Runs the preparation and returns this source's manifest entry. Throws (writing no
// manifest and removing the shards it wrote) on a missing input, a bad option, a parquet
// input without the column, shards of the source already in DIR without overwrite,
// inputs prepared before under another source, or a malformed record in strict mode.
json prepare_dataset(const PrepareOptions& opts);

}  // namespace tl
