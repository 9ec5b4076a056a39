// A parquet file read as rows (data/parquet/rows.h, the evaluator's dataset reader): the
// schema walk, nested levels (lists, structs), integer and boolean pages, through every
// top-level column at once.
#include "data/parquet/reader.h"
#include "data/parquet/rows.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tlfuzz::scratch("rows.parquet");
  tlfuzz::write_file(path, data, size);
  std::vector<std::string> columns;
  tlfuzz::run([&] { columns = tl::parquet::ParquetFile(path).column_names(); });
  if (columns.size() > 8) columns.resize(8);
  tlfuzz::run([&] {
    tl::parquet::RowReader r(path, columns);
    tl::json row;
    for (int i = 0; i < 100000 && r.next(row); ++i) {
    }
  });
  return 0;
}
