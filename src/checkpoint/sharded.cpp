#include "checkpoint/sharded.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <utility>

#include "core/fs.h"
#include "core/hash.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMetaFile = "meta.json";
constexpr const char* kFormat = "tinyllama-sharded";

std::string shard_file_name(int rank, int world) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "shard_%05d_of_%05d.tlck", rank, world);
  return buf;
}

uint32_t data_crc(const CheckpointData& d) {
  uint32_t crc = 0;
  for (const auto* v : {&d.params, &d.adam_m, &d.adam_v})
    crc = crc32_update(crc, v->data(), v->size() * sizeof(float));
  return crc;
}

constexpr int64_t kMaxShards = int64_t(1) << 20;

// Typed fields of meta.json or of a shard's header meta: every error names the file and
// the field ("shards[2].crc32"), never a bare JSON exception.
class Fields {
 public:
  Fields(const json& obj, const std::string& file, std::string at)
      : obj_(obj), file_(file), at_(std::move(at)) {
    TL_CHECK(obj.is_object(), "'", file, "': ", at_.empty() ? "its meta" : "field '" + at_ + "'",
             " must be a JSON object");
  }
  std::string name(const char* key) const { return at_.empty() ? key : at_ + "." + key; }
  const json& get(const char* key) const {
    TL_CHECK(obj_.contains(key), "'", file_, "': field '", name(key), "' is missing");
    return obj_[key];
  }
  const json& object(const char* key) const {
    const json& v = get(key);
    TL_CHECK(v.is_object(), "'", file_, "': field '", name(key), "' must be an object");
    return v;
  }
  const json& array(const char* key) const {
    const json& v = get(key);
    TL_CHECK(v.is_array(), "'", file_, "': field '", name(key), "' must be a list");
    return v;
  }
  std::string string(const char* key) const {
    const json& v = get(key);
    TL_CHECK(v.is_string(), "'", file_, "': field '", name(key), "' must be a string, not ",
             v.dump());
    return v.get<std::string>();
  }
  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    const json& v = get(key);
    const bool ok = v.is_number_integer() &&
                    !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi)) &&
                    v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    TL_CHECK(ok, "'", file_, "': field '", name(key), "' must be an integer in [", lo, ", ", hi,
             "], not ", v.dump());
    return v.get<int64_t>();
  }

 private:
  const json& obj_;
  const std::string& file_;
  std::string at_;
};

// meta.json, checked field by field before any shard is opened.
struct SetIndex {
  std::string path;  // of meta.json
  json top;
  int shard_world = 0;
  ModelConfig model;  // meta.model: the model the set holds
  struct Entry {
    std::string path;
    uint64_t bytes = 0;
    uint32_t crc = 0;
  };
  std::vector<Entry> shards;
};

SetIndex read_index(const std::string& dir) {
  SetIndex idx;
  idx.path = dir + "/" + kMetaFile;
  const std::string& path = idx.path;
  TL_CHECK(file_exists(path), "'", dir, "' is not a complete sharded checkpoint: it has no ",
           kMetaFile, " (the save did not finish)");
  idx.top = read_json_file(path);
  const json& m = idx.top;
  TL_CHECK(m.is_object() && m.contains("format") && m["format"] == kFormat, "'", path,
           "' is not a tinyllama sharded checkpoint index (field 'format' is not \"", kFormat,
           "\")");
  Fields top(m, path, "");
  const int64_t version = top.integer("version", 1, INT32_MAX);
  TL_CHECK(version == 1, "'", path, "': field 'version' is ", version,
           ": written by a newer tinyllama (this build reads version 1)");
  idx.shard_world = int(top.integer("shard_world", 1, kMaxShards));
  const json& shards = top.array("shards");
  TL_CHECK(shards.size() == size_t(idx.shard_world), "'", path, "' lists ", shards.size(),
           " shards but says the set has ", idx.shard_world, " (field 'shard_world')");
  const json& model = Fields(top.object("meta"), path, "meta").object("model");
  try {
    idx.model = ModelConfig::from_json(model, "meta.model");
  } catch (const std::exception& e) {
    fail("'", path, "': ", e.what());
  }
  for (size_t i = 0; i < shards.size(); ++i) {
    Fields s(shards[i], path, cat("shards[", i, "]"));
    const std::string file = s.string("file");
    // Shards live in the folder itself: meta.json must not point a reader anywhere else.
    TL_CHECK(is_plain_file_name(file), "'", path, "': field '", s.name("file"), "' is \"", file,
             "\": a shard must be a file of the checkpoint folder itself (no '/', '..' or "
             "absolute path)");
    SetIndex::Entry e;
    e.path = dir + "/" + file;
    e.bytes = uint64_t(s.integer("bytes", 0, INT64_MAX));
    e.crc = uint32_t(s.integer("crc32", 0, 0xffffffffll));
    TL_CHECK(file_exists(e.path), "sharded checkpoint '", dir, "' is incomplete: '", e.path,
             "' is missing");
    TL_CHECK(file_size(e.path) == e.bytes, "sharded checkpoint '", dir, "': '", e.path, "' has ",
             file_size(e.path), " bytes, meta.json says ", e.bytes);
    idx.shards.push_back(std::move(e));
  }
  return idx;
}

