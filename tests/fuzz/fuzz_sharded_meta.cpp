// meta.json of a sharded checkpoint folder (checkpoint/sharded.cpp), read next to one
// valid shard file that the target writes at start: the index checks, then loading the set
// as a full model and as one rank's shard.
// TL_FUZZ_DUMP_SEED=FILE writes the meta.json that matches that shard (a corpus seed).
#include <cstdlib>
#include <fstream>

#include "checkpoint/checkpoint.h"
#include "checkpoint/sharded.h"
#include "core/hash.h"
#include "fuzz_util.h"
#include "model/param_layout.h"
#include "model/sharding.h"

namespace {

tl::ModelConfig tiny_config() {
  tl::ModelConfig c;
  c.vocab_size = 16;
  c.dim = 8;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.ffn_dim = 8;
  c.max_seq_len = 8;
  return c;
}

// The folder with its shard; returns the meta.json that describes it.
std::string make_set(const std::string& dir) {
  const tl::ModelConfig cfg = tiny_config();
  const tl::Sharding sh(tl::ParamLayout(cfg), 1);
  tl::CheckpointData d;
  d.params.assign(size_t(sh.shard_total()), 0.5f);
  d.adam_m.assign(d.params.size(), 0.25f);
  d.adam_v.assign(d.params.size(), 0.125f);
  uint32_t crc = 0;
  for (const auto* v : {&d.params, &d.adam_m, &d.adam_v})
    crc = tl::crc32_update(crc, v->data(), v->size() * sizeof(float));
  d.meta = tl::json{{"format", "tinyllama-shard"},
                    {"shard_rank", 0},
                    {"shard_world", 1},
                    {"align", tl::kParamAlign},
                    {"flat_total", sh.flat_total()},
                    {"shard_total", sh.shard_total()},
                    {"strategy", "full"},
                    {"model", cfg.to_json()},
                    {"data_crc32", crc}};
  const std::string file = "shard_00000_of_00001.tlck";
  std::filesystem::create_directories(dir);
  tl::save_checkpoint(dir + "/" + file, d);
  const tl::json meta = {
      {"format", "tinyllama-sharded"},
      {"version", 1},
      {"world", 1},
      {"shard_world", 1},
      {"strategy", "full"},
      {"shards",
       {{{"file", file}, {"bytes", std::filesystem::file_size(dir + "/" + file)}, {"crc32", crc}}}},
      {"meta", {{"model", cfg.to_json()}, {"step", 1}}}};
  return meta.dump(1) + "\n";
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string meta = make_set(tlfuzz::scratch("ckpt"));
  if (const char* out = std::getenv("TL_FUZZ_DUMP_SEED")) tlfuzz::write_file(out, meta);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = tlfuzz::scratch("ckpt");
  tlfuzz::write_file(dir + "/meta.json", data, size);
  tlfuzz::run([&] { (void)tl::is_sharded_checkpoint(dir); });
  tlfuzz::run([&] { (void)tl::read_sharded_meta(dir); });
  tlfuzz::run([&] { (void)tl::load_sharded_as_full(dir, true); });
  tlfuzz::run([&] {
    tl::CheckpointData mine;
    tl::read_sharded_checkpoint(dir, tl::Sharding(tl::ParamLayout(tiny_config()), 1), 0, mine);
  });
  return 0;
}
