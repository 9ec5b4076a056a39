// Rows of a parquet file as JSON objects, for the named top-level columns: scalars
// (BYTE_ARRAY as strings, INT32/INT64 as integers, BOOLEAN), lists of scalars (the
// standard 3-level LIST, the 2-level legacy form, or a bare repeated field), and structs of
// those (e.g. {"text": [...], "label": [...]}). Nulls become JSON null. One leaf column
// reader per leaf, all advanced a row at a time.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/json_reader.h"

namespace tl::parquet {

class ParquetFile;
class LeafReader;
struct LeafEntry;

class RowReader {
 public:
  // Throws naming the file and column when a column is missing (listing the file's
  // columns) or has a shape other than the above.
  RowReader(const std::string& path, const std::vector<std::string>& columns);
  ~RowReader();
  bool next(json& row);  // false after the last row
  int64_t num_rows() const;

 private:
  struct Node;  // a column's shape: scalar, list or struct, with its leaves
  std::unique_ptr<ParquetFile> file_;
  std::vector<std::unique_ptr<Node>> columns_;
  std::vector<std::unique_ptr<LeafReader>> leaves_;
  std::vector<std::unique_ptr<LeafEntry>> lookahead_;  // each leaf's next entry
  std::vector<bool> has_lookahead_;
  int64_t rows_ = 0;
};

}  // namespace tl::parquet
