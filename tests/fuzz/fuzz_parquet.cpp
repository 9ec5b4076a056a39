// A parquet file (data/parquet/*): footer, schema, column chunks, page headers, codecs
// (snappy, gzip, zstd), dictionaries, levels and value encodings, read through every
// top-level column as strings.
#include "data/parquet/reader.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tlfuzz::scratch("in.parquet");
  tlfuzz::write_file(path, data, size);
  std::vector<std::string> columns;
  tlfuzz::run([&] {
    tl::parquet::ParquetFile f(path);
    columns = f.column_names();
    for (const auto& c : columns) (void)f.string_column_problem(c);
  });
  if (columns.size() > 8) columns.resize(8);
  for (const auto& c : columns)
    tlfuzz::run([&] {
      tl::parquet::StringColumnReader r(path, c);
      std::string value;
      bool is_null = false;
      while (r.next(value, is_null)) {
      }
    });
  return 0;
}
