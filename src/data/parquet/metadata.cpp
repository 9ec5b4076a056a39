#include "data/parquet/metadata.h"

#include "core/error.h"
#include "data/parquet/thrift.h"

namespace tl::parquet {

namespace {

template <class F>
void read_list(ThriftReader& r, F&& each) {
  uint8_t et;
  const size_t n = r.read_list_header(et);
  for (size_t i = 0; i < n; ++i) each(et);
}

SchemaElement read_schema_element(ThriftReader& r) {
  SchemaElement e;
  r.read_struct([&](int16_t id, uint8_t t) {
    if (id == 1 && t == kI32)
      e.type = PhysicalType(r.read_i32());
    else if (id == 3 && t == kI32)
      e.repetition = Repetition(r.read_i32());
    else if (id == 4 && t == kBinary)
      e.name = r.read_string();
    else if (id == 5 && t == kI32)
      e.num_children = r.read_i32();
    else
      r.skip(t);
  });
  return e;
}

void read_column_meta(ThriftReader& r, ColumnChunk& c) {
  r.read_struct([&](int16_t id, uint8_t t) {
    if (id == 1 && t == kI32)
      c.type = PhysicalType(r.read_i32());
    else if (id == 3 && t == kList)
      read_list(r, [&](uint8_t et) {
        if (et == kBinary)
          c.path.push_back(r.read_string());
        else
          r.skip(et);
      });
    else if (id == 4 && t == kI32)
      c.codec = Codec(r.read_i32());
    else if (id == 5 && t == kI64)
      c.num_values = r.read_i64();
    else if (id == 6 && t == kI64)
      c.total_uncompressed_size = r.read_i64();
    else if (id == 7 && t == kI64)
      c.total_compressed_size = r.read_i64();
    else if (id == 9 && t == kI64)
      c.data_page_offset = r.read_i64();
    else if (id == 11 && t == kI64)
      c.dictionary_page_offset = r.read_i64();
    else
      r.skip(t);
  });
}

ColumnChunk read_column_chunk(ThriftReader& r) {
  ColumnChunk c;
  bool has_meta = false;
  r.read_struct([&](int16_t id, uint8_t t) {
    if (id == 1 && t == kBinary)
      c.file_path = r.read_string();
    else if (id == 3 && t == kStruct) {
      read_column_meta(r, c);
      has_meta = true;
    } else
      r.skip(t);
  });
  TL_CHECK(has_meta, "column chunk without metadata");
  return c;
}

RowGroup read_row_group(ThriftReader& r) {
  RowGroup g;
  r.read_struct([&](int16_t id, uint8_t t) {
    if (id == 1 && t == kList)
      read_list(r, [&](uint8_t et) {
        if (et == kStruct)
          g.columns.push_back(read_column_chunk(r));
        else
          r.skip(et);
      });
    else if (id == 3 && t == kI64)
      g.num_rows = r.read_i64();
    else
      r.skip(t);
  });
  return g;
}

void read_data_page_header(ThriftReader& r, DataPageHeader& h, bool v2) {
  r.read_struct([&](int16_t id, uint8_t t) {
    if (id == 1 && t == kI32)
      h.num_values = r.read_i32();
    else if (!v2 && id == 2 && t == kI32)
      h.encoding = Encoding(r.read_i32());
    else if (!v2 && id == 3 && t == kI32)
      h.def_level_encoding = Encoding(r.read_i32());
    else if (v2 && id == 2 && t == kI32)
      h.num_nulls = r.read_i32();
    else if (v2 && id == 4 && t == kI32)
      h.encoding = Encoding(r.read_i32());
    else if (v2 && id == 5 && t == kI32)
      h.def_levels_bytes = r.read_i32();
    else if (v2 && id == 6 && t == kI32)
      h.rep_levels_bytes = r.read_i32();
    else if (v2 && id == 7 && (t == kTrue || t == kFalse))
      h.is_compressed = r.read_bool();
    else
      r.skip(t);
  });
}

}  // namespace

const char* codec_name(Codec c) {
  static const char* names[] = {"none",   "snappy", "gzip", "lzo",
                                "brotli", "lz4",    "zstd", "lz4_raw"};
  return int(c) >= 0 && int(c) < 8 ? names[int(c)] : "unknown";
}

const char* encoding_name(Encoding e) {
  static const char* names[] = {
      "PLAIN",          "GROUP_VAR_INT",       "PLAIN_DICTIONARY",        "RLE",
      "BIT_PACKED",     "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
      "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
  return int(e) >= 0 && int(e) < 10 ? names[int(e)] : "unknown";
}

const char* type_name(PhysicalType t) {
  static const char* names[] = {"BOOLEAN", "INT32",  "INT64",      "INT96",
                                "FLOAT",   "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"};
  return int(t) >= 0 && int(t) < 8 ? names[int(t)] : "unknown";
}

FileMetaData parse_file_metadata(const uint8_t* data, size_t size) {
  ThriftReader r(data, size);
  FileMetaData m;
  r.read_struct([&](int16_t id, uint8_t t) {
    if (id == 1 && t == kI32)
      m.version = r.read_i32();
    else if (id == 2 && t == kList)
      read_list(r, [&](uint8_t et) {
        TL_CHECK(et == kStruct, "schema list of type ", int(et));
        m.schema.push_back(read_schema_element(r));
      });
    else if (id == 3 && t == kI64)
      m.num_rows = r.read_i64();
    else if (id == 4 && t == kList)
      read_list(r, [&](uint8_t et) {
        TL_CHECK(et == kStruct, "row group list of type ", int(et));
        m.row_groups.push_back(read_row_group(r));
      });
    else if (id == 6 && t == kBinary)
      m.created_by = r.read_string();
    else
      r.skip(t);
  });
  TL_CHECK(!m.schema.empty(), "metadata has no schema");
  return m;
}

PageHeader parse_page_header(const uint8_t* data, size_t size, size_t& header_size) {
  ThriftReader r(data, size);
  PageHeader h;
  r.read_struct([&](int16_t id, uint8_t t) {
    if (id == 1 && t == kI32)
      h.type = PageType(r.read_i32());
    else if (id == 2 && t == kI32)
      h.uncompressed_size = r.read_i32();
    else if (id == 3 && t == kI32)
      h.compressed_size = r.read_i32();
    else if (id == 5 && t == kStruct)
      read_data_page_header(r, h.data, false);
    else if (id == 7 && t == kStruct)
      r.read_struct([&](int16_t fid, uint8_t ft) {
        if (fid == 1 && ft == kI32)
          h.dict_num_values = r.read_i32();
        else if (fid == 2 && ft == kI32)
          h.dict_encoding = Encoding(r.read_i32());
        else
          r.skip(ft);
      });
    else if (id == 8 && t == kStruct)
      read_data_page_header(r, h.data, true);
    else
      r.skip(t);
  });
  header_size = r.position();
  return h;
}

}  // namespace tl::parquet
