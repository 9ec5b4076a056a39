// The parquet reader against files written by other implementations (pyarrow, arrow-rs),
// with the values those writers read back recorded in each folder's expected.json.
#include <gtest/gtest.h>

#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "core/error.h"
#include "core/json_reader.h"
#include "data/parquet/codec.h"
#include "data/parquet/reader.h"
#include "data/parquet/snappy.h"
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
    GTEST_SKIP() << "pyarrow fixtures are not committed yet: run `python3 "
                    "tools/fixtures/make_parquet_fixtures.py` "
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

// ---- hostile files built by hand: sizes and counts from headers are checked before memory
// is taken (issue #18, item 8) ----

namespace {

// Thrift compact protocol, just enough to write parquet's footer and page headers.
class ThriftWriter {
 public:
  void i32(int16_t id, int64_t v) { field(id, kI32), varint(zigzag(v)); }
  void i64(int16_t id, int64_t v) { field(id, kI64), varint(zigzag(v)); }
  void binary(int16_t id, const std::string& s) { field(id, kBinary), str(s); }
  void begin(int16_t id) { field(id, kStruct), last_.push_back(0); }  // a struct field
  void begin_elem() { last_.push_back(0); }                           // a struct in a list
  void end() {  // the end of a struct; at the top level, of the message
    out_ += char(0);
    if (last_.size() > 1)
      last_.pop_back();
    else
      last_[0] = 0;
  }
  void list(int16_t id, uint8_t elem_type, size_t n) {
    field(id, kList);
    if (n < 15) {
      out_ += char(n << 4 | elem_type);
    } else {
      out_ += char(0xf0 | elem_type);
      varint(n);
    }
  }
  void str(const std::string& s) { varint(s.size()), out_ += s; }
  void varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) out_ += char(v | 0x80);
    out_ += char(v);
  }
  std::string take() { return std::exchange(out_, ""); }

 private:
  static uint64_t zigzag(int64_t v) { return (uint64_t(v) << 1) ^ uint64_t(v >> 63); }
  void field(int16_t id, uint8_t type) {
    int16_t& last = last_.back();
    if (id > last && id - last <= 15)
      out_ += char((id - last) << 4 | type);
    else
      out_ += char(type), varint(zigzag(id));
    last = id;
  }
  std::string out_;
  std::vector<int16_t> last_{0};
};

// One required BYTE_ARRAY column "content" in one row group of one v1 data page.
struct PageSpec {
  Codec codec = Codec::None;
  Encoding encoding = Encoding::Plain;
  int64_t rows = 0;                 // num_values of the page, the chunk and the file
  int64_t uncompressed = -1;        // the page header's; -1: the body's size
  int64_t chunk_uncompressed = -1;  // the column chunk's total; -1: header + uncompressed
  std::string body;                 // the page bytes as stored
};

std::string dt_parquet_file(const PageSpec& s) {
  ThriftWriter w;
  const int64_t uncompressed = s.uncompressed >= 0 ? s.uncompressed : int64_t(s.body.size());
  w.i32(1, 0);  // DATA_PAGE
  w.i32(2, uncompressed);
  w.i32(3, int64_t(s.body.size()));
  w.begin(5);
  w.i32(1, s.rows);
  w.i32(2, int64_t(s.encoding));
  w.i32(3, 3);  // RLE
  w.i32(4, 3);
  w.end();
  w.end();
  const std::string header = w.take();
  const std::string chunk = header + s.body;
  const int64_t total_uncompressed =
      s.chunk_uncompressed >= 0 ? s.chunk_uncompressed : int64_t(header.size()) + uncompressed;
  w.i32(1, 1);  // version
  w.list(2, 12, 2);
  w.begin_elem();
  w.binary(4, "schema");
  w.i32(5, 1);
  w.end();
  w.begin_elem();
  w.i32(1, 6);  // BYTE_ARRAY
  w.i32(3, 0);  // REQUIRED
  w.binary(4, "content");
  w.end();
  w.i64(3, s.rows);
  w.list(4, 12, 1);
  w.begin_elem();
  w.list(1, 12, 1);
  w.begin_elem();
  w.i64(2, 4);
  w.begin(3);
  w.i32(1, 6);
  w.list(2, 5, 1);
  w.varint(int64_t(s.encoding) << 1);
  w.list(3, 8, 1);
  w.str("content");
  w.i32(4, int64_t(s.codec));
  w.i64(5, s.rows);
  w.i64(6, total_uncompressed);
  w.i64(7, int64_t(chunk.size()));
  w.i64(9, 4);
  w.end();
  w.end();
  w.i64(2, int64_t(chunk.size()));
  w.i64(3, s.rows);
  w.end();
  w.end();
  const std::string footer = w.take();
  std::string file = "PAR1" + chunk + footer;
  const uint32_t n = uint32_t(footer.size());
  for (int i = 0; i < 4; ++i) file += char(n >> (8 * i));
  return file + "PAR1";
}

