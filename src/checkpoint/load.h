// Building a model from a native checkpoint (weights only).
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/json_reader.h"
#include "model/llama.h"

namespace tl {

struct LoadedModel {
  std::unique_ptr<LlamaModel> model;
  json meta;  // the checkpoint's header meta
};

LoadedModel load_model(const std::string& checkpoint, Backend& be);

}  // namespace tl
