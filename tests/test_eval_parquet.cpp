// The parquet row reader (data/parquet/rows.h) on files from a real writer (arrow-rs via
// parquet-wasm, tools/fixtures/make_eval_parquet_fixtures.cjs): scalars, nulls, integers, booleans,
// lists (null, empty, null elements) and structs of lists, across v1/v2 pages, dictionaries,
// codecs, small pages and row groups; and the errors for what it does not read.
#include <gtest/gtest.h>

#include "data/parquet/rows.h"
#include "data_test_util.h"

using namespace tl;

namespace {
std::string nested(const std::string& name) {
  return std::string(TL_SOURCE_DIR) + "/tests/fixtures/parquet/nested/" + name;
}
}  // namespace

TEST(EvalParquet, NestedColumnsReadAsTheWriterWroteThem) {
  const json expected = json::parse(dt::read_text(nested("expected.json")));
  ASSERT_FALSE(expected["files"].empty());
  for (const auto& file : expected["files"]) {
    parquet::RowReader r(nested(file.get<std::string>()), {"s", "i64", "i32", "b", "lst", "st"});
    json row;
    size_t i = 0;
    while (r.next(row)) {
      ASSERT_LT(i, expected["rows"].size()) << file;
      EXPECT_EQ(row, expected["rows"][i]) << file << " row " << i;
      ++i;
    }
    EXPECT_EQ(i, expected["rows"].size()) << file;
  }
}

TEST(EvalParquet, ColumnSubsetAndErrors) {
  parquet::RowReader r(nested("dict_v2.parquet"), {"st"});
  json row;
  ASSERT_TRUE(r.next(row));
  EXPECT_EQ(row.size(), 1u);
  EXPECT_TRUE(row["st"]["text"].is_array());
  DT_EXPECT_THROW_WITH(parquet::RowReader(nested("plain_v1.parquet"), {"nope"}), "plain_v1.parquet",
                       "no column 'nope'", "its columns: s, i64, i32, b, lst, st");
  dt::TempDir tmp;
  dt::write_text(tmp / "fake.parquet", "{\"question\": \"not parquet\"}\n");
  DT_EXPECT_THROW_WITH(parquet::RowReader(tmp / "fake.parquet", {"question"}), "fake.parquet",
                       "PAR1");
}
