#include "data/parquet/reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "data/parquet/codec.h"
#include "data/parquet/encoding.h"
#include "data/parquet/thrift.h"

namespace tl::parquet {

// ---- ParquetFile ----

ParquetFile::ParquetFile(const std::string& path) : file_(std::make_shared<File>(path)) {
  const int64_t size = file_->size();
  TL_CHECK(size >= 12, "parquet '", path, "': ", size, " bytes, too short for a parquet file");
  std::string tail, head;
  file_->read(0, 4, head);
  file_->read(size - 8, 8, tail);
  TL_CHECK(head == "PAR1" && tail.compare(4, 4, "PAR1") == 0, "parquet '", path,
           "': not a parquet file (no PAR1 magic at the start and end)");
  const uint32_t len = load_u32(bytes(tail));
  TL_CHECK(int64_t(len) <= size - 12, "parquet '", path, "': corrupt footer: metadata length ", len,
           " exceeds the file (", size, " bytes)");
  std::string footer;
  file_->read(size - 8 - int64_t(len), len, footer);
  try {
    meta_ = parse_file_metadata(bytes(footer), footer.size());
  } catch (const ThriftTruncated&) {
    fail("parquet '", path, "': corrupt footer: metadata ends early");
  } catch (const Error& e) {
    fail("parquet '", path, "': corrupt footer: ", e.what());
  }
  int64_t rows = 0;
  for (const auto& g : meta_.row_groups) rows += g.num_rows;
  TL_CHECK(rows == meta_.num_rows && rows >= 0, "parquet '", path,
           "': corrupt footer: row groups hold ", rows, " rows, the file says ", meta_.num_rows);
}

ParquetFile::~ParquetFile() = default;

const std::string& ParquetFile::path() const { return file_->path(); }

std::vector<std::string> ParquetFile::column_names() const {
  std::vector<std::string> names;
  // Walk the root's children, skipping each one's subtree.
  size_t i = 1;
  for (int32_t c = 0; c < meta_.schema[0].num_children && i < meta_.schema.size(); ++c) {
    names.push_back(meta_.schema[i].name);
    int64_t pending = 1;
    while (pending > 0 && i < meta_.schema.size()) pending += meta_.schema[i++].num_children - 1;
  }
  return names;
}

std::string ParquetFile::string_column_problem(const std::string& name) const {
  size_t i = 1;
  for (int32_t c = 0; c < meta_.schema[0].num_children && i < meta_.schema.size(); ++c) {
    const SchemaElement& e = meta_.schema[i];
    if (e.name == name) {
      if (e.num_children > 0 || !e.type)
        return cat("column '", name, "' is a group, not a string column");
      if (e.repetition == Repetition::Repeated)
        return cat("column '", name, "' is a repeated (list) column");
      if (*e.type != PhysicalType::ByteArray)
        return cat("column '", name, "' is ", type_name(*e.type),
                   ", not a BYTE_ARRAY (string) column");
      return "";
    }
    int64_t pending = 1;
    while (pending > 0 && i < meta_.schema.size()) pending += meta_.schema[i++].num_children - 1;
  }
  std::string list;
  for (const auto& n : column_names()) list += (list.empty() ? "" : ", ") + n;
  return cat("no column '", name, "' (its columns: ", list, ")");
}

// ---- StringColumnReader ----

StringColumnReader::StringColumnReader(const std::string& path, const std::string& column)
    : pf_(path), column_(column) {
  std::string problem = pf_.string_column_problem(column);
  TL_CHECK(problem.empty(), "parquet '", path, "': ", problem);
  for (const auto& e : pf_.meta_.schema)
    if (e.name == column) optional_ = e.repetition == Repetition::Optional;
}

StringColumnReader::~StringColumnReader() = default;

void StringColumnReader::corrupt(const std::string& what) const {
  fail("parquet '", pf_.path(), "': column '", column_, "', row group ", row_group_ - 1, ": ",
       what);
}

bool StringColumnReader::next(std::string& value, bool& is_null) {
  while (next_ == values_.size())
    if (!load_page()) return false;
  const Value& v = values_[next_++];
  ++rows_read_;
  is_null = v.null;
  if (v.source == 2) {  // DELTA_BYTE_ARRAY: the previous value's prefix, then the suffix
    own_.resize(v.prefix);
    own_.append(page_.data() + v.offset, v.len);
    value = own_;
    return true;
  }
  const std::string& src = v.source == 0 ? page_ : dict_;
  value.assign(src.data() + v.offset, v.len);
  return true;
}

bool StringColumnReader::open_next_chunk() {
  const auto& groups = pf_.meta_.row_groups;
  if (row_group_ == groups.size()) return false;
  const RowGroup& g = groups[row_group_++];
  chunk_ = nullptr;
  for (const auto& c : g.columns)
    if (c.path.size() == 1 && c.path[0] == column_) chunk_ = &c;
  if (!chunk_) corrupt("no column chunk for the column");
  if (!chunk_->file_path.empty())
    corrupt("data in another file ('" + chunk_->file_path + "') is not supported");
  if (!codec_supported(chunk_->codec))
    corrupt(cat("compression ", codec_name(chunk_->codec),
                " is not supported (none, snappy, gzip, zstd are)"));
  if (chunk_->type != PhysicalType::ByteArray) corrupt("column chunk is not BYTE_ARRAY");
  if (chunk_->num_values != g.num_rows)
    corrupt(cat(chunk_->num_values, " values for ", g.num_rows, " rows"));
  pos_ = chunk_->data_page_offset;
  // Some writers store a dictionary offset of 0 for "none"; a dictionary comes first.
  if (chunk_->dictionary_page_offset && *chunk_->dictionary_page_offset > 0 &&
      *chunk_->dictionary_page_offset < pos_)
    pos_ = *chunk_->dictionary_page_offset;
  chunk_end_ = pos_ + chunk_->total_compressed_size;
  if (chunk_->total_uncompressed_size < -1)
    corrupt(cat("column chunk of ", chunk_->total_uncompressed_size, " uncompressed bytes"));
  if (pos_ < 4 || chunk_->total_compressed_size < 0 || chunk_end_ > pf_.file_->size() - 8)
    corrupt(cat("column chunk [", pos_, ", ", chunk_end_, ") lies outside the file"));
  values_left_ = chunk_->num_values;
  dict_entries_.clear();
  return true;
}

bool StringColumnReader::load_page() {
  values_.clear();
  next_ = 0;
  for (;;) {
    if (!chunk_ || values_left_ == 0) {
      if (!open_next_chunk()) return false;
      continue;
    }
    if (pos_ >= chunk_end_)
      corrupt(cat("column chunk ended with ", values_left_, " values missing"));
    // The header's size is unknown: read a window, widen it while the header runs past it.
    PageHeader h;
    size_t hsize = 0;
    for (size_t window = 1 << 14;; window *= 4) {
      const size_t n = size_t(std::min<int64_t>(int64_t(window), chunk_end_ - pos_));
      pf_.file_->read(pos_, n, raw_);
      try {
        h = parse_page_header(bytes(raw_), n, hsize);
        break;
      } catch (const ThriftTruncated&) {
        if (int64_t(n) == chunk_end_ - pos_)
          corrupt(cat("page header at byte ", pos_, " runs past the column chunk"));
      } catch (const Error& e) {
        corrupt(cat("page header at byte ", pos_, ": ", e.what()));
      }
    }
    if (h.compressed_size < 0 || h.uncompressed_size < 0 ||
        int64_t(hsize) + h.compressed_size > chunk_end_ - pos_)
      corrupt(cat("page at byte ", pos_, " has sizes ", h.compressed_size, "/", h.uncompressed_size,
                  " beyond the column chunk"));
    // The uncompressed size is a claim that memory is taken for: it must fit the column
    // chunk's own total (headers included) and a sane page.
    const int64_t chunk_total = chunk_->total_uncompressed_size;
    if ((chunk_total > 0 && h.uncompressed_size > chunk_total) ||
        h.uncompressed_size > kMaxPageBytes)
      corrupt(cat("page at byte ", pos_, " announces ", h.uncompressed_size,
                  " uncompressed bytes, more than ",
                  chunk_total > 0 && chunk_total < kMaxPageBytes
                      ? cat("its column chunk's total_uncompressed_size (", chunk_total, ")")
                      : cat("a page may hold (", kMaxPageBytes, ")")));
    const int64_t body = pos_ + int64_t(hsize);
    pos_ = body + h.compressed_size;
    if (h.type != PageType::Dictionary && h.type != PageType::Data && h.type != PageType::DataV2)
      continue;  // index pages and unknown kinds carry no values
    pf_.file_->read(body, size_t(h.compressed_size), raw_);
    const uint8_t* p = bytes(raw_);
    try {
      features_.insert(h.type == PageType::Dictionary ? "dictionary_page"
                       : h.type == PageType::Data     ? "v1"
                                                      : "v2");
      if (h.type == PageType::Dictionary) {
        if (h.dict_encoding != Encoding::Plain && h.dict_encoding != Encoding::PlainDictionary)
          fail("dictionary page in ", encoding_name(h.dict_encoding));
        decompress(chunk_->codec, p, raw_.size(), size_t(h.uncompressed_size), dict_);
        dict_entries_.clear();
        const uint8_t *q = bytes(dict_), *end = q + dict_.size();
        for (int32_t i = 0; i < h.dict_num_values; ++i) {
          TL_CHECK(end - q >= 4 && load_u32(q) <= uint64_t(end - q - 4), "dictionary entry ", i,
                   " past the page");
          dict_entries_.emplace_back(uint64_t(q + 4 - bytes(dict_)), load_u32(q));
          q += 4 + load_u32(q);
        }
        continue;
      }
      const DataPageHeader& d = h.data;
      TL_CHECK(d.num_values >= 0 && d.num_values <= values_left_ && d.num_values <= kMaxPageValues,
               "page holds ", d.num_values, " values, the column chunk has ", values_left_,
               " left (at most ", kMaxPageValues, " a page are taken as sane)");
      TL_CHECK(d.num_values <= 8 * int64_t(h.uncompressed_size) + kFreePageValues, "page holds ",
               d.num_values, " values in ", h.uncompressed_size, " bytes (more than ",
               kFreePageValues, " values take a bit each at least)");
      std::vector<uint8_t> defs;
      std::vector<uint32_t> levels;
      if (h.type == PageType::Data) {
        decompress(chunk_->codec, p, raw_.size(), size_t(h.uncompressed_size), page_);
        const uint8_t *q = bytes(page_), *end = q + page_.size();
        if (optional_) {
          TL_CHECK(d.def_level_encoding == Encoding::Rle, "definition levels in ",
                   encoding_name(d.def_level_encoding), " (only RLE is supported)");
          TL_CHECK(end - q >= 4 && load_u32(q) <= uint64_t(end - q - 4),
                   "definition levels past the page");
          const uint8_t* lend = q + 4 + load_u32(q);
          decode_hybrid(q + 4, lend, 1, size_t(d.num_values), levels);
          q = lend;
        }
        defs.assign(levels.begin(), levels.end());
        decode_values(q, end, d.encoding, defs, d.num_values);
      } else {
        const int64_t levels_bytes = int64_t(d.def_levels_bytes) + d.rep_levels_bytes;
        TL_CHECK(d.def_levels_bytes >= 0 && d.rep_levels_bytes == 0 &&
                     levels_bytes <= h.compressed_size && levels_bytes <= h.uncompressed_size,
                 "bad level sizes in a v2 page (definition ", d.def_levels_bytes, ", repetition ",
                 d.rep_levels_bytes, ")");
        if (optional_) {
          decode_hybrid(p, p + d.def_levels_bytes, 1, size_t(d.num_values), levels);
          defs.assign(levels.begin(), levels.end());
        }
        const uint8_t* vals = p + levels_bytes;
        const size_t n = raw_.size() - size_t(levels_bytes),
                     out = size_t(h.uncompressed_size - levels_bytes);
        decompress(d.is_compressed ? chunk_->codec : Codec::None, vals, n, out, page_);
        decode_values(bytes(page_), bytes(page_) + page_.size(), d.encoding, defs, d.num_values);
      }
      values_left_ -= d.num_values;
    } catch (const Error& e) {
      corrupt(cat("page at byte ", body, ": ", e.what()));
    }
    if (!values_.empty()) return true;
  }
}

void StringColumnReader::decode_values(const uint8_t* p, const uint8_t* end, Encoding enc,
                                       const std::vector<uint8_t>& defs, int32_t num_values) {
  const uint8_t* base = bytes(page_);
  features_.insert(encoding_name(enc));
  size_t present = 0;
  for (uint8_t d : defs) {
    TL_CHECK(d <= 1, "definition level ", int(d), " above 1");
    present += d;
  }
  if (defs.empty()) present = size_t(num_values);
  std::vector<Value> vals;  // the present values, in order
  if (enc == Encoding::Plain) {
    TL_CHECK(present <= uint64_t(end - p) / 4, "PLAIN page holds ", present, " values in ", end - p,
             " bytes (4 a value at least)");
    vals.reserve(present);
    for (size_t i = 0; i < present; ++i) {
      TL_CHECK(end - p >= 4 && load_u32(p) <= uint64_t(end - p - 4), "value ", i,
               " runs past the page");
      vals.push_back({0, false, load_u32(p), 0, uint64_t(p + 4 - base)});
      p += 4 + load_u32(p);
    }
  } else if (enc == Encoding::PlainDictionary || enc == Encoding::RleDictionary) {
    TL_CHECK(present == 0 || p < end, "dictionary indices missing");
    std::vector<uint32_t> idx;
    if (present) decode_hybrid(p + 1, end, *p, present, idx);
    for (uint32_t k : idx) {
      TL_CHECK(k < dict_entries_.size(), "dictionary index ", k, " outside the dictionary of ",
               dict_entries_.size(), dict_entries_.empty() ? " (no dictionary page)" : "");
      vals.push_back({1, false, dict_entries_[k].second, 0, dict_entries_[k].first});
    }
  } else if (enc == Encoding::DeltaLengthByteArray || enc == Encoding::DeltaByteArray) {
    std::vector<int64_t> prefix, len;
    if (enc == Encoding::DeltaByteArray) p = decode_delta(p, end, present, prefix);
    p = decode_delta(p, end, present, len);
    TL_CHECK(len.size() == present && (prefix.empty() || prefix.size() == present), len.size(),
             " lengths for ", present, " values");
    vals.reserve(present);
    // DELTA_BYTE_ARRAY values are not built here: each keeps its prefix length and suffix,
    // and next() makes it from the value before (own_), so memory stays linear in the page.
    const uint64_t max_expanded = std::max(kMaxDeltaExpansion, 64 * uint64_t(page_.size()));
    uint64_t prev_len = 0, expanded = 0;
    for (size_t i = 0; i < present; ++i) {
      TL_CHECK(len[i] >= 0 && len[i] <= end - p, "value ", i, " runs past the page");
      if (enc == Encoding::DeltaLengthByteArray) {
        vals.push_back({0, false, uint32_t(len[i]), 0, uint64_t(p - base)});
      } else {  // prefix of the previous value + suffix
        TL_CHECK(prefix[i] >= 0 && uint64_t(prefix[i]) <= prev_len, "prefix ", prefix[i],
                 " longer than the previous value");
        prev_len = uint64_t(prefix[i]) + uint64_t(len[i]);
        expanded += prev_len;
        TL_CHECK(prev_len <= UINT32_MAX && expanded <= max_expanded, "DELTA_BYTE_ARRAY values ",
                 "expand to more than ", max_expanded, " bytes from a page of ", page_.size(),
                 " (value ", i, " is ", prev_len, " bytes)");
        vals.push_back({2, false, uint32_t(len[i]), uint32_t(prefix[i]), uint64_t(p - base)});
      }
      p += len[i];
    }
  } else {
    fail("value encoding ", encoding_name(enc), " is not supported");
  }
  if (defs.empty()) {
    values_.insert(values_.end(), vals.begin(), vals.end());
    return;
  }
  size_t k = 0;
  for (uint8_t d : defs) values_.push_back(d ? vals[k++] : Value{0, true, 0, 0, 0});
}

}  // namespace tl::parquet
