#include "parallel/dist_config.h"

#include "parallel/fsdp.h"

namespace tl {

DistConfig DistConfig::from_json(const json& j, const std::string& path) {
  JsonReader r(j, path);
  DistConfig c;
  r.get("strategy", c.strategy);
  r.get("timeout_seconds", c.timeout_seconds);
  r.get("hybrid_group_size", c.hybrid_group_size);
  r.finish();
  c.validate();
  return c;
}

void DistConfig::validate() const {
  if (!strategy.empty()) strategy_from_name(strategy);  // throws listing the names
  TL_CHECK(timeout_seconds > 0, "config: dist.timeout_seconds must be positive, got ",
           timeout_seconds);
  TL_CHECK(hybrid_group_size >= 0, "config: dist.hybrid_group_size must not be negative");
}

}  // namespace tl