// DELTA_BINARY_PACKED of n values: first, then every delta `step` (miniblocks of width 0).
std::string dt_delta_run(uint64_t n, int64_t first, int64_t step) {
  auto zz = [](int64_t v) { return (uint64_t(v) << 1) ^ uint64_t(v >> 63); };
  ThriftWriter w;  // (for its varints)
  w.varint(128);   // values a block
  w.varint(4);     // miniblocks a block
  w.varint(n);
  w.varint(zz(first));
  for (uint64_t done = 1; done < n; done += 128) {
    w.varint(zz(step));  // min delta, then the 4 miniblocks' bit widths: 0, no bytes
    w.varint(0), w.varint(0), w.varint(0), w.varint(0);
  }
  return w.take();
}

std::string dt_plain(const std::vector<std::string>& values) {
  std::string out;
  for (const auto& v : values) {
    const uint32_t n = uint32_t(v.size());
    for (int i = 0; i < 4; ++i) out += char(n >> (8 * i));
    out += v;
  }
  return out;
}

}  // namespace

// The helper's file reads back (so the tests below fail for the reason they name).
TEST(DataParquet, HandBuiltFileReads) {
  dt::TempDir tmp;
  PageSpec s;
  s.rows = 3;
  s.body = dt_plain({"one", "", "three"});
  dt::write_text(tmp / "ok.parquet", dt_parquet_file(s));
  EXPECT_EQ(dt_read_all(tmp / "ok.parquet", "content"), json({"one", "", "three"}));
  // DELTA_BYTE_ARRAY: prefixes of the previous value plus suffixes.
  PageSpec d;
  d.encoding = Encoding::DeltaByteArray;
  d.rows = 4;  // "abc", "abd", "ab", "abzz": prefixes 0 2 2 2, suffixes "abc" "d" "" "zz"
  ThriftWriter w;
  auto zz = [](int64_t v) { return (uint64_t(v) << 1) ^ uint64_t(v >> 63); };
  for (const std::vector<int64_t>& vals :
       {std::vector<int64_t>{0, 2, 2, 2}, std::vector<int64_t>{3, 1, 0, 2}}) {
    // One block of 128 in 4 miniblocks; the deltas after min_delta in 8-bit widths.
    w.varint(128), w.varint(4), w.varint(4), w.varint(zz(vals[0]));
    int64_t min_delta = vals[1] - vals[0];
    for (size_t i = 2; i < 4; ++i) min_delta = std::min(min_delta, vals[i] - vals[i - 1]);
    w.varint(zz(min_delta));
    std::string block = {char(8), char(0), char(0), char(0)};
    for (size_t i = 1; i < 4; ++i) block += char(vals[i] - vals[i - 1] - min_delta);
    block += std::string(32 - 3, '\0');  // the miniblock is stored whole
    d.body += w.take() + block;
  }
  d.body += "abcdzz";
  dt::write_text(tmp / "delta.parquet", dt_parquet_file(d));
  EXPECT_EQ(dt_read_all(tmp / "delta.parquet", "content"), json({"abc", "abd", "ab", "abzz"}));
}

