// The inputs of `prepare`: which files to read, the records (candidate documents) in them,
// and how a record becomes document text or a counted skip.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/hash.h"

namespace tl {

class TextReader;
namespace parquet {
class StringColumnReader;
}

enum class InputFormat { Text, Jsonl, Parquet };
const char* format_name(InputFormat f);  // "text", "jsonl", "parquet"

struct InputFile {
  std::string path;
  InputFormat format;
  uint64_t bytes;  // on disk
};

// Paths are taken in the order given: a file as it is ("*.jsonl" and "*.jsonl.zst" are JSON
// lines, "*.parquet" parquet, anything else text); a folder walked recursively in sorted
// path order, taking the regular files whose names end in one of folder_suffixes ("*"
// takes every file; links inside folders are not followed); a path holding * ? or [ a
// glob pattern, its matches sorted and each taken as above. Throws naming a missing path
// or a pattern that matches nothing.
std::vector<InputFile> expand_inputs(const std::vector<std::string>& paths,
                                     const std::vector<std::string>& folder_suffixes);

// A quick identity of a file for re-run detection: SHA-256 of its size (decimal text),
// its first 64 KiB and its last 64 KiB. Cheap (128 KiB read) at 59,166 files, and
// independent of path and mtime, so a copy or a moved file is recognized.
std::string quick_file_identity(const std::string& path);

// A candidate document before parsing: a text document, one line of a JSON-lines file, or
// one row of a parquet column.
struct RawRecord {
  std::string data;
  uint32_t file = 0;  // index into the input files
  uint64_t line = 0;  // 1-based line (parquet: row) where the record starts
  bool null = false;  // parquet: the value is null
};

// Reads records in input order. Text files are one record each, or, with a separator,
// split at lines equal to it (the separator lines dropped, the others joined with '\n';
// a '\r' before '\n' is ignored when comparing); JSON-lines files give one record a line;
// parquet files one record a row of `parquet_column`. Every byte of a text or JSON-lines
// file passes through a SHA-256 (file_sha256 once the file is done); parquet files are
// hashed by a sequential read when opened.
class RecordReader {
 public:
  RecordReader(const std::vector<InputFile>& files, std::optional<std::string> separator,
               std::string parquet_column);
  ~RecordReader();
  // Appends records until max_bytes of data or max_records are held; false at the end.
  bool next_batch(std::vector<RawRecord>& out, size_t max_bytes, size_t max_records);
  // Input bytes on disk consumed so far (may be read from another thread).
  uint64_t disk_bytes() const { return disk_bytes_.load(std::memory_order_relaxed); }
  // SHA-256 of file i's bytes; "" until the file has been read to its end.
  const std::string& file_sha256(size_t i) const { return sha_[i]; }

 private:
  bool next_record(RawRecord& r);
  void close_file();
  const std::vector<InputFile>& files_;
  std::optional<std::string> separator_;
  std::string column_;
  size_t file_ = 0;
  std::unique_ptr<TextReader> reader_;
  std::unique_ptr<parquet::StringColumnReader> parquet_;
  uint64_t line_ = 0, done_bytes_ = 0;
  std::atomic<uint64_t> disk_bytes_{0};
  std::vector<std::string> sha_;
  std::string buf_;
};

// Why a record gives no document (None: it does).
enum class Skip {
  None,
  Empty,
  Binary,
  BlankLine,
  MalformedJson,
  MissingField,
  NotString,
  Null,
  Excluded,
  Count
};
const char* skip_name(Skip s);  // "empty", "binary", ... (manifest keys)
// Skips that --strict turns into errors: the input is not what it claims to be.
bool skip_is_malformed(Skip s);

struct TextSelection {
  std::string field = "text";  // JSON lines: the field holding the text
  std::vector<std::string>
      set_path;  // JSON lines: path of the set name, e.g. {meta, redpajama_set_name}
  std::vector<std::string> exclude_sets;  // records of these sets are skipped (Excluded)
};

// Replaces r.data with the document text (for JSON lines, the string value of `field`;
// with a set path, *set receives the record's set name when it has one).
// Text containing a NUL byte is taken as binary and skipped.
Skip extract_text(RawRecord& r, InputFormat format, const TextSelection& sel,
                  std::string* set = nullptr);

}  // namespace tl
