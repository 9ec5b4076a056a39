// The parts of parquet's footer metadata (parquet.thrift) that a reader of flat string
// columns needs, decoded from Thrift compact bytes. Field ids follow parquet.thrift.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tl::parquet {

enum class PhysicalType : int32_t {
  Boolean = 0,
  Int32,
  Int64,
  Int96,
  Float,
  Double,
  ByteArray,
  FixedLenByteArray
};
enum class Repetition : int32_t { Required = 0, Optional = 1, Repeated = 2 };
enum class Codec : int32_t {
  None = 0,
  Snappy = 1,
  Gzip = 2,
  Lzo = 3,
  Brotli = 4,
  Lz4 = 5,
  Zstd = 6,
  Lz4Raw = 7
};
enum class Encoding : int32_t {
  Plain = 0,
  PlainDictionary = 2,
  Rle = 3,
  BitPacked = 4,
  DeltaBinaryPacked = 5,
  DeltaLengthByteArray = 6,
  DeltaByteArray = 7,
  RleDictionary = 8,
  ByteStreamSplit = 9,
};
enum class PageType : int32_t { Data = 0, Index = 1, Dictionary = 2, DataV2 = 3 };

const char* codec_name(Codec c);
const char* encoding_name(Encoding e);
const char* type_name(PhysicalType t);

struct SchemaElement {
  std::optional<PhysicalType> type;  // absent for groups
  Repetition repetition = Repetition::Required;
  std::string name;
  int32_t num_children = 0;
};

struct ColumnChunk {
  std::string file_path;  // non-empty: the data lives in another file (unsupported)
  PhysicalType type = PhysicalType::Boolean;
  std::vector<std::string> path;  // path_in_schema
  Codec codec = Codec::None;
  int64_t num_values = 0;
  int64_t total_compressed_size = 0;
  int64_t total_uncompressed_size = -1;  // -1: absent
  int64_t data_page_offset = 0;
  std::optional<int64_t> dictionary_page_offset;
};

struct RowGroup {
  std::vector<ColumnChunk> columns;
  int64_t num_rows = 0;
};

struct FileMetaData {
  int32_t version = 0;
  std::vector<SchemaElement> schema;  // depth-first; schema[0] is the root
  int64_t num_rows = 0;
  std::vector<RowGroup> row_groups;
  std::string created_by;
};

struct DataPageHeader {  // v1 and v2 (v2-only fields zero for v1)
  int32_t num_values = 0;
  Encoding encoding = Encoding::Plain;
  Encoding def_level_encoding = Encoding::Rle;
  int32_t num_nulls = 0;
  int32_t def_levels_bytes = 0, rep_levels_bytes = 0;
  bool is_compressed = true;
};

struct PageHeader {
  PageType type = PageType::Data;
  int32_t uncompressed_size = 0, compressed_size = 0;
  DataPageHeader data;          // for Data and DataV2
  int32_t dict_num_values = 0;  // for Dictionary
  Encoding dict_encoding = Encoding::Plain;
};

// Both throw ThriftTruncated when the bytes end early and tl::Error on nonsense.
FileMetaData parse_file_metadata(const uint8_t* data, size_t size);
// Sets header_size to the bytes the header took.
PageHeader parse_page_header(const uint8_t* data, size_t size, size_t& header_size);

}  // namespace tl::parquet
