// A focused parquet reader for text corpora: one flat string (BYTE_ARRAY) column read row
// by row across row groups. Supports data pages v1 and v2, optional columns (nulls via
// definition levels), PLAIN, dictionary (PLAIN_DICTIONARY, RLE_DICTIONARY),
// DELTA_LENGTH_BYTE_ARRAY and DELTA_BYTE_ARRAY values, and none/snappy/gzip/zstd pages.
// Memory: one page plus the column chunk's dictionary, whatever the file size. A page
// header's sizes and counts are claims, checked before memory is taken for them: the
// compressed size against the column chunk, the uncompressed size against the chunk's
// total and 1 GiB (and, in the codecs, against what the data really decodes to), the value
// count against the page's bytes. DELTA_BYTE_ARRAY values are rebuilt one at a time as
// they are read, and a page may expand to max(64 MiB, 64 x its size).
#pragma once
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "data/parquet/metadata.h"

namespace tl::parquet {

class File;

class ParquetFile {
 public:
  explicit ParquetFile(const std::string& path);  // reads the footer; throws naming the file
  ~ParquetFile();
  const std::string& path() const;
  const FileMetaData& metadata() const { return meta_; }
  int64_t num_rows() const { return meta_.num_rows; }
  std::vector<std::string> column_names() const;  // top-level fields, in schema order
  // "" when `name` is a top-level, non-repeated BYTE_ARRAY column; else why it is not.
  std::string string_column_problem(const std::string& name) const;

 private:
  friend class StringColumnReader;
  friend class LeafReader;
  std::shared_ptr<File> file_;
  FileMetaData meta_;
};

class StringColumnReader {
 public:
  // Throws naming the file and column when the column cannot be read as strings.
  StringColumnReader(const std::string& path, const std::string& column);
  ~StringColumnReader();
  // The next row's value; false after the last row. A null sets is_null and clears value.
  bool next(std::string& value, bool& is_null);
  int64_t rows_read() const { return rows_read_; }
  int64_t num_rows() const { return pf_.num_rows(); }
  const ParquetFile& file() const { return pf_; }
  // What the pages read so far used: "v1", "v2", "dictionary_page" and value encodings.
  const std::set<std::string>& features() const { return features_; }

 private:
  struct Value {
    uint8_t source;  // 0 page, 1 dictionary, 2 DELTA_BYTE_ARRAY (prefix of own_ + page suffix)
    bool null;
    uint32_t len;     // bytes at offset (source 2: the suffix)
    uint32_t prefix;  // source 2: bytes kept from the value before
    uint64_t offset;
  };
  bool load_page();  // false after the last page of the last row group
  bool open_next_chunk();
  void decode_values(const uint8_t* p, const uint8_t* end, Encoding enc,
                     const std::vector<uint8_t>& defs, int32_t num_values);
  [[noreturn]] void corrupt(const std::string& what) const;

  ParquetFile pf_;
  std::string column_;
  bool optional_ = false;
  size_t row_group_ = 0;  // next row group to open
  const ColumnChunk* chunk_ = nullptr;
  int64_t pos_ = 0, chunk_end_ = 0, values_left_ = 0;
  // page_: decompressed values; raw_: compressed bytes; own_: the last DELTA_BYTE_ARRAY value
  std::string page_, dict_, own_, raw_;
  std::vector<std::pair<uint64_t, uint32_t>> dict_entries_;
  std::vector<Value> values_;
  size_t next_ = 0;
  int64_t rows_read_ = 0;
  std::set<std::string> features_;
};

}  // namespace tl::parquet
