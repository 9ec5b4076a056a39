// Native checkpoints (format in checkpoint.h). Sections stream straight from and into
// the caller's vectors in 64 MiB pieces, CRC-32 computed on the way: no extra copies.
#include "checkpoint/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>

#include "core/fs.h"
#include "core/hash.h"

namespace tl {

namespace {

constexpr char kMagic[8] = {'T', 'L', 'C', 'K', 'P', 'T', '\0', '\0'};
constexpr uint64_t kPrelude = 24;  // magic, version, header crc32, header bytes
constexpr uint64_t kAlign = 64;
constexpr size_t kPiece = size_t(64) << 20;
// Each section also carries the CRC-32 of every 1 MiB block, so that a read of part of a
// section (a rank resuming from a set saved under another sharding) verifies what it reads
// without reading the rest. kPiece is a multiple of it.
constexpr uint64_t kBlockBytes = uint64_t(1) << 20;
constexpr uint64_t kMinBlockBytes = 4096, kMaxBlockBytes = uint64_t(1) << 30;
static_assert(kPiece % kBlockBytes == 0);
const char* const kSectionNames[] = {"params", "adam_m", "adam_v"};

uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

struct Section {
  std::string name;
  uint64_t numel = 0, offset = 0, bytes = 0;
  uint32_t crc = 0;
  uint64_t block_bytes = 0;     // 0: no block CRCs (files written before 2026-12-05)
  std::vector<uint32_t> block;  // CRC-32 of each block_bytes block, the last one shorter
};

uint64_t blocks_of(uint64_t bytes, uint64_t block_bytes) {
  return (bytes + block_bytes - 1) / block_bytes;
}

std::string header_text(const json& meta, const std::vector<Section>& sections) {
  json list = json::array();
  for (const auto& s : sections)
    list.push_back(json::object({{"name", s.name},
                                 {"dtype", "f32"},
                                 {"numel", s.numel},
                                 {"offset", s.offset},
                                 {"bytes", s.bytes},
                                 {"crc32", s.crc},
                                 {"block_bytes", s.block_bytes},
                                 {"block_crc32", s.block}}));
  return json{{"meta", meta}, {"sections", list}}.dump();
}

// Offsets depend on the header length, which depends on the offsets' digits: grow the
// reserved length until it holds the header written with the widest possible CRCs.
uint64_t plan_layout(const json& meta, std::vector<Section>& sections) {
  uint64_t reserved = 0;
  for (;;) {
    uint64_t at = align_up(kPrelude + reserved);
    for (auto& s : sections) {
      s.offset = at;
      s.crc = 0xffffffffu;
      s.block_bytes = kBlockBytes;
      s.block.assign(blocks_of(s.bytes, kBlockBytes), 0xffffffffu);
      at = align_up(at + s.bytes);
    }
    uint64_t len = header_text(meta, sections).size();
    if (len <= reserved) return reserved;
    reserved = len;
  }
}

using File = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

File open_read(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"), &std::fclose);
  TL_CHECK(f, "cannot open checkpoint '", path, "': ", std::strerror(errno));
  return f;
}

uint64_t json_u64(const json& j, const char* key, const std::string& ctx) {
  TL_CHECK(j.contains(key) && j[key].is_number_unsigned(), ctx, ": '", key,
           "' must be a non-negative integer");
  return j[key].get<uint64_t>();
}

struct Parsed {
  json meta;
  std::vector<Section> sections;
  uint64_t bytes = 0;  // prelude and header: what reading them cost
};

// A section's optional block CRCs, checked against its size.
void read_block_crcs(const json& j, Section& s, const std::string& ctx) {
  if (!j.contains("block_crc32")) return;
  s.block_bytes = json_u64(j, "block_bytes", ctx);
  TL_CHECK(
      s.block_bytes >= kMinBlockBytes && s.block_bytes <= kMaxBlockBytes && s.block_bytes % 4 == 0,
      ctx, ": block_bytes ", s.block_bytes, " is not a multiple of 4 in [", kMinBlockBytes, ", ",
      kMaxBlockBytes, "]");
  const json& list = j["block_crc32"];
  TL_CHECK(list.is_array() && list.size() == blocks_of(s.bytes, s.block_bytes), ctx,
           ": block_crc32 must list one CRC-32 per block of ", s.block_bytes, " bytes (",
           blocks_of(s.bytes, s.block_bytes), ")");
  s.block.reserve(list.size());
  for (const json& c : list) {
    TL_CHECK(c.is_number_unsigned() && c.get<uint64_t>() <= 0xffffffffu, ctx,
             ": block_crc32 holds ", c.dump(), ", not a CRC-32");
    s.block.push_back(c.get<uint32_t>());
  }
}

Parsed read_header(std::FILE* f, const std::string& path) {
  const uint64_t size = file_size(path);
  const std::string where = "checkpoint '" + path + "'";
  uint8_t pre[kPrelude];
  TL_CHECK(size >= kPrelude && std::fread(pre, 1, kPrelude, f) == kPrelude, where,
           " is truncated or not a tinyllama checkpoint (", size, " bytes)");
  TL_CHECK(std::memcmp(pre, kMagic, 8) == 0, where, " is not a tinyllama checkpoint (bad magic)");
  uint32_t version, header_crc;
  uint64_t header_len;
  std::memcpy(&version, pre + 8, 4);
  std::memcpy(&header_crc, pre + 12, 4);
  std::memcpy(&header_len, pre + 16, 8);
  TL_CHECK(version <= kCheckpointVersion, where,
           " was written by a newer tinyllama (format version ", version,
           "; this build reads up to version ", kCheckpointVersion, ")");
  TL_CHECK(version >= 1, where, " has an invalid format version 0");
  // Version 1 (development builds before 2026-11-27) left the header without a CRC-32:
  // refused, so that every byte a load uses is verified.
  TL_CHECK(version >= 2, where,
           " is format version 1 (development builds before 2026-11-27), "
           "whose header has no CRC-32; this build reads version ",
           kCheckpointVersion, " only");
  TL_CHECK(header_len <= size - kPrelude, where, " is truncated: its header needs ", header_len,
           " bytes but the file has ", size, " in all");
  std::string text(header_len, '\0');
  TL_CHECK(std::fread(text.data(), 1, header_len, f) == header_len, where,
           ": cannot read the header");
  const uint32_t crc = crc32_update(0, text.data(), text.size());
  TL_CHECK(crc == header_crc, where, ": the header fails its CRC-32 check (stored ", header_crc,
           ", computed ", crc, "): the file is corrupt");
  json h;
  try {
    h = json::parse(text);
  } catch (const json::exception& e) {
    fail(where, ": the header is not valid JSON: ", e.what());
  }
  TL_CHECK(
      h.is_object() && h.contains("meta") && h.contains("sections") && h["sections"].is_array(),
      where, ": the header needs \"meta\" and a \"sections\" list");

  Parsed p{h["meta"], {}, kPrelude + header_len};
  for (const json& j : h["sections"]) {
    TL_CHECK(j.is_object() && j.contains("name") && j["name"].is_string(), where,
             ": a section has no name");
    Section s;
    s.name = j["name"].get<std::string>();
    const std::string ctx = where + ": section '" + s.name + "'";
    TL_CHECK(std::find(std::begin(kSectionNames), std::end(kSectionNames), s.name) !=
                 std::end(kSectionNames),
             ctx, " is unknown (expected params, adam_m, adam_v)");
    for (const auto& o : p.sections) TL_CHECK(o.name != s.name, ctx, " appears twice");
    TL_CHECK(j.contains("dtype") && j["dtype"] == "f32", ctx, ": dtype must be \"f32\"");
    s.numel = json_u64(j, "numel", ctx);
    s.offset = json_u64(j, "offset", ctx);
    s.bytes = json_u64(j, "bytes", ctx);
    uint64_t crc = json_u64(j, "crc32", ctx);
    TL_CHECK(crc <= 0xffffffffu, ctx, ": crc32 is out of range");
    s.crc = uint32_t(crc);
    TL_CHECK(s.numel <= (uint64_t(1) << 60) && s.bytes == s.numel * 4, ctx, ": ", s.bytes,
             " bytes do not hold ", s.numel, " f32 values");
    TL_CHECK(s.offset >= kPrelude + header_len && s.offset % kAlign == 0, ctx, ": bad offset ",
             s.offset);
    TL_CHECK(s.offset <= size && s.bytes <= size - s.offset, where, " is truncated: section '",
             s.name, "' ends at byte ", s.offset + s.bytes, " but the file has ", size);
    read_block_crcs(j, s, ctx);
    p.sections.push_back(std::move(s));
  }
  auto sorted = p.sections;
  std::sort(sorted.begin(), sorted.end(),
            [](const Section& a, const Section& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < sorted.size(); ++i)
    TL_CHECK(sorted[i].offset >= sorted[i - 1].offset + sorted[i - 1].bytes, where, ": sections '",
             sorted[i - 1].name, "' and '", sorted[i].name, "' overlap");
  return p;
}

const Section* find_section(const Parsed& p, const char* name) {
  for (const auto& s : p.sections)
    if (s.name == name) return &s;
  return nullptr;
}

std::vector<float> read_section(std::FILE* f, const Section& s, const std::string& path) {
  std::vector<float> out(s.numel);
  TL_CHECK(::fseeko(f, off_t(s.offset), SEEK_SET) == 0, "checkpoint '", path,
           "': cannot seek to section '", s.name, "'");
  auto* dst = reinterpret_cast<uint8_t*>(out.data());
  uint32_t crc = 0;
  for (uint64_t done = 0; done < s.bytes;) {
    size_t n = size_t(std::min<uint64_t>(kPiece, s.bytes - done));
    TL_CHECK(std::fread(dst + done, 1, n, f) == n, "checkpoint '", path,
             "' is truncated inside section '", s.name, "'");
    crc = crc32_update(crc, dst + done, n);
    done += n;
  }
  TL_CHECK(crc == s.crc, "checkpoint '", path, "': section '", s.name,
           "' fails its CRC-32 check (stored ", s.crc, ", computed ", crc,
           "): the file is corrupt");
  return out;
}

// Reads the blocks of section s that hold `ranges` (values, sorted by src, inside the
// section) and copies the ranges into dst; each block read is checked against its CRC-32.
// A section without block CRCs is one block (read whole, checked with the section's CRC).
// Blocks are streamed in kPiece pieces, so a whole-section block needs no buffer of its size.
// Returns the bytes read.
uint64_t read_section_ranges(std::FILE* f, const Section& s, const std::string& path,
                             const std::vector<ValueRange>& ranges, float* dst) {
  const bool blocked = s.block_bytes > 0;
  const uint64_t unit = blocked ? s.block_bytes : std::max<uint64_t>(s.bytes, 1);
  const auto crc_of = [&](uint64_t u) { return blocked ? s.block[u] : s.crc; };
  // The blocks to read, as runs [first, last] of consecutive blocks.
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (const ValueRange& r : ranges) {
    if (r.len == 0) continue;
    const uint64_t first = r.src * 4 / unit, last = ((r.src + r.len) * 4 - 1) / unit;
    if (!runs.empty() && first <= runs.back().second + 1)
      runs.back().second = std::max(runs.back().second, last);
    else
      runs.emplace_back(first, last);
  }
  std::vector<uint8_t> buf(size_t(std::min<uint64_t>(kPiece, unit)));
  uint64_t bytes = 0;
  size_t next = 0;  // the first range that may still overlap what is read next
  for (const auto& [first, last] : runs) {
    TL_CHECK(::fseeko(f, off_t(s.offset + first * unit), SEEK_SET) == 0, "checkpoint '", path,
             "': cannot seek in section '", s.name, "'");
    for (uint64_t u = first; u <= last; ++u) {
      const uint64_t begin = u * unit, end = std::min(begin + unit, s.bytes);
      uint32_t crc = 0;
      for (uint64_t at = begin; at < end;) {  // bytes [at, at + n) of the section
        const size_t n = size_t(std::min<uint64_t>(buf.size(), end - at));
        TL_CHECK(std::fread(buf.data(), 1, n, f) == n, "checkpoint '", path,
                 "' is truncated inside section '", s.name, "'");
        crc = crc32_update(crc, buf.data(), n);
        while (next < ranges.size() && (ranges[next].src + ranges[next].len) * 4 <= at) ++next;
        for (size_t i = next; i < ranges.size() && ranges[i].src * 4 < at + n; ++i) {
          const uint64_t lo = std::max(ranges[i].src * 4, at);
          const uint64_t hi = std::min((ranges[i].src + ranges[i].len) * 4, at + n);
          if (hi > lo)
            std::memcpy(reinterpret_cast<uint8_t*>(dst + ranges[i].dst) + (lo - ranges[i].src * 4),
                        buf.data() + (lo - at), size_t(hi - lo));
        }
        at += n;
        bytes += n;
      }
      TL_CHECK(crc == crc_of(u), "checkpoint '", path, "': section '", s.name, "' fails ",
               blocked ? cat("the CRC-32 check of its block ", u, " (bytes ", begin, "-", end, ")")
                       : std::string("its CRC-32 check"),
               " (stored ", crc_of(u), ", computed ", crc, "): the file is corrupt");
    }
  }
  return bytes;
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointData& data,
                     const std::function<void()>& before_commit) {
  TL_CHECK(!data.params.empty(), "save_checkpoint '", path, "': no parameters");
  TL_CHECK(data.adam_m.size() == data.adam_v.size() &&
               (data.adam_m.empty() || data.adam_m.size() == data.params.size()),
           "save_checkpoint '", path, "': adam_m (", data.adam_m.size(), ") and adam_v (",
           data.adam_v.size(), ") must both be empty or match params (", data.params.size(), ")");
  std::vector<const std::vector<float>*> src = {&data.params};
  if (!data.adam_m.empty()) src.insert(src.end(), {&data.adam_m, &data.adam_v});
  std::vector<Section> sections;
  for (size_t i = 0; i < src.size(); ++i)
    sections.push_back({kSectionNames[i], src[i]->size(), 0, src[i]->size() * 4, 0, 0, {}});
  const uint64_t reserved = plan_layout(data.meta, sections);

  write_file_atomic(path, [&](std::FILE* f) {
    auto header = [&] {
      std::string text = header_text(data.meta, sections);
      text.resize(reserved, ' ');  // same length as planned: the offsets stay valid
      return text;
    };
    auto prelude_and_header = [&] {
      std::string text = header();
      const uint32_t crc = crc32_update(0, text.data(), text.size());
      uint8_t pre[kPrelude] = {};
      std::memcpy(pre, kMagic, 8);
      std::memcpy(pre + 8, &kCheckpointVersion, 4);
      std::memcpy(pre + 12, &crc, 4);
      std::memcpy(pre + 16, &reserved, 8);
      write_all(f, pre, kPrelude, path);
      write_all(f, text.data(), reserved, path);
    };
    prelude_and_header();  // placeholder CRCs, rewritten below
    uint64_t at = kPrelude + reserved;
    static const uint8_t zeros[kAlign] = {};
    for (size_t i = 0; i < sections.size(); ++i) {
      Section& s = sections[i];
      write_all(f, zeros, s.offset - at, path);
      const auto* p = reinterpret_cast<const uint8_t*>(src[i]->data());
      s.crc = 0;
      for (uint64_t done = 0; done < s.bytes;) {
        size_t n = size_t(std::min<uint64_t>(kPiece, s.bytes - done));
        for (uint64_t b = 0; b < n; b += kBlockBytes) {  // pieces hold whole blocks
          const uint64_t len = std::min<uint64_t>(kBlockBytes, n - b);
          const uint32_t crc = crc32_update(0, p + done + b, len);
          s.block[(done + b) / kBlockBytes] = crc;
          s.crc = crc32_combine(s.crc, crc, len);
        }
        write_all(f, p + done, n, path);
        done += n;
      }
      at = s.offset + s.bytes;
    }
    TL_CHECK(::fseeko(f, 0, SEEK_SET) == 0, "cannot seek in '", path, "'");
    prelude_and_header();
    if (before_commit) before_commit();
  });
}

namespace {
struct Sections {
  const Section *params, *m, *v;
};
// The sections a checkpoint must have: params, and adam_m with adam_v of its size or neither.
Sections required_sections(const Parsed& p, const std::string& path) {
  const Section* params = find_section(p, "params");
  const Section* m = find_section(p, "adam_m");
  const Section* v = find_section(p, "adam_v");
  TL_CHECK(params, "checkpoint '", path, "' has no params section");
  TL_CHECK(!m == !v, "checkpoint '", path, "' has only one of adam_m and adam_v");
  TL_CHECK(!m || (m->numel == params->numel && v->numel == params->numel), "checkpoint '", path,
           "': optimizer state sizes (", m ? m->numel : 0, ", ", v ? v->numel : 0,
           ") do not match params (", params->numel, ")");
  return {params, m, v};
}
}  // namespace

CheckpointData load_checkpoint(const std::string& path, bool with_optimizer) {
  File f = open_read(path);
  Parsed p = read_header(f.get(), path);
  const auto [params, m, v] = required_sections(p, path);
  CheckpointData out;
  out.meta = std::move(p.meta);
  out.params = read_section(f.get(), *params, path);
  if (with_optimizer && m) {
    out.adam_m = read_section(f.get(), *m, path);
    out.adam_v = read_section(f.get(), *v, path);
  }
  return out;
}

json read_checkpoint_meta(const std::string& path) {
  File f = open_read(path);
  return read_header(f.get(), path).meta;
}

uint64_t read_checkpoint_ranges(const std::string& path, std::vector<ValueRange> ranges,
                                CheckpointData& out) {
  File f = open_read(path);
  Parsed p = read_header(f.get(), path);
  const auto [params, m, v] = required_sections(p, path);
  TL_CHECK(m, "checkpoint '", path, "' holds no optimizer state (sections adam_m, adam_v)");
  std::sort(ranges.begin(), ranges.end(),
            [](const ValueRange& a, const ValueRange& b) { return a.src < b.src; });
  for (const ValueRange& r : ranges) {  // the caller's arithmetic, checked before any copy
    TL_CHECK(r.src <= params->numel && r.len <= params->numel - r.src, "checkpoint '", path,
             "': values ", r.src, "-", r.src + r.len, " are asked of a section of ", params->numel);
    for (const auto* o : {&out.params, &out.adam_m, &out.adam_v})
      TL_ASSERT(r.dst <= o->size() && r.len <= o->size() - r.dst);
  }
  uint64_t bytes = p.bytes;
  bytes += read_section_ranges(f.get(), *params, path, ranges, out.params.data());
  bytes += read_section_ranges(f.get(), *m, path, ranges, out.adam_m.data());
  bytes += read_section_ranges(f.get(), *v, path, ranges, out.adam_v.data());
  out.meta = std::move(p.meta);
  return bytes;
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  File f = open_read(path);
  Parsed p = read_header(f.get(), path);
  const Sections s = required_sections(p, path);
  return {std::move(p.meta), s.params->numel, s.m != nullptr, p.bytes};
}

}  // namespace tl
