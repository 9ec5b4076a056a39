// Reading a checkpoint as one model, whatever wrote it: a native file (checkpoint.h) or a
// sharded run's step folder (sharded.h, gathered into the full flat arrays). What export,
// eval, generate, logits and --init-from read; no communicator is involved.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "checkpoint/checkpoint.h"
#include "core/json_reader.h"
#include "model/llama.h"

namespace tl {

// A native checkpoint file or a sharded folder, as one model (adam_m/adam_v only
// with_optimizer, and only when it holds them).
CheckpointData load_any_checkpoint(const std::string& path, bool with_optimizer);
// Its training meta alone (the header of a file, meta.json's "meta" of a folder): cheap.
json read_any_checkpoint_meta(const std::string& path);

struct LoadedModel {
  std::unique_ptr<LlamaModel> model;
  json meta;  // the checkpoint's header meta
};
// The weights of `checkpoint` in a model built from its own meta.model, on `be`.
LoadedModel load_model(const std::string& checkpoint, Backend& be);

}  // namespace tl
