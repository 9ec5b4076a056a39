#include "data/parquet/leaf.h"

#include <algorithm>

#include "core/error.h"
#include "data/parquet/codec.h"
#include "data/parquet/encoding.h"
#include "data/parquet/thrift.h"

namespace tl::parquet {

namespace {

int bit_width(int max_level) {
  int w = 0;
  while ((1 << w) <= max_level) ++w;
  return w;
}

int64_t load_i64(const uint8_t* p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
  return int64_t(v);
}

}  // namespace

LeafReader::LeafReader(const ParquetFile& file, std::vector<std::string> path, PhysicalType type,
                       int max_def, int max_rep)
    : pf_(file), path_(std::move(path)), type_(type), max_def_(max_def), max_rep_(max_rep) {
  for (const auto& p : path_) name_ += (name_.empty() ? "" : ".") + p;
  TL_CHECK(type == PhysicalType::ByteArray || type == PhysicalType::Int32 ||
               type == PhysicalType::Int64 || type == PhysicalType::Boolean,
           "parquet '", pf_.path(), "': column '", name_, "' is ", type_name(type),
           " (BYTE_ARRAY, INT32, INT64 and BOOLEAN are supported)");
  TL_CHECK(max_def >= 0 && max_def <= 16 && max_rep >= 0 && max_rep <= 1, "parquet '", pf_.path(),
           "': column '", name_, "' nests too deep (definition level ", max_def, ", repetition ",
           max_rep, ")");
}

void LeafReader::corrupt(const std::string& what) const {
  fail("parquet '", pf_.path(), "': column '", name_, "', row group ", row_group_ - 1, ": ", what);
}

bool LeafReader::next(LeafEntry& e) {
  while (next_entry_ == defs_.size())
    if (!load_page()) return false;
  const size_t k = next_entry_++;
  e.rep = reps_.empty() ? 0 : int(reps_[k]);
  e.def = defs_[k] == uint32_t(-1) ? max_def_ : int(defs_[k]);
  e.present = e.def == max_def_;
  e.i = 0;
  e.s.clear();
  if (!e.present) return true;
  const Value& v = values_[next_value_++];
  if (type_ != PhysicalType::ByteArray) {
    e.i = v.num;
  } else if (v.source == 2) {  // DELTA_BYTE_ARRAY: the previous value's prefix + suffix
    own_.resize(v.prefix);
    own_.append(page_.data() + v.offset, v.len);
    e.s = own_;
  } else {
    const std::string& src = v.source == 0 ? page_ : dict_;
    e.s.assign(src.data() + v.offset, v.len);
  }
  return true;
}

bool LeafReader::open_next_chunk() {
  const auto& groups = pf_.metadata().row_groups;
  if (row_group_ == groups.size()) return false;
  const RowGroup& g = groups[row_group_++];
  chunk_ = nullptr;
  for (const auto& c : g.columns)
    if (c.path == path_) chunk_ = &c;
  if (!chunk_) corrupt("no column chunk for the column");
  if (!chunk_->file_path.empty())
    corrupt("data in another file ('" + chunk_->file_path + "') is not supported");
  if (!codec_supported(chunk_->codec))
    corrupt(cat("compression ", codec_name(chunk_->codec),
                " is not supported (none, snappy, gzip, zstd are)"));
  if (chunk_->type != type_)
    corrupt(
        cat("column chunk is ", type_name(chunk_->type), ", the schema says ", type_name(type_)));
  if (max_rep_ == 0 ? chunk_->num_values != g.num_rows : chunk_->num_values < g.num_rows)
    corrupt(cat(chunk_->num_values, " values for ", g.num_rows, " rows"));
  pos_ = chunk_->data_page_offset;
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
  first_page_ = true;
  return true;
}

void LeafReader::decode_dictionary(const std::string& page, int32_t count) {
  dict_entries_.clear();
  const uint8_t *q = bytes(page), *end = q + page.size();
  TL_CHECK(count >= 0, "dictionary of ", count, " entries");
  if (type_ == PhysicalType::ByteArray) {
    for (int32_t i = 0; i < count; ++i) {
      TL_CHECK(end - q >= 4 && load_u32(q) <= uint64_t(end - q - 4), "dictionary entry ", i,
               " past the page");
      dict_entries_.push_back({1, load_u32(q), 0, uint64_t(q + 4 - bytes(page)), 0});
      q += 4 + load_u32(q);
    }
    return;
  }
  TL_CHECK(type_ != PhysicalType::Boolean, "a dictionary for a BOOLEAN column");
  const int w = type_ == PhysicalType::Int32 ? 4 : 8;
  TL_CHECK(uint64_t(count) <= uint64_t(end - q) / uint64_t(w), "dictionary of ", count,
           " entries in ", end - q, " bytes");
  for (int32_t i = 0; i < count; ++i, q += w)
    dict_entries_.push_back({1, 0, 0, 0, w == 4 ? int64_t(int32_t(load_u32(q))) : load_i64(q)});
}

bool LeafReader::load_page() {
  values_.clear();
  reps_.clear();
  defs_.clear();
  next_entry_ = next_value_ = 0;
  for (;;) {
    if (!chunk_ || values_left_ == 0) {
      if (!open_next_chunk()) return false;
      continue;
    }
    if (pos_ >= chunk_end_)
      corrupt(cat("column chunk ended with ", values_left_, " values missing"));
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
    const int64_t chunk_total = chunk_->total_uncompressed_size;
    if ((chunk_total > 0 && h.uncompressed_size > chunk_total) ||
        h.uncompressed_size > kMaxPageBytes)
      corrupt(cat("page at byte ", pos_, " announces ", h.uncompressed_size,
                  " uncompressed bytes, more than its column chunk or a page may hold"));
    const int64_t body = pos_ + int64_t(hsize);
    pos_ = body + h.compressed_size;
    if (h.type != PageType::Dictionary && h.type != PageType::Data && h.type != PageType::DataV2)
      continue;
    pf_.file_->read(body, size_t(h.compressed_size), raw_);
    const uint8_t* p = bytes(raw_);
    try {
      if (h.type == PageType::Dictionary) {
        if (h.dict_encoding != Encoding::Plain && h.dict_encoding != Encoding::PlainDictionary)
          fail("dictionary page in ", encoding_name(h.dict_encoding));
        decompress(chunk_->codec, p, raw_.size(), size_t(h.uncompressed_size), dict_);
        decode_dictionary(dict_, h.dict_num_values);
        continue;
      }
      const DataPageHeader& d = h.data;
      TL_CHECK(d.num_values >= 0 && d.num_values <= values_left_ && d.num_values <= kMaxPageValues,
               "page holds ", d.num_values, " values, the column chunk has ", values_left_,
               " left (at most ", kMaxPageValues, " a page are taken as sane)");
      TL_CHECK(d.num_values <= 8 * int64_t(h.uncompressed_size) + kFreePageValues, "page holds ",
               d.num_values, " values in ", h.uncompressed_size, " bytes (more than ",
               kFreePageValues, " values take a bit each at least)");
      const size_t n = size_t(d.num_values);
      const int rw = bit_width(max_rep_), dw = bit_width(max_def_);
      const uint8_t *vals = nullptr, *vend = nullptr;
      if (h.type == PageType::Data) {
        decompress(chunk_->codec, p, raw_.size(), size_t(h.uncompressed_size), page_);
        const uint8_t *q = bytes(page_), *end = q + page_.size();
        auto levels = [&](int width, std::vector<uint32_t>& out, const char* what) {
          TL_CHECK(d.def_level_encoding == Encoding::Rle, what, " levels in ",
                   encoding_name(d.def_level_encoding), " (only RLE is supported)");
          TL_CHECK(end - q >= 4 && load_u32(q) <= uint64_t(end - q - 4), what,
                   " levels past the page");
          const uint8_t* lend = q + 4 + load_u32(q);
          decode_hybrid(q + 4, lend, width, n, out);
          q = lend;
        };
        if (max_rep_ > 0) levels(rw, reps_, "repetition");
        if (max_def_ > 0) levels(dw, defs_, "definition");
        vals = q, vend = end;
      } else {
        const int64_t levels_bytes = int64_t(d.def_levels_bytes) + d.rep_levels_bytes;
        TL_CHECK(d.def_levels_bytes >= 0 && d.rep_levels_bytes >= 0 &&
                     levels_bytes <= h.compressed_size && levels_bytes <= h.uncompressed_size,
                 "bad level sizes in a v2 page (definition ", d.def_levels_bytes, ", repetition ",
                 d.rep_levels_bytes, ")");
        if (max_rep_ > 0) decode_hybrid(p, p + d.rep_levels_bytes, rw, n, reps_);
        if (max_def_ > 0) decode_hybrid(p + d.rep_levels_bytes, p + levels_bytes, dw, n, defs_);
        const size_t in = raw_.size() - size_t(levels_bytes),
                     out = size_t(h.uncompressed_size - levels_bytes);
        decompress(d.is_compressed ? chunk_->codec : Codec::None, p + levels_bytes, in, out, page_);
        vals = bytes(page_), vend = vals + page_.size();
      }
      size_t present = n;
      if (max_def_ > 0) {
        present = 0;
        for (uint32_t v : defs_) {
          TL_CHECK(v <= uint32_t(max_def_), "definition level ", v, " above ", max_def_);
          present += v == uint32_t(max_def_);
        }
      } else {
        defs_.assign(n, uint32_t(-1));  // required all the way: every entry holds a value
      }
      for (uint32_t v : reps_) TL_CHECK(v <= uint32_t(max_rep_), "repetition level ", v);
      if (first_page_ && !reps_.empty())
        TL_CHECK(reps_[0] == 0, "the row group's first entry continues a row");
      if (n > 0) first_page_ = false;
      decode_values(vals, vend, d.encoding, present);
      values_left_ -= d.num_values;
    } catch (const Error& e) {
      corrupt(cat("page at byte ", body, ": ", e.what()));
    }
    if (!defs_.empty()) return true;
  }
}

void LeafReader::decode_values(const uint8_t* p, const uint8_t* end, Encoding enc, size_t present) {
  const uint8_t* base = bytes(page_);
  values_.reserve(present);
  if (enc == Encoding::PlainDictionary || enc == Encoding::RleDictionary) {
    TL_CHECK(present == 0 || p < end, "dictionary indices missing");
    std::vector<uint32_t> idx;
    if (present) decode_hybrid(p + 1, end, *p, present, idx);
    for (uint32_t k : idx) {
      TL_CHECK(k < dict_entries_.size(), "dictionary index ", k, " outside the dictionary of ",
               dict_entries_.size(), dict_entries_.empty() ? " (no dictionary page)" : "");
      values_.push_back(dict_entries_[k]);
    }
    return;
  }
  if (type_ == PhysicalType::Boolean) {
    std::vector<uint32_t> bits;
    if (enc == Encoding::Plain) {
      TL_CHECK(present <= uint64_t(end - p) * 8, "PLAIN page holds ", present, " booleans in ",
               end - p, " bytes");
      for (size_t i = 0; i < present; ++i) bits.push_back((p[i / 8] >> (i % 8)) & 1);
    } else if (enc == Encoding::Rle) {
      TL_CHECK(end - p >= 4 && load_u32(p) <= uint64_t(end - p - 4), "RLE booleans past the page");
      if (present) decode_hybrid(p + 4, p + 4 + load_u32(p), 1, present, bits);
    } else {
      fail("value encoding ", encoding_name(enc), " is not supported for BOOLEAN");
    }
    for (uint32_t b : bits) values_.push_back({0, 0, 0, 0, int64_t(b)});
    return;
  }
  if (type_ == PhysicalType::Int32 || type_ == PhysicalType::Int64) {
    const int w = type_ == PhysicalType::Int32 ? 4 : 8;
    if (enc == Encoding::Plain) {
      TL_CHECK(present <= uint64_t(end - p) / uint64_t(w), "PLAIN page holds ", present,
               " integers in ", end - p, " bytes");
      for (size_t i = 0; i < present; ++i, p += w)
        values_.push_back({0, 0, 0, 0, w == 4 ? int64_t(int32_t(load_u32(p))) : load_i64(p)});
    } else if (enc == Encoding::DeltaBinaryPacked) {
      std::vector<int64_t> v;
      decode_delta(p, end, present, v);
      TL_CHECK(v.size() == present, v.size(), " integers for ", present, " values");
      for (int64_t x : v) values_.push_back({0, 0, 0, 0, w == 4 ? int64_t(int32_t(x)) : x});
    } else {
      fail("value encoding ", encoding_name(enc), " is not supported for integers");
    }
    return;
  }
  // BYTE_ARRAY
  if (enc == Encoding::Plain) {
    TL_CHECK(present <= uint64_t(end - p) / 4, "PLAIN page holds ", present, " values in ", end - p,
             " bytes (4 a value at least)");
    for (size_t i = 0; i < present; ++i) {
      TL_CHECK(end - p >= 4 && load_u32(p) <= uint64_t(end - p - 4), "value ", i,
               " runs past the page");
      values_.push_back({0, load_u32(p), 0, uint64_t(p + 4 - base), 0});
      p += 4 + load_u32(p);
    }
  } else if (enc == Encoding::DeltaLengthByteArray || enc == Encoding::DeltaByteArray) {
    std::vector<int64_t> prefix, len;
    if (enc == Encoding::DeltaByteArray) p = decode_delta(p, end, present, prefix);
    p = decode_delta(p, end, present, len);
    TL_CHECK(len.size() == present && (prefix.empty() || prefix.size() == present), len.size(),
             " lengths for ", present, " values");
    const uint64_t max_expanded = std::max(kMaxDeltaExpansion, 64 * uint64_t(page_.size()));
    uint64_t prev_len = 0, expanded = 0;
    for (size_t i = 0; i < present; ++i) {
      TL_CHECK(len[i] >= 0 && len[i] <= end - p, "value ", i, " runs past the page");
      if (enc == Encoding::DeltaLengthByteArray) {
        values_.push_back({0, uint32_t(len[i]), 0, uint64_t(p - base), 0});
      } else {
        TL_CHECK(prefix[i] >= 0 && uint64_t(prefix[i]) <= prev_len, "prefix ", prefix[i],
                 " longer than the previous value");
        prev_len = uint64_t(prefix[i]) + uint64_t(len[i]);
        expanded += prev_len;
        TL_CHECK(prev_len <= UINT32_MAX && expanded <= max_expanded, "DELTA_BYTE_ARRAY values ",
                 "expand to more than ", max_expanded, " bytes from a page of ", page_.size());
        values_.push_back({2, uint32_t(len[i]), uint32_t(prefix[i]), uint64_t(p - base), 0});
      }
      p += len[i];
    }
  } else {
    fail("value encoding ", encoding_name(enc), " is not supported");
  }
}

}  // namespace tl::parquet
