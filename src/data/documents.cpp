#include "data/documents.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_reader.h"
#include "data/text_reader.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

InputFile make_input(const std::string& path) {
  bool jsonl = path.ends_with(".jsonl") || path.ends_with(".jsonl.zst");
  return {path, jsonl ? InputFormat::Jsonl : InputFormat::Text, file_size(path)};
}

}  // namespace

std::vector<InputFile> expand_inputs(const std::vector<std::string>& paths,
                                     const std::vector<std::string>& folder_suffixes) {
  const bool take_all =
      std::find(folder_suffixes.begin(), folder_suffixes.end(), "*") != folder_suffixes.end();
  std::vector<InputFile> out;
  for (const auto& p : paths) {
    if (file_exists(p)) {
      out.push_back(make_input(p));
      continue;
    }
    TL_CHECK(is_directory(p), "input '", p, "' does not exist");
    std::vector<std::string> found;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_symlink() || !it->is_regular_file()) continue;
      std::string name = it->path().filename().string();
      if (take_all || std::any_of(folder_suffixes.begin(), folder_suffixes.end(),
                                  [&](const std::string& s) { return name.ends_with(s); }))
        found.push_back(it->path().string());
    }
    TL_CHECK(!ec, "cannot list folder '", p, "': ", ec.message());
    std::sort(found.begin(), found.end());
    for (const auto& f : found) out.push_back(make_input(f));
  }
  return out;
}

// ---- RecordReader ----

RecordReader::RecordReader(const std::vector<InputFile>& files, std::optional<std::string> separator)
    : files_(files), separator_(std::move(separator)) {}

RecordReader::~RecordReader() = default;

bool RecordReader::next_batch(std::vector<RawRecord>& out, size_t max_bytes, size_t max_records) {
  size_t bytes = 0, n = 0;
  RawRecord r;
  while (bytes < max_bytes && n < max_records && next_record(r)) {
    bytes += r.data.size();
    ++n;
    out.push_back(std::move(r));
  }
  return n > 0;
}

bool RecordReader::next_record(RawRecord& r) {
  for (;;) {
    if (!reader_) {
      if (file_ == files_.size()) return false;
      reader_ = std::make_unique<TextReader>(files_[file_].path);
      line_ = 0;
    }
    r.file = uint32_t(file_);
    r.line = line_ + 1;
    r.data.clear();
    const bool jsonl = files_[file_].format == InputFormat::Jsonl;
    if (!jsonl && !separator_) {  // the whole file is one document
      r.data = reader_->read_all();
      reader_.reset();
      ++file_;
      return true;
    }
    bool any = false;  // a record has started (a line was read since the last one)
    while (reader_->read_line(buf_)) {
      ++line_;
      if (jsonl) {
        r.data.swap(buf_);
        return true;
      }
      size_t len = buf_.size() - (!buf_.empty() && buf_.back() == '\r');
      if (buf_.compare(0, len, *separator_) == 0 && len == separator_->size()) return true;
      if (any) r.data += '\n';
      r.data += buf_;
      any = true;
    }
    // End of file: a last document without a closing separator still counts.
    reader_.reset();
    ++file_;
    if (any) return true;
  }
}

// ---- record → text ----

const char* skip_name(Skip s) {
  switch (s) {
    case Skip::None: return "none";
    case Skip::Empty: return "empty";
    case Skip::Binary: return "binary";
    case Skip::BlankLine: return "blank_line";
    case Skip::MalformedJson: return "malformed_json";
    case Skip::MissingField: return "missing_field";
    case Skip::NotString: return "field_not_string";
    case Skip::Count: break;
  }
  return "?";
}

bool skip_is_malformed(Skip s) {
  return s == Skip::MalformedJson || s == Skip::MissingField || s == Skip::NotString;
}

Skip extract_text(RawRecord& r, InputFormat format, const std::string& field) {
  if (format == InputFormat::Jsonl) {
    if (r.data.find_first_not_of(" \t\r") == std::string::npos) return Skip::BlankLine;
    json j = json::parse(r.data, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Skip::MalformedJson;
    if (!j.is_object()) return Skip::MalformedJson;
    auto it = j.find(field);
    if (it == j.end()) return Skip::MissingField;
    if (!it->is_string()) return Skip::NotString;
    r.data = it->get_ref<const std::string&>();
  }
  if (r.data.empty()) return Skip::Empty;
  if (std::memchr(r.data.data(), '\0', r.data.size())) return Skip::Binary;
  return Skip::None;
}

}  // namespace tl
