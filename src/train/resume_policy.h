// What a resumed run may change. The model must be the checkpoint's network
// (same_architecture, model/config.h); the data order is guarded by TrainLoader::restore
// (seed, seq_len, sources).
// Everything else is accepted and reported: continuing with more steps, other intervals or
// another lr is routine; a different batch or optimizer setting is allowed but flagged,
// since the continued run then differs from the one first planned.
#pragma once
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "model/config.h"

namespace tl {

// Throws naming the first model key that differs, as "cannot resume from 'P': model.dim is
// 32 there but 48 in this config".
void check_same_model(const json& saved_model, const ModelConfig& now, const std::string& path);

struct ConfigChange {
  std::string key;     // dotted: "optim.lr"
  std::string before;  // JSON text, "(unset)" when absent
  std::string after;
  bool routine = false;  // steps, intervals, lr schedule, device, logging
};
// Differences between two resolved config trees (objects recursively, arrays as wholes).
std::vector<ConfigChange> config_changes(const json& before, const json& after);

}  // namespace tl
