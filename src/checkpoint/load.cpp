#include "checkpoint/load.h"

#include "checkpoint/sharded.h"
#include "core/fs.h"

namespace tl {

CheckpointData load_any_checkpoint(const std::string& path, bool with_optimizer) {
  if (is_directory(path)) return load_sharded_as_full(path, with_optimizer);
  return load_checkpoint(path, with_optimizer);
}

json read_any_checkpoint_meta(const std::string& path) {
  return is_directory(path) ? read_sharded_meta(path).at("meta") : read_checkpoint_meta(path);
}

LoadedModel load_model(const std::string& checkpoint, Backend& be) {
  CheckpointData ck = load_any_checkpoint(checkpoint, /*with_optimizer=*/false);
  TL_CHECK(ck.meta.contains("model"), "'", checkpoint, "' has no model config in its header");
  ModelConfig cfg = ModelConfig::from_json(ck.meta["model"]);
  LoadedModel out;
  out.model = std::make_unique<LlamaModel>(cfg, be);
  TL_CHECK(int64_t(ck.params.size()) == out.model->layout().total(), "'", checkpoint, "' holds ",
           ck.params.size(), " parameters, but its model config needs ",
           out.model->layout().total());
  out.model->set_params(ck.params);
  out.meta = std::move(ck.meta);
  return out;
}

}  // namespace tl
