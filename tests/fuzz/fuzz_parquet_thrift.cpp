// Parquet's Thrift compact metadata in memory (data/parquet/metadata.cpp, thrift.cpp): the
// file footer and a page header, each from the same bytes.
#include "data/parquet/metadata.h"
#include "data/parquet/thrift.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)tl::parquet::parse_file_metadata(data, size);
  } catch (const tl::parquet::ThriftTruncated&) {
  } catch (const tl::Error&) {
  }
  try {
    size_t header_size = 0;
    (void)tl::parquet::parse_page_header(data, size, header_size);
    if (header_size > size) __builtin_trap();  // a header cannot be longer than its bytes
  } catch (const tl::parquet::ThriftTruncated&) {
  } catch (const tl::Error&) {
  }
  return 0;
}
