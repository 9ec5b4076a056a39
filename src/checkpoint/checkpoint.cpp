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
const char* const kSectionNames[] = {"params", "adam_m", "adam_v"};

uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

struct Section {
  std::string name;
  uint64_t numel = 0, offset = 0, bytes = 0;
  uint32_t crc = 0;
};

std::string header_text(const json& meta, const std::vector<Section>& sections) {
  json list = json::array();
  for (const auto& s : sections)
    list.push_back(json::object({{"name", s.name},
                                 {"dtype", "f32"},
                                 {"numel", s.numel},
                                 {"offset", s.offset},
                                 {"bytes", s.bytes},
                                 {"crc32", s.crc}}));
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
};

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

  Parsed p{h["meta"], {}};
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
    p.sections.push_back(s);
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
    sections.push_back({kSectionNames[i], src[i]->size(), 0, src[i]->size() * 4, 0});
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
        s.crc = crc32_update(s.crc, p + done, n);
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

CheckpointInfo read_checkpoint_info(const std::string& path) {
  File f = open_read(path);
  Parsed p = read_header(f.get(), path);
  const Sections s = required_sections(p, path);
  return {std::move(p.meta), s.params->numel, s.m != nullptr};
}

}  // namespace tl
