// One leaf column of any nesting, read entry by entry across row groups with its
// repetition and definition levels (Dremel encoding) and typed values: BYTE_ARRAY, INT32,
// INT64 and BOOLEAN. The same page machinery and bounds as StringColumnReader: one page in
// memory (plus the chunk's dictionary), every size a page claims checked before memory is
// taken for it. RowReader (rows.h) assembles rows from these entries.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/parquet/metadata.h"
#include "data/parquet/reader.h"

namespace tl::parquet {

struct LeafEntry {
  int rep = 0, def = 0;
  bool present = false;  // def == the column's max definition level: a value
  int64_t i = 0;         // INT32 / INT64 / BOOLEAN (0 or 1)
  std::string s;         // BYTE_ARRAY
};

class LeafReader {
 public:
  // path: the leaf's path in the schema (path_in_schema); levels from the schema walk.
  LeafReader(const ParquetFile& file, std::vector<std::string> path, PhysicalType type, int max_def,
             int max_rep);
  bool next(LeafEntry& e);  // false after the last entry of the last row group
  const std::string& name() const { return name_; }

 private:
  struct Value {
    uint8_t source;   // 0 page bytes, 1 dictionary, 2 DELTA_BYTE_ARRAY (prefix + suffix)
    uint32_t len;     // bytes at offset (source 2: the suffix)
    uint32_t prefix;  // source 2: bytes kept from the value before
    uint64_t offset;  // byte offset; for integers the value itself (in `num`)
    int64_t num;
  };
  bool load_page();
  bool open_next_chunk();
  void decode_values(const uint8_t* p, const uint8_t* end, Encoding enc, size_t present);
  void decode_dictionary(const std::string& page, int32_t count);
  [[noreturn]] void corrupt(const std::string& what) const;

  const ParquetFile& pf_;
  std::vector<std::string> path_;
  std::string name_;  // dotted path, for messages
  PhysicalType type_;
  int max_def_, max_rep_;
  size_t row_group_ = 0;
  const ColumnChunk* chunk_ = nullptr;
  int64_t pos_ = 0, chunk_end_ = 0, values_left_ = 0;
  bool first_page_ = false;  // no data page of the current chunk read yet
  std::string page_, dict_, own_, raw_;
  std::vector<Value> dict_entries_;
  std::vector<uint32_t> reps_, defs_;  // this page's levels, one per entry
  std::vector<Value> values_;          // this page's present values, in order
  size_t next_entry_ = 0, next_value_ = 0;
};

}  // namespace tl::parquet
