// Hand-made sharded checkpoint sets (the layout of checkpoint/sharded.h) and damage
// that no CRC can see: a shard rewritten whole, its own CRCs right, and meta.json updated
// to list it (size, CRC), as a buggy or hostile writer would leave it.
#pragma once
#include <cstdio>
#include <string>

#include "checkpoint/checkpoint.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/json_reader.h"
#include "model/config.h"
#include "model/sharding.h"

namespace sharded_test {

inline std::string shard_name(int rank, int world) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "shard_%05d_of_%05d.tlck", rank, world);
  return buf;
}

inline uint32_t data_crc(const tl::CheckpointData& d) {
  uint32_t crc = 0;
  for (const auto* v : {&d.params, &d.adam_m, &d.adam_v})
    crc = tl::crc32_update(crc, v->data(), v->size() * sizeof(float));
  return crc;
}

inline tl::json read_meta(const std::string& dir) { return tl::read_json_file(dir + "/meta.json"); }
inline void write_meta(const std::string& dir, const tl::json& m) {
  tl::write_file_atomic(dir + "/meta.json", m.dump(1) + "\n");
}

// Writes shard `rank` of the set in dir as d (its data_crc32 set to match) and lists it
// in meta.json with its new size and CRC.
inline void replace_shard(const std::string& dir, int rank, tl::CheckpointData d) {
  tl::json m = read_meta(dir);
  const std::string file = shard_name(rank, m.at("shard_world").get<int>());
  d.meta["data_crc32"] = data_crc(d);
  tl::save_checkpoint(dir + "/" + file, d);
  m["shards"][size_t(rank)]["bytes"] = tl::file_size(dir + "/" + file);
  m["shards"][size_t(rank)]["crc32"] = d.meta["data_crc32"];
  write_meta(dir, m);
}

// Shard `rank` of `world` of a model `cfg` (values i * 1e-3), with its shard meta as
// save_sharded_checkpoint writes it: a well-formed shard of that model.
inline tl::CheckpointData make_shard(const tl::ModelConfig& cfg, int rank, int world) {
  tl::Sharding sh(tl::ParamLayout(cfg), world);
  tl::CheckpointData d;
  d.params.resize(size_t(sh.shard_total()));
  for (size_t i = 0; i < d.params.size(); ++i) d.params[i] = float(i) * 1e-3f;
  d.adam_m = d.adam_v = d.params;
  d.meta = tl::json{{"format", "tinyllama-shard"},   {"shard_rank", rank},
                    {"shard_world", world},          {"align", tl::kParamAlign},
                    {"flat_total", sh.flat_total()}, {"shard_total", sh.shard_total()},
                    {"strategy", "full_shard"},      {"model", cfg.to_json()}};
  return d;
}

// A set of `world` shards holding the full checkpoint `full` (meta.model names its model).
inline void write_sharded_set(const std::string& dir, const tl::CheckpointData& full, int world) {
  const tl::ModelConfig cfg = tl::ModelConfig::from_json(full.meta.at("model"));
  tl::Sharding sh(tl::ParamLayout(cfg), world);
  tl::make_dirs(dir);
  tl::json shards = tl::json::array();
  for (int r = 0; r < world; ++r) {
    tl::CheckpointData d = make_shard(cfg, r, world);
    tl::extract_shard(sh, r, full.params.data(), d.params.data());
    tl::extract_shard(sh, r, full.adam_m.data(), d.adam_m.data());
    tl::extract_shard(sh, r, full.adam_v.data(), d.adam_v.data());
    d.meta["data_crc32"] = data_crc(d);
    const std::string file = shard_name(r, world);
    tl::save_checkpoint(dir + "/" + file, d);
    shards.push_back({{"file", file},
                      {"bytes", tl::file_size(dir + "/" + file)},
                      {"crc32", d.meta["data_crc32"]}});
  }
  write_meta(dir, tl::json{{"format", "tinyllama-sharded"},
                           {"version", 1},
                           {"world", world},
                           {"shard_world", world},
                           {"strategy", "full_shard"},
                           {"shards", shards},
                           {"meta", full.meta}});
}

}  // namespace sharded_test
