#include "dist/sharded_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/fs.h"
#include "core/hash.h"
#include "core/log.h"

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

// The sharding a shard file was written under, rebuilt from its meta.
Sharding sharding_of(const json& shard_meta) {
  ModelConfig cfg = ModelConfig::from_json(shard_meta.at("model"), "model");
  return Sharding(ParamLayout(cfg), shard_meta.at("shard_world").get<int>(),
                  shard_meta.at("align").get<int64_t>());
}

// Loads shard `i` of the set described by meta.json, checking it belongs to that set.
CheckpointData load_shard(const std::string& dir, const json& meta, size_t i, bool with_opt) {
  const json& entry = meta.at("shards").at(i);
  const std::string path = dir + "/" + entry.at("file").get<std::string>();
  CheckpointData d = load_checkpoint(path, with_opt);  // checks each section's CRC
  TL_CHECK(d.meta.value("shard_rank", -1) == int(i) &&
               d.meta.value("shard_world", -1) == meta.at("shard_world").get<int>(),
           "'", path, "' is not shard ", i, " of ", meta.at("shard_world"), " (its meta says ",
           d.meta.value("shard_rank", -1), " of ", d.meta.value("shard_world", -1), ")");
  TL_CHECK(d.meta.value("data_crc32", uint32_t(0)) == entry.at("crc32").get<uint32_t>(), "'", path,
           "' was written by another save than its folder's meta.json (CRC-32 differs): the set "
           "is mixed, not a checkpoint");
  return d;
}

}  // namespace

