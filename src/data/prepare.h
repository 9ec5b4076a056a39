// `prepare`: raw text → tokenized packed shards plus a manifest.
//
// Layout of the output folder DIR for a source NAME:
//   DIR/train/NAME_00000.bin ...   training shards (lit-gpt PackedDataset format)
//   DIR/val/NAME_00000.bin ...     held-out shards (only when val_fraction > 0)
//   DIR/manifest.json              {"format", "version", "sources": {NAME: entry, ...}}
// Each document becomes its ids + EOS (no BOS) and documents are concatenated in input
// order, so the shards are byte-identical whatever the thread count.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "data/packed.h"

namespace tl {

constexpr const char* kPrepareTool = "tinyllama 0.1";
constexpr uint64_t kValSplitSeed = 0x7661'6c5f'7370'6c74ull;  // fixed: the split is reproducible

struct PrepareOptions {
  std::string tokenizer;             // SentencePiece .model
  std::string source;                // shard name prefix: letters, digits, '_', '-', '.'
  std::string out_dir;
  std::vector<std::string> inputs;   // files and folders
  std::vector<std::string> folder_suffixes = {".txt", ".jsonl", ".txt.zst", ".jsonl.zst"};
  std::optional<std::string> separator;  // text files: document separator line; none = one per file
  std::string text_field = "text";   // JSON lines: the field holding the text
  bool strict = false;               // malformed JSON lines are errors, not skips
  uint64_t chunk_tokens = kDefaultChunkTokens;
  int threads = 0;                   // 0 = all cores
  double val_fraction = 0;           // share of documents held out, in [0, 1)
  bool overwrite = false;            // replace existing shards of this source
  bool progress = true;              // progress lines and a summary on stderr
};

// Whether document `index` (0-based, counting every record of the inputs) is held out.
bool is_val_document(uint64_t index, double val_fraction);

// Runs the preparation and returns this source's manifest entry. Throws (writing no
// manifest and removing the shards it wrote) on a missing input, a bad option, shards of
// the source already in DIR without overwrite, or a malformed record in strict mode.
json prepare_dataset(const PrepareOptions& opts);

}  // namespace tl