// What the shards of a set hold, all checked against meta.json and against each other.
struct SetLayout {
  Sharding sharding;          // the one every shard was written under
  bool has_optimizer;         // every shard holds adam_m and adam_v (or none does)
  uint64_t header_bytes = 0;  // read to check them
};

// Reads every shard's header (not its sections) and checks that it is shard i of this
// set (rank, world, the set's model, alignment, sizes by the sharding arithmetic, CRC in
// meta.json): all before the caller allocates or copies anything, so a shard that
// disagrees is an error naming it, not a write past a buffer or a silently wrong model.
SetLayout check_shards(const SetIndex& idx) {
  std::optional<SetLayout> set;
  int64_t align0 = 0;
  uint64_t header_bytes = 0;
  for (size_t i = 0; i < idx.shards.size(); ++i) {
    const std::string& path = idx.shards[i].path;
    const CheckpointInfo info = read_checkpoint_info(path);  // header CRC-checked
    header_bytes += info.header_bytes;
    Fields f(info.meta, path, "");
    const int64_t rank = f.integer("shard_rank", 0, kMaxShards - 1);
    const int64_t world = f.integer("shard_world", 1, kMaxShards);
    TL_CHECK(rank == int64_t(i) && world == idx.shard_world, "'", path, "' is not shard ", i,
             " of ", idx.shard_world, " (its fields 'shard_rank' and 'shard_world' say ", rank,
             " of ", world, ")");
    TL_CHECK(uint32_t(f.integer("data_crc32", 0, 0xffffffffll)) == idx.shards[i].crc, "'", path,
             "' was written by another save than its folder's meta.json (CRC-32 differs): the "
             "set is mixed, not a checkpoint");
    TL_CHECK(f.object("model") == idx.top["meta"]["model"], "'", path, "': field 'model' (",
             info.meta["model"].dump(), ") is not the model of '", idx.path, "' (meta.model ",
             idx.top["meta"]["model"].dump(), ")");
    const int64_t align = f.integer("align", 1, int64_t(1) << 20);
    if (!set) {
      align0 = align;
      set.emplace(
          SetLayout{Sharding(ParamLayout(idx.model), idx.shard_world, align), info.has_optimizer});
    }
    const Sharding& sh = set->sharding;
    TL_CHECK(align == align0, "'", path, "': field 'align' is ", align, ", shard 0 says ", align0);
    TL_CHECK(f.integer("flat_total", 0, INT64_MAX) == sh.flat_total(), "'", path,
             "': field 'flat_total' is ", info.meta["flat_total"], " but the model of '", idx.path,
             "' has ", sh.flat_total(), " parameters");
    TL_CHECK(f.integer("shard_total", 0, INT64_MAX) == sh.shard_total(), "'", path,
             "': field 'shard_total' is ", info.meta["shard_total"], " but shard ", i, " of ",
             idx.shard_world, " of this model holds ", sh.shard_total(), " values");
    TL_CHECK(info.params == uint64_t(sh.shard_total()), "'", path, "': section 'params' holds ",
             info.params, " values but shard ", i, " of ", idx.shard_world, " of this model holds ",
             sh.shard_total());
    TL_CHECK(info.has_optimizer == set->has_optimizer, "'", path, "' ",
             info.has_optimizer ? "holds" : "lacks",
             " the optimizer state (sections 'adam_m', "
             "'adam_v') that shard 0 ",
             set->has_optimizer ? "holds" : "lacks");
  }
  TL_ASSERT(set.has_value());  // shard_world >= 1
  set->header_bytes = header_bytes;
  return std::move(*set);
}

// Loads shard i, checked by check_shards; the sizes are checked again against the data
// read (the file may have been replaced since).
CheckpointData load_shard(const SetIndex& idx, const SetLayout& set, size_t i, bool with_opt) {
  const std::string& path = idx.shards[i].path;
  CheckpointData d = load_checkpoint(path, with_opt);  // checks each section's CRC
  const size_t n = size_t(set.sharding.shard_total());
  TL_CHECK(d.params.size() == n &&
               (!with_opt || !set.has_optimizer || (d.adam_m.size() == n && d.adam_v.size() == n)),
           "'", path, "' changed while it was being read");
  return d;
}

}  // namespace

bool is_sharded_checkpoint(const std::string& path) {
  return is_directory(path) && file_exists(path + "/" + kMetaFile);
}

