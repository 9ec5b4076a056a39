// The inputs of `prepare`: which files to read, the records (candidate documents) in them,
// and how a record becomes document text or a counted skip.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tl {

class TextReader;

enum class InputFormat { Text, Jsonl };

struct InputFile {
  std::string path;
  InputFormat format;
  uint64_t bytes;  // on disk
};

// Named files are taken as they are: "*.jsonl" and "*.jsonl.zst" are JSON lines, anything
// else is text. Folders are walked recursively in sorted path order, taking the regular
// files whose names end in one of folder_suffixes ("*" takes every file); links inside
// folders are not followed. Throws naming a missing path.
std::vector<InputFile> expand_inputs(const std::vector<std::string>& paths,
                                     const std::vector<std::string>& folder_suffixes);

// A candidate document before parsing: a text document, or one line of a JSON-lines file.
struct RawRecord {
  std::string data;
  uint32_t file = 0;  // index into the input files
  uint64_t line = 0;  // 1-based line where the record starts
};

// Reads records in input order. Text files are one record each, or, with a separator,
// split at lines equal to it (the separator lines dropped, the others joined with '\n';
// a '\r' before '\n' is ignored when comparing); JSON-lines files give one record a line.
class RecordReader {
 public:
  RecordReader(const std::vector<InputFile>& files, std::optional<std::string> separator);
  ~RecordReader();
  // Appends records until max_bytes of data or max_records are held; false at the end.
  bool next_batch(std::vector<RawRecord>& out, size_t max_bytes, size_t max_records);

 private:
  bool next_record(RawRecord& r);
  const std::vector<InputFile>& files_;
  std::optional<std::string> separator_;
  size_t file_ = 0;
  std::unique_ptr<TextReader> reader_;
  uint64_t line_ = 0;
  std::string buf_;
};

// Why a record gives no document (None: it does).
enum class Skip { None, Empty, Binary, BlankLine, MalformedJson, MissingField, NotString, Count };
const char* skip_name(Skip s);  // "empty", "binary", ... (manifest keys)
// Skips that --strict turns into errors: the input is not what it claims to be.
bool skip_is_malformed(Skip s);

// Replaces r.data with the document text (for JSON lines, the string value of `field`).
// Text containing a NUL byte is taken as binary and skipped.
Skip extract_text(RawRecord& r, InputFormat format, const std::string& field);

}  // namespace tl
