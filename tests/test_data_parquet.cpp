// The parquet reader against files written by other implementations (pyarrow, arrow-rs),
// with the values those writers read back recorded in each folder's expected.json.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "core/json_reader.h"
#include "data/parquet/codec.h"
#include "data/parquet/snappy.h"
#include "data/parquet/reader.h"
#include "data/parquet/thrift.h"
#include "data_test_util.h"

using namespace tl;
using namespace tl::parquet;

namespace {

std::string dt_fixtures(const std::string& writer) {
  return std::string(TL_SOURCE_DIR) + "/tests/fixtures/parquet/" + writer;
}

// Every value of a column: strings, or null.
json dt_read_all(const std::string& path, const std::string& column,
                 std::set<std::string>* features = nullptr) {
  StringColumnReader r(path, column);
  json out = json::array();
  std::string v;
  bool null = false;
  while (r.next(v, null)) out.push_back(null ? json(nullptr) : json(v));
  EXPECT_EQ(r.rows_read(), r.num_rows());
  if (features) *features = r.features();
  return out;
}

void dt_check_fixtures(const std::string& dir) {
  json expected = read_json_file(dir + "/expected.json");
  ASSERT_GE(expected["files"].size(), 5u);
  for (const auto& [key, want] : expected["files"].items()) {
    SCOPED_TRACE(key + " (" + expected["writer"].get<std::string>() + ")");
    const std::string file = dir + "/" + want.value("file", key);
    const std::string column = want["column"];
    if (want.contains("error")) {
      const std::string error = want["error"];
      DT_EXPECT_THROW_WITH(dt_read_all(file, column), error.c_str(), file.c_str());
      continue;
    }
    std::set<std::string> seen;
    EXPECT_EQ(dt_read_all(file, column, &seen), want["values"]);
    if (!want.contains("compression")) continue;
    // The file really covers what its name claims.
    ParquetFile pf(file);
    ASSERT_EQ(pf.metadata().row_groups.size(), want["row_groups"].get<size_t>());
    for (const auto& g : pf.metadata().row_groups)
      for (const auto& c : g.columns) {
        if (c.path == std::vector<std::string>{column}) {
          EXPECT_EQ(codec_name(c.codec), want["compression"].get<std::string>());
        }
      }
    EXPECT_TRUE(seen.count(want["data_page_version"] == 2 ? "v2" : "v1"));
    EXPECT_FALSE(seen.count(want["data_page_version"] == 2 ? "v1" : "v2"));
    EXPECT_EQ(seen.count("dictionary_page"), want["dictionary"].get<bool>() ? 1u : 0u);
  }
}

}  // namespace

TEST(DataParquet, ReadsArrowRsFiles) { dt_check_fixtures(dt_fixtures("arrow-rs")); }

TEST(DataParquet, ReadsPyarrowFiles) {
  if (!std::filesystem::exists(dt_fixtures("pyarrow") + "/expected.json"))
    GTEST_SKIP()
        << "pyarrow fixtures are not committed yet: run `python3 tools/make_parquet_fixtures.py` "
           "on a machine with pyarrow and commit tests/fixtures/parquet/pyarrow/";
  dt_check_fixtures(dt_fixtures("pyarrow"));
}

TEST(DataParquet, SchemaAndColumns) {
  ParquetFile pf(dt_fixtures("arrow-rs") + "/starcoder_like.parquet");
  EXPECT_EQ(pf.column_names(),
            (std::vector<std::string>{"max_stars_repo_path", "max_stars_repo_name",
                                      "max_stars_count", "id", "content"}));
  EXPECT_EQ(pf.num_rows(), 12);
  EXPECT_EQ(pf.string_column_problem("content"), "");
  EXPECT_NE(
      pf.string_column_problem("text").find("no column 'text' (its columns: max_stars_repo_path"),
      std::string::npos);
}

