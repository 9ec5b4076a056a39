#include "data/documents.h"

#include <fcntl.h>
#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_reader.h"
#include "data/parquet/reader.h"
#include "data/text_reader.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

InputFile make_input(const std::string& path) {
  InputFormat f = path.ends_with(".jsonl") || path.ends_with(".jsonl.zst") ? InputFormat::Jsonl
                  : path.ends_with(".parquet")                             ? InputFormat::Parquet
                                                                           : InputFormat::Text;
  return {path, f, file_size(path)};
}

bool is_glob(const std::string& p) { return p.find_first_of("*?[") != std::string::npos; }

std::vector<std::string> glob_paths(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
  std::vector<std::string> out(g.gl_pathv, g.gl_pathv + g.gl_pathc);  // sorted by glob()
  globfree(&g);
  TL_CHECK(rc == 0 || rc == GLOB_NOMATCH, "input pattern '", pattern,
           "': cannot be read (glob error ", rc, ")");
  TL_CHECK(!out.empty(), "input pattern '", pattern, "' matches nothing");
  return out;
}

void add_path(const std::string& p, const std::vector<std::string>& suffixes,
              std::vector<InputFile>& out) {
  if (file_exists(p)) {
    out.push_back(make_input(p));
    return;
  }
  TL_CHECK(is_directory(p), "input '", p, "' does not exist");
  const bool take_all = std::find(suffixes.begin(), suffixes.end(), "*") != suffixes.end();
  std::vector<std::string> found;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_symlink() || !it->is_regular_file()) continue;
    std::string name = it->path().filename().string();
    if (take_all || std::any_of(suffixes.begin(), suffixes.end(),
                                [&](const std::string& s) { return name.ends_with(s); }))
      found.push_back(it->path().string());
  }
  TL_CHECK(!ec, "cannot list folder '", p, "': ", ec.message());
  std::sort(found.begin(), found.end());
  for (const auto& f : found) out.push_back(make_input(f));
}

}  // namespace

const char* format_name(InputFormat f) {
  return f == InputFormat::Jsonl ? "jsonl" : f == InputFormat::Parquet ? "parquet" : "text";
}

std::vector<InputFile> expand_inputs(const std::vector<std::string>& paths,
                                     const std::vector<std::string>& folder_suffixes) {
  std::vector<InputFile> out;
  for (const auto& p : paths) {
    if (is_glob(p) && !fs::exists(p)) {
      for (const auto& m : glob_paths(p)) add_path(m, folder_suffixes, out);
    } else {
      add_path(p, folder_suffixes, out);
    }
  }
  return out;
}

std::string quick_file_identity(const std::string& path) {
  constexpr size_t kPart = 64 << 10;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TL_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  const off_t size = ::lseek(fd, 0, SEEK_END);
  Sha256 h;
  const std::string head = std::to_string(int64_t(size)) + "\n";
  h.update(head.data(), head.size());
  std::string buf(kPart, '\0');
  for (off_t at : {off_t(0), std::max<off_t>(0, size - off_t(kPart))}) {
    const size_t want = size_t(std::min<off_t>(off_t(kPart), size));
    ssize_t n = ::pread(fd, buf.data(), want, at);
    if (n != ssize_t(want)) {
      ::close(fd);
      fail("cannot read '", path, "' to identify it");
    }
    h.update(buf.data(), want);
  }
  ::close(fd);
  return h.hex_digest();
}

// ---- RecordReader ----

RecordReader::RecordReader(const std::vector<InputFile>& files,
                           std::optional<std::string> separator, std::string parquet_column)
    : files_(files),
      separator_(std::move(separator)),
      column_(std::move(parquet_column)),
      sha_(files.size()) {}

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

void RecordReader::close_file() {
  if (reader_) sha_[file_] = reader_->sha256();
  reader_.reset();
  parquet_.reset();
  done_bytes_ += files_[file_].bytes;
  disk_bytes_.store(done_bytes_, std::memory_order_relaxed);
  ++file_;
}

bool RecordReader::next_record(RawRecord& r) {
  for (;;) {
    if (file_ == files_.size()) return false;
    const InputFile& in = files_[file_];
    if (in.format == InputFormat::Parquet) {
      if (!parquet_) {
        sha_[file_] = sha256_file(in.path);
        parquet_ = std::make_unique<parquet::StringColumnReader>(in.path, column_);
      }
      r.file = uint32_t(file_);
      r.line = uint64_t(parquet_->rows_read()) + 1;
      if (parquet_->next(r.data, r.null)) {
        const int64_t rows = std::max<int64_t>(1, parquet_->num_rows());
        disk_bytes_.store(done_bytes_ + in.bytes * uint64_t(parquet_->rows_read()) / uint64_t(rows),
                          std::memory_order_relaxed);
        return true;
      }
      close_file();
      continue;
    }
    if (!reader_) {
      reader_ = std::make_unique<TextReader>(in.path);
      line_ = 0;
    }
    r.file = uint32_t(file_);
    r.line = line_ + 1;
    r.null = false;
    r.data.clear();
    const bool jsonl = in.format == InputFormat::Jsonl;
    if (!jsonl && !separator_) {  // the whole file is one document
      r.data = reader_->read_all();
      close_file();
      return true;
    }
    bool any = false;  // a record has started (a line was read since the last one)
    while (reader_->read_line(buf_)) {
      ++line_;
      disk_bytes_.store(done_bytes_ + reader_->disk_bytes(), std::memory_order_relaxed);
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
    close_file();
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
    case Skip::Null: return "null";
    case Skip::Excluded: return "excluded_set";
    case Skip::Count: break;
  }
  return "?";
}

bool skip_is_malformed(Skip s) {
  return s == Skip::MalformedJson || s == Skip::MissingField || s == Skip::NotString;
}

Skip extract_text(RawRecord& r, InputFormat format, const TextSelection& sel, std::string* set) {
  if (format == InputFormat::Parquet && r.null) return Skip::Null;
  if (format == InputFormat::Jsonl) {
    if (r.data.find_first_not_of(" \t\r") == std::string::npos) return Skip::BlankLine;
    json j = json::parse(r.data, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Skip::MalformedJson;
    if (!sel.set_path.empty()) {
      const json* v = &j;
      for (const auto& key : sel.set_path) {
        auto it = v->is_object() ? v->find(key) : v->end();
        v = it != v->end() ? &*it : nullptr;
        if (!v) break;
      }
      if (v && v->is_string()) {
        const std::string& name = v->get_ref<const std::string&>();
        if (set) *set = name;
        if (std::find(sel.exclude_sets.begin(), sel.exclude_sets.end(), name) !=
            sel.exclude_sets.end())
          return Skip::Excluded;
      }
    }
    auto it = j.find(sel.field);
    if (it == j.end()) return Skip::MissingField;
    if (!it->is_string()) return Skip::NotString;
    r.data = std::move(it->get_ref<std::string&>());
  }
  if (r.data.empty()) return Skip::Empty;
  if (std::memchr(r.data.data(), '\0', r.data.size())) return Skip::Binary;
  return Skip::None;
}

}  // namespace tl
