#include "eval/dataset.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "data/parquet/rows.h"

namespace tl::eval {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool supported(const std::string& f) {
  return ends_with(f, ".parquet") || ends_with(f, ".jsonl") || ends_with(f, ".json");
}

void check_object(const json& v, const std::string& file, int64_t index, int64_t line) {
  if (v.is_object()) return;
  Row r{json(), file, index, line};
  fail(r.where(), ": not a JSON object (", v.type_name(), ")");
}

std::vector<Row> read_json_lines(const std::string& file, const std::string& text) {
  std::vector<Row> rows;
  int64_t line_no = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json v;
    try {
      v = json::parse(line);
    } catch (const std::exception& e) {
      fail("'", file, "' line ", line_no, ": not JSON: ", e.what());
    }
    check_object(v, file, int64_t(rows.size()), line_no);
    rows.push_back({std::move(v), file, int64_t(rows.size()), line_no});
  }
  return rows;
}

}  // namespace

std::string Row::where() const {
  std::string s = cat("'", file, "' row ", index);
  if (line > 0) s += cat(" (line ", line, ")");
  return s;
}

std::vector<std::string> expand_dataset_path(const std::string& path) {
  std::vector<std::string> files;
  if (is_directory(path)) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(path))
      if (e.is_regular_file() && supported(e.path().string())) files.push_back(e.path().string());
    TL_CHECK(!files.empty(), "'", path, "' holds no .parquet, .jsonl or .json file");
  } else if (path.find_first_of("*?[") != std::string::npos && !file_exists(path)) {
    glob_t g{};
    const int rc = ::glob(path.c_str(), 0, nullptr, &g);
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) files.push_back(g.gl_pathv[i]);
    globfree(&g);
    TL_CHECK(!files.empty(), "the pattern '", path, "' matches no file");
    for (const auto& f : files)
      TL_CHECK(supported(f) && !is_directory(f), "'", f, "' (matched by '", path,
               "') is not a .parquet, .jsonl or .json file");
  } else {
    TL_CHECK(file_exists(path), "no file or folder '", path, "'");
    TL_CHECK(supported(path), "'", path, "' is not a .parquet, .jsonl or .json file");
    files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<Row> read_rows(const std::string& file, const std::vector<std::string>& columns) {
  if (ends_with(file, ".parquet")) {
    std::vector<Row> rows;
    parquet::RowReader reader(file, columns);
    json v;
    while (reader.next(v)) {
      const int64_t i = int64_t(rows.size());
      rows.push_back({std::move(v), file, i, 0});
    }
    return rows;
  }
  const std::string text = read_file(file);
  if (ends_with(file, ".jsonl")) return read_json_lines(file, text);
  // .json: one document (an array of objects or one object), else JSON Lines.
  json doc;
  bool whole = true;
  try {
    doc = json::parse(text);
  } catch (const std::exception&) {
    whole = false;
  }
  if (!whole) return read_json_lines(file, text);
  std::vector<Row> rows;
  if (doc.is_array()) {
    for (auto& v : doc) {
      check_object(v, file, int64_t(rows.size()), 0);
      rows.push_back({std::move(v), file, int64_t(rows.size()), 0});
    }
    return rows;
  }
  check_object(doc, file, 0, 0);
  rows.push_back({std::move(doc), file, 0, 0});
  return rows;
}

}  // namespace tl::eval
