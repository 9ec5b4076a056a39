#include "parallel/dist_config.h"

#include "parallel/fsdp.h"

namespace tl {

DistConfig DistConfig::from_json(const json& j, const std::string& path) {
  JsonReader r(j, path);
  DistConfig c;
  r.get("strategy", c.strategy);
  r.get("timeout_seconds", c.timeout_seconds);
  r.get("hybrid_group_size", c.hybrid_group_size);
  r.get("reduce_dtype", c.reduce_dtype);
  r.get("all_gather", c.all_gather);
  r.finish();
  c.validate();
  return c;
}

void DistConfig::validate() const {
  if (!strategy.empty()) strategy_from_name(strategy);  // throws listing the names
  TL_CHECK(timeout_seconds > 0, "config: dist.timeout_seconds must be positive, got ",
           timeout_seconds);
  TL_CHECK(hybrid_group_size >= 0, "config: dist.hybrid_group_size must not be negative");
  TL_CHECK(reduce_dtype == "f32" || reduce_dtype == "bf16",
           "config: dist.reduce_dtype must be \"f32\" or \"bf16\", got \"", reduce_dtype, "\"");
  TL_CHECK(reduce_dtype == "f32" || strategy != "no_shard",
           "config: dist.reduce_dtype \"bf16\" reduces a sharded gradient; no_shard all-reduces "
           "its whole gradient in f32 (use shard_grad_op for ZeRO-2 with bf16 reduction)");
  TL_CHECK(all_gather == "kernels" || all_gather == "copy_engines",
           "config: dist.all_gather must be \"kernels\" or \"copy_engines\", got \"", all_gather,
           "\"");
}

}  // namespace tl
