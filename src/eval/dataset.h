// Rows of an evaluation dataset as the Hugging Face hub publishes it: parquet, JSON Lines
// (.jsonl) or JSON (.json: an array of objects, one object, or JSON Lines), each row a JSON
// object with the dataset's own field names.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json_reader.h"

namespace tl::eval {

struct Row {
  json value;  // a JSON object
  std::string file;
  int64_t index = 0;          // 0-based row in its file
  int64_t line = 0;           // 1-based line for JSON Lines, else 0
  std::string where() const;  // "'FILE' row N (line L)"
};

// A file, a folder (its .parquet/.jsonl/.json files, recursively) or a glob. Files in name
// order. Throws naming the path when nothing matches or a file is of another kind.
std::vector<std::string> expand_dataset_path(const std::string& path);

// Every row of one file. `columns`: the top-level fields the task reads (parquet reads only
// these; a missing one is an error naming the file and field). Throws naming the file and
// row (and line) when the file is not what its extension says.
std::vector<Row> read_rows(const std::string& file, const std::vector<std::string>& columns);

}  // namespace tl::eval