std::string sharded_checkpoint_name(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

bool is_sharded_checkpoint(const std::string& path) {
  return is_directory(path) && file_exists(path + "/" + kMetaFile);
}

void save_sharded_checkpoint(const std::string& dir, const json& meta, Fsdp& fsdp,
                             Communicator& world, const std::function<void()>& before_commit) {
  const Sharding& sh = fsdp.sharding();
  const int G = sh.world();
  // The first G ranks are replica 0 (make_fsdp_groups numbers groups node by node).
  const bool writer = world.rank() < G;
  if (world.rank() == 0) {
    make_dirs(dir);
    std::error_code ec;
    fs::remove(dir + "/" + kMetaFile, ec);
  }
  world.barrier();
  if (writer) {
    CheckpointData d;
    fsdp.get_shard_state(d.params, d.adam_m, d.adam_v);
    d.meta = json{{"format", "tinyllama-shard"},
                  {"shard_rank", fsdp.shard_rank()},
                  {"shard_world", G},
                  {"align", kParamAlign},
                  {"flat_total", sh.flat_total()},
                  {"shard_total", sh.shard_total()},
                  {"strategy", strategy_name(fsdp.strategy())},
                  {"model", meta.at("model")},
                  {"data_crc32", data_crc(d)}};
    make_dirs(dir);
    save_checkpoint(dir + "/" + shard_file_name(fsdp.shard_rank(), G), d, before_commit);
  }
  world.barrier();
  if (world.rank() == 0) {
    json shards = json::array();
    for (int r = 0; r < G; ++r) {
      const std::string file = shard_file_name(r, G), path = dir + "/" + file;
      json m = read_checkpoint_meta(path);
      shards.push_back({{"file", file}, {"bytes", file_size(path)}, {"crc32", m.at("data_crc32")}});
    }
    json top = {{"format", kFormat}, {"version", 1}, {"world", world.world()},
                {"shard_world", G},  {"strategy", strategy_name(fsdp.strategy())},
                {"shards", shards},  {"meta", meta}};
    write_file_atomic(dir + "/" + kMetaFile, top.dump(1) + "\n");
  }
  world.barrier();  // nobody moves on (or prunes) before the set is complete
}

json read_sharded_meta(const std::string& dir) {
  const std::string path = dir + "/" + kMetaFile;
  TL_CHECK(file_exists(path), "'", dir, "' is not a complete sharded checkpoint: it has no ",
           kMetaFile, " (the save did not finish)");
  json m = read_json_file(path);
  TL_CHECK(m.is_object() && m.value("format", "") == kFormat && m.contains("shards") &&
               m.contains("meta") && m.contains("shard_world"),
           "'", path, "' is not a tinyllama sharded checkpoint index");
  TL_CHECK(m["shards"].size() == m["shard_world"].get<size_t>(), "'", path, "' lists ",
           m["shards"].size(), " shards but says the set has ", m["shard_world"]);
  for (const auto& s : m["shards"]) {
    const std::string f = dir + "/" + s.at("file").get<std::string>();
    TL_CHECK(file_exists(f), "sharded checkpoint '", dir, "' is incomplete: '", f, "' is missing");
    TL_CHECK(file_size(f) == s.at("bytes").get<uint64_t>(), "sharded checkpoint '", dir,
             "': '", f, "' has ", file_size(f), " bytes, meta.json says ", s.at("bytes"));
  }
  return m;
}

void read_sharded_checkpoint(const std::string& dir, const Sharding& to, int me,
                             CheckpointData& mine) {
  json meta = read_sharded_meta(dir);
  for (auto* v : {&mine.params, &mine.adam_m, &mine.adam_v}) v->assign(size_t(to.shard_total()), 0.0f);
  const size_t n = meta["shards"].size();
  for (size_t i = 0; i < n; ++i) {
    CheckpointData d = load_shard(dir, meta, i, true);
    TL_CHECK(!d.adam_m.empty(), "'", dir, "': shard ", i, " holds no optimizer state");
    Sharding from = sharding_of(d.meta);
    TL_CHECK(from.flat_total() == to.flat_total(), "'", dir, "' holds a model of ",
             from.flat_total(), " parameters; this run's has ", to.flat_total());
    reshard_copy(from, int(i), d.params.data(), to, me, mine.params.data());
    reshard_copy(from, int(i), d.adam_m.data(), to, me, mine.adam_m.data());
    reshard_copy(from, int(i), d.adam_v.data(), to, me, mine.adam_v.data());
  }
  mine.meta = meta["meta"];
}

json load_sharded_checkpoint(const std::string& dir, Fsdp& fsdp) {
  CheckpointData mine;
  read_sharded_checkpoint(dir, fsdp.sharding(), fsdp.shard_rank(), mine);
  fsdp.set_shard_state(mine.params, mine.adam_m, mine.adam_v);
  return mine.meta;
}

CheckpointData load_sharded_as_full(const std::string& dir, bool with_optimizer) {
  json meta = read_sharded_meta(dir);
  CheckpointData out;
  out.meta = meta["meta"];
  const size_t n = meta["shards"].size();
  for (size_t i = 0; i < n; ++i) {
    CheckpointData d = load_shard(dir, meta, i, with_optimizer);
    Sharding from = sharding_of(d.meta);
    if (i == 0) {
      out.params.assign(size_t(from.flat_total()), 0.0f);
      if (with_optimizer) out.adam_m = out.adam_v = out.params;
    }
    insert_shard(from, int(i), d.params.data(), out.params.data());
    if (with_optimizer) {
      insert_shard(from, int(i), d.adam_m.data(), out.adam_m.data());
      insert_shard(from, int(i), d.adam_v.data(), out.adam_v.data());
    }
  }
  return out;
}

CheckpointData load_any_checkpoint(const std::string& path, bool with_optimizer) {
  if (is_directory(path)) return load_sharded_as_full(path, with_optimizer);
  return load_checkpoint(path, with_optimizer);
}

namespace {
std::vector<std::string> step_folders(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();  // "step_<digits>" only
    std::error_code ec2;
    if (e.is_directory(ec2) && name.size() > 5 && name.rfind("step_", 0) == 0 &&
        name.find_first_not_of("0123456789", 5) == std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::string find_latest_sharded_checkpoint(const std::string& dir) {
  if (!is_directory(dir)) return "";
  const auto folders = step_folders(dir);
  for (auto it = folders.rbegin(); it != folders.rend(); ++it) {
    try {
      read_sharded_meta(*it);
      return *it;
    } catch (const Error& e) {
      log_warn("skipping checkpoint folder: ", e.what());
    }
  }
  return "";
}

void remove_sharded_checkpoint(const std::string& dir) {
  std::error_code ec;
  fs::remove(dir + "/" + kMetaFile, ec);  // first: a half-removed set is no checkpoint
  TL_CHECK(!ec, "cannot delete '", dir, "/", kMetaFile, "': ", ec.message());
  fs::remove_all(dir, ec);
  TL_CHECK(!ec, "cannot delete '", dir, "': ", ec.message());
}

void prune_sharded_checkpoints(const std::string& dir, int keep) {
  const auto folders = step_folders(dir);
  for (size_t i = 0; i + size_t(std::max(keep, 1)) < folders.size(); ++i) {
    try {
      remove_sharded_checkpoint(folders[i]);
    } catch (const Error& e) {
      log_warn(e.what());
    }
  }
}

}  // namespace tl