TEST(DataParquet, CorruptFilesAreClearErrors) {
  dt::TempDir tmp;
  const std::string good = dt_fixtures("arrow-rs") + "/none_plain_v1.parquet";
  const std::string bytes = dt::read_text(good);
  dt::write_text(tmp / "text.parquet", "just some text, not parquet at all");
  DT_EXPECT_THROW_WITH(StringColumnReader(tmp / "text.parquet", "content"), "text.parquet", "PAR1");
  dt::write_text(tmp / "cut.parquet", bytes.substr(0, bytes.size() / 2));
  DT_EXPECT_THROW_WITH(StringColumnReader(tmp / "cut.parquet", "content"), "cut.parquet", "PAR1");
  std::string len = bytes;
  len[len.size() - 6] = '\x7f';  // the footer length far beyond the file
  dt::write_text(tmp / "len.parquet", len);
  DT_EXPECT_THROW_WITH(StringColumnReader(tmp / "len.parquet", "content"), "len.parquet", "footer");
  // A value length inside a page overwritten: found while reading, named with file and column.
  std::string page = bytes;
  const size_t at = page.find("First document.");
  ASSERT_NE(at, std::string::npos);
  page[at - 1] = '\x40';  // the PLAIN length's high byte: 1 GiB
  dt::write_text(tmp / "page.parquet", page);
  DT_EXPECT_THROW_WITH(dt_read_all(tmp / "page.parquet", "content"), "page.parquet",
                       "column 'content'", "past the page");
  // Any single damaged byte gives values or a tl::Error, never a crash or a hang.
  for (const char* name : {"none_plain_v1.parquet", "snappy_dict_v1.parquet",
                           "zstd_dict_v2.parquet", "snappy_delta_v2.parquet"}) {
    const std::string src = dt::read_text(dt_fixtures("arrow-rs") + "/" + name);
    int errors = 0;
    for (size_t i = 0; i < src.size(); i += 7) {
      std::string b = src;
      b[i] = char(b[i] ^ 0x5a);
      dt::write_text(tmp / "x.parquet", b);
      try {
        dt_read_all(tmp / "x.parquet", "content");
      } catch (const Error&) {
        ++errors;
      }
    }
    EXPECT_GT(errors, 0) << name;
  }
}

TEST(DataParquet, ThriftReaderSkipsUnknownFieldsAndStopsOnTruncation) {
  // struct { 1: i32 = -3, 5: list<binary> ["ab"], 7: struct { 1: true }, 20: i64 = 300 }
  const uint8_t data[] = {0x15, 0x05, 0x49, 0x18, 0x02, 'a',  'b', 0x2c,
                          0x11, 0x00, 0x06, 0x28, 0xd8, 0x04, 0x00};
  ThriftReader r(data, sizeof data);
  std::vector<int> ids;
  int32_t i32 = 0;
  int64_t i64 = 0;
  r.read_struct([&](int16_t id, uint8_t t) {
    ids.push_back(id);
    if (id == 1)
      i32 = r.read_i32();
    else if (id == 20)
      i64 = r.read_i64();
    else
      r.skip(t);
  });
  EXPECT_EQ(ids, (std::vector<int>{1, 5, 7, 20}));
  EXPECT_EQ(i32, -3);
  EXPECT_EQ(i64, 300);
  EXPECT_EQ(r.position(), sizeof data);
  ThriftReader cut(data, 6);
  EXPECT_THROW(cut.read_struct([&](int16_t, uint8_t t) { cut.skip(t); }), ThriftTruncated);
}

TEST(DataParquet, CodecsRejectBadData) {
  std::string out;
  const uint8_t junk[] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (Codec c : {Codec::Snappy, Codec::Gzip, Codec::Zstd})
    EXPECT_THROW(decompress(c, junk, sizeof junk, 100, out), Error) << codec_name(c);
  DT_EXPECT_THROW_WITH(decompress(Codec::Brotli, junk, sizeof junk, 8, out), "brotli",
                       "not supported");
}

// A block built by hand from the format description: varint length 11, a 4-byte literal
// "abcd", a 1-byte-offset copy (len 4, offset 4) = "abcd", then a 2-byte-offset copy of
// length 3 at offset 1: "ddd" (overlapping, repeats the last byte).
TEST(DataParquet, SnappyDecodesLiteralsAndOverlappingCopies) {
  const uint8_t block[] = {11, (4 - 1) << 2, 'a', 'b', 'c', 'd', 0x01, 4, ((3 - 1) << 2) | 2, 1, 0};
  std::string out;
  tl::snappy_decompress(block, sizeof block, 11, out);
  EXPECT_EQ(out, "abcdabcdddd");
  EXPECT_EQ(tl::snappy_length(block, sizeof block), 11u);
  // Wrong announced size, an offset before the start, a literal past the end: errors.
  EXPECT_THROW(tl::snappy_decompress(block, sizeof block, 12, out), tl::Error);
  const uint8_t bad_offset[] = {4, 0x01, 9};
  EXPECT_THROW(tl::snappy_decompress(bad_offset, sizeof bad_offset, 4, out), tl::Error);
  const uint8_t short_literal[] = {4, (4 - 1) << 2, 'a'};
  EXPECT_THROW(tl::snappy_decompress(short_literal, sizeof short_literal, 4, out), tl::Error);
}
