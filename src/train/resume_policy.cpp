#include "train/resume_policy.h"

#include <algorithm>
#include <set>

namespace tl {

void check_same_model(const json& saved_model, const ModelConfig& now, const std::string& path) {
  const ArchitectureDifference d =
      architecture_difference(ModelConfig::from_json(saved_model), now);
  TL_CHECK(d.none(), "cannot resume from '", path, "': model.", d.key, " is ", d.a, " there but ",
           d.b, " in this config");
}

namespace {

bool is_routine(const std::string& key) {
  static const std::set<std::string> keys = {
      "base_dir",      "train.steps",        "train.device",        "train.threads",
      "train.run_dir", "train.log_interval", "train.max_bad_steps", "train.spike_threshold",
      "optim.lr",      "optim.min_lr",       "optim.warmup_steps",  "optim.decay_steps",
      "data.val",      "data.tokenizer"};
  return keys.count(key) || key.rfind("eval.", 0) == 0 || key.rfind("checkpoint.", 0) == 0 ||
         key.rfind("model.", 0) == 0 ||  // model keys reach here only when the shape matched
         key.rfind("dist.", 0) == 0;     // how the ranks split the work, not what they compute
}

void diff(const json& a, const json& b, const std::string& prefix, std::vector<ConfigChange>& out) {
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
    for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
    for (const auto& k : keys) {
      const std::string key = prefix.empty() ? k : prefix + "." + k;
      diff(a.contains(k) ? a[k] : json(), b.contains(k) ? b[k] : json(), key, out);
    }
    return;
  }
  if (a == b) return;
  out.push_back({prefix, a.is_null() ? "(unset)" : a.dump(), b.is_null() ? "(unset)" : b.dump(),
                 is_routine(prefix)});
}

}  // namespace

std::vector<ConfigChange> config_changes(const json& before, const json& after) {
  std::vector<ConfigChange> out;
  diff(before, after, "", out);
  return out;
}

}  // namespace tl