// A snappy or zstd page whose header announces 2 GiB decodes into no more memory than its
// data gives: the output grows as it comes (zstd) or is checked against the most the
// compressed bytes can expand to (snappy) before it is allocated.
TEST(DataParquet, CodecsTakeNoMemoryForAnnouncedSizes) {
  const size_t huge = 0x7fffffff;
  std::string out;
  // snappy: the varint announces 2^31-1 bytes, then one 3-byte literal.
  const uint8_t snappy[] = {0xff, 0xff, 0xff, 0xff, 0x07, (3 - 1) << 2, 'a', 'b', 'c'};
  DT_EXPECT_THROW_WITH(decompress(Codec::Snappy, snappy, sizeof snappy, huge, out), "snappy");
  EXPECT_LT(out.capacity(), size_t(1) << 20);
  // zstd: a frame that does not record its size (streamed), 100 bytes of content.
  std::string text(100, 'x');
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  std::string frame(ZSTD_compressBound(text.size()), '\0');
  ZSTD_outBuffer ob{frame.data(), frame.size(), 0};
  ZSTD_inBuffer ib{text.data(), text.size(), 0};
  ASSERT_EQ(ZSTD_compressStream2(cctx, &ob, &ib, ZSTD_e_end), 0u);
  ZSTD_freeCCtx(cctx);
  frame.resize(ob.pos);
  ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  const auto* f = reinterpret_cast<const uint8_t*>(frame.data());
  out = std::string();
  DT_EXPECT_THROW_WITH(decompress(Codec::Zstd, f, frame.size(), huge, out), "zstd", "100");
  EXPECT_LT(out.capacity(), size_t(1) << 20);
  decompress(Codec::Zstd, f, frame.size(), 100, out);  // the right size still reads
  EXPECT_EQ(out, text);
}

// Through the reader: a page announcing more than its column chunk holds, or more values
// than its bytes can carry, is refused by its header, naming the file and column.
TEST(DataParquet, PageSizesAndCountsAreCheckedAgainstTheChunk) {
  dt::TempDir tmp;
  PageSpec s;
  s.codec = Codec::Snappy;
  s.rows = 1;
  s.body = std::string("\x08\x1c", 2) + dt_plain({"abcd"});  // length 8, one 8-byte literal
  s.uncompressed = 8;
  dt::write_text(tmp / "ok.parquet", dt_parquet_file(s));
  EXPECT_EQ(dt_read_all(tmp / "ok.parquet", "content"), json({"abcd"}));
  s.uncompressed = 0x7fffffff;
  s.chunk_uncompressed = 100;
  dt::write_text(tmp / "big.parquet", dt_parquet_file(s));
  DT_EXPECT_THROW_WITH(dt_read_all(tmp / "big.parquet", "content"), "big.parquet",
                       "column 'content'", "uncompressed", "2147483647");
  // 2^26 values claimed by a 10-byte PLAIN page (each value takes 4 bytes at least).
  PageSpec c;
  c.rows = int64_t(1) << 26;
  c.body = dt_plain({"0123456789"}).substr(0, 10);
  dt::write_text(tmp / "count.parquet", dt_parquet_file(c));
  DT_EXPECT_THROW_WITH(dt_read_all(tmp / "count.parquet", "content"), "count.parquet",
                       "67108864 values", "10 bytes");
}

// DELTA_BYTE_ARRAY decodes in linear memory: each value is rebuilt from the previous one
// when it is read. A page whose values would expand far beyond its size (here 20000 values,
// each the previous one plus a byte: 200 MB from 20 kB) is refused.
TEST(DataParquet, DeltaByteArrayExpansionIsBounded) {
  dt::TempDir tmp;
  const uint64_t n = 20000;
  PageSpec s;
  s.encoding = Encoding::DeltaByteArray;
  s.rows = int64_t(n);
  s.body = dt_delta_run(n, 0, 1) + dt_delta_run(n, 1, 0) + std::string(n, 'a');
  dt::write_text(tmp / "grow.parquet", dt_parquet_file(s));
  DT_EXPECT_THROW_WITH(dt_read_all(tmp / "grow.parquet", "content"), "grow.parquet",
                       "DELTA_BYTE_ARRAY", "expand");
  // The same shape within bounds reads back: value i is i+1 'a's.
  const uint64_t m = 300;
  s.rows = int64_t(m);
  s.body = dt_delta_run(m, 0, 1) + dt_delta_run(m, 1, 0) + std::string(m, 'a');
  dt::write_text(tmp / "ok.parquet", dt_parquet_file(s));
  const json v = dt_read_all(tmp / "ok.parquet", "content");
  ASSERT_EQ(v.size(), m);
  EXPECT_EQ(v[0], "a");
  EXPECT_EQ(v[m - 1], std::string(m, 'a'));
}