void write_shard(const std::string& dir, const Sharding& sh, const ShardHeader& h, CheckpointData d,
                 const std::function<void()>& before_commit) {
  d.meta = json{{"format", "tinyllama-shard"},   {"shard_rank", h.shard_rank},
                {"shard_world", h.shard_world},  {"align", sh.align()},
                {"flat_total", sh.flat_total()}, {"shard_total", sh.shard_total()},
                {"strategy", h.strategy},        {"model", h.model},
                {"data_crc32", data_crc(d)}};
  make_dirs(dir);
  save_checkpoint(dir + "/" + shard_file_name(h.shard_rank, h.shard_world), d, before_commit);
}

void begin_sharded_save(const std::string& dir) {
  make_dirs(dir);
  std::error_code ec;
  fs::remove(dir + "/" + kMetaFile, ec);
}

void write_sharded_index(const std::string& dir, int world, int shard_world,
                         const std::string& strategy, const json& meta) {
  json shards = json::array();
  for (int r = 0; r < shard_world; ++r) {
    const std::string file = shard_file_name(r, shard_world), path = dir + "/" + file;
    json m = read_checkpoint_meta(path);
    shards.push_back({{"file", file}, {"bytes", file_size(path)}, {"crc32", m.at("data_crc32")}});
  }
  json top = {
      {"format", kFormat},    {"version", 1},     {"world", world}, {"shard_world", shard_world},
      {"strategy", strategy}, {"shards", shards}, {"meta", meta}};
  write_file_atomic(dir + "/" + kMetaFile, top.dump(1) + "\n");
}

json read_sharded_meta(const std::string& dir) { return read_index(dir).top; }

ShardedReadStats read_sharded_checkpoint(const std::string& dir, const Sharding& to, int me,
                                         CheckpointData& mine) {
  const SetIndex idx = read_index(dir);
  const SetLayout set = check_shards(idx);
  const Sharding& from = set.sharding;
  TL_CHECK(from.flat_total() == to.flat_total(), "'", dir, "' holds a model of ", from.flat_total(),
           " parameters; this run's has ", to.flat_total());
  TL_CHECK(set.has_optimizer, "'", dir, "': its shards hold no optimizer state");
  TL_CHECK(me >= 0 && me < to.world(), "read_sharded_checkpoint: rank ", me, " is outside [0, ",
           to.world(), ")");
  for (auto* v : {&mine.params, &mine.adam_m, &mine.adam_v})
    v->assign(size_t(to.shard_total()), 0.0f);
  ShardedReadStats st;
  st.bytes_read = set.header_bytes;
  st.share_bytes = 3 * uint64_t(to.shard_total()) * sizeof(float);
  for (size_t i = 0; i < idx.shards.size(); ++i) {
    st.set_bytes += idx.shards[i].bytes;
    std::vector<ValueRange> ranges;
    for (const ReshardRun& r : reshard_runs(from, int(i), to, me))
      ranges.push_back({uint64_t(r.src), uint64_t(r.dst), uint64_t(r.len)});
    if (ranges.empty()) continue;  // this rank's slice has nothing of shard i
    const uint64_t n = read_checkpoint_ranges(idx.shards[i].path, std::move(ranges), mine);
    // (mine.meta is now shard i's header meta)
    TL_CHECK(mine.meta.value("data_crc32", json()) == json(idx.shards[i].crc), "'",
             idx.shards[i].path, "' changed while it was being read");
    st.bytes_read += n;
    st.shards_read++;
  }
  mine.meta = idx.top["meta"];
  return st;
}

CheckpointData load_sharded_as_full(const std::string& dir, bool with_optimizer) {
  const SetIndex idx = read_index(dir);
  const SetLayout set = check_shards(idx);
  const bool with_opt = with_optimizer && set.has_optimizer;  // else empty, as for a file
  CheckpointData out;
  out.meta = idx.top["meta"];
  out.params.assign(size_t(set.sharding.flat_total()), 0.0f);
  if (with_opt) out.adam_m = out.adam_v = out.params;
  for (size_t i = 0; i < idx.shards.size(); ++i) {
    CheckpointData d = load_shard(idx, set, i, with_opt);
    insert_shard(set.sharding, int(i), d.params.data(), out.params.data());
    if (with_opt) {
      insert_shard(set.sharding, int(i), d.adam_m.data(), out.adam_m.data());
      insert_shard(set.sharding, int(i), d.adam_v.data(), out.adam_v.data());
    }
  }
  return out;
}

void remove_sharded_checkpoint(const std::string& dir) {
  std::error_code ec;
  fs::remove(dir + "/" + kMetaFile, ec);  // first: a half-removed set is no checkpoint
  TL_CHECK(!ec, "cannot delete '", dir, "/", kMetaFile, "': ", ec.message());
  fs::remove_all(dir, ec);
  TL_CHECK(!ec, "cannot delete '", dir, "': ", ec.message());
}

}  // namespace tl
