// Hugging Face Llama folder -> flat f32 parameters, every tensor name, shape and dtype checked.
#include <algorithm>
#include <filesystem>
#include <set>

#include "checkpoint/hf.h"
#include "checkpoint/hf_tensors.h"
#include "checkpoint/safetensors.h"
#include "core/fs.h"

namespace tl {

namespace {
bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

// Older transformers saved the RoPE frequencies as a buffer; they follow from the config.
bool is_rope_buffer(const std::string& name) { return name.ends_with("rotary_emb.inv_freq"); }

void check_shape(const SafetensorsFile& file, const StTensorInfo& t, const HfTensorSlot& slot) {
  TL_CHECK(t.shape == slot.shape, "'", file.path(), "': tensor '", t.name, "' has shape ",
           t.shape_str(), ", expected ", shape_str(slot.shape));
  TL_CHECK(is_float_dtype(t.dtype), "'", file.path(), "': tensor '", t.name, "' has dtype ",
           safetensors_dtype_name(t.dtype), "; expected F32, BF16 or F16");
}
}  // namespace

HfModel import_hf(const std::string& dir) {
  const std::string config_path = (std::filesystem::path(dir) / "config.json").string();
  TL_CHECK(file_exists(config_path), "'", dir,
           "' has no config.json; expected a Hugging Face model folder");
  HfModel out;
  out.hf_config = read_json_file(config_path);
  bool tied = false;
  try {
    out.config = model_config_from_hf(out.hf_config);
    auto tie = out.hf_config.find("tie_word_embeddings");  // type checked above
    tied = tie != out.hf_config.end() && tie->is_boolean() && tie->get<bool>();
  } catch (const Error& e) {
    fail("'", config_path, "': ", e.what());
  }

  SafetensorsModel weights(dir);
  ParamLayout layout(out.config);
  out.params.assign(size_t(layout.total()), 0.0f);  // padding stays zero
  const int64_t embed_offset = layout.get(ParamKind::Embed).offset;
  std::set<std::string> used;
  for (const HfTensorSlot& slot : hf_tensor_slots(out.config, layout)) {
    const StTensorInfo* t = weights.find(slot.name);
    float* dst = out.params.data() + slot.offset;
    if (slot.name == "lm_head.weight" && (tied || !t)) {  // the head is the embedding
      if (t) check_shape(weights.file_of(slot.name), *t, slot);
      used.insert(slot.name);
      std::copy_n(out.params.data() + embed_offset, shape_numel(slot.shape), dst);
      continue;
    }
    TL_CHECK(t, "'", weights.source(), "': missing tensor '", slot.name, "'");
    const SafetensorsFile& file = weights.file_of(slot.name);
    check_shape(file, *t, slot);
    file.read_f32(*t, dst, size_t(t->numel()));
    used.insert(slot.name);
  }

  std::vector<std::string> extra;
  for (const auto& name : weights.names())
    if (!used.count(name) && !is_rope_buffer(name)) extra.push_back(name);
  if (!extra.empty()) {
    std::string list;
    for (size_t i = 0; i < extra.size() && i < 8; ++i) list += (i ? ", '" : "'") + extra[i] + "'";
    if (extra.size() > 8) list += cat(" and ", extra.size() - 8, " more");
    fail("'", weights.source(), "': unexpected tensors for a Llama model: ", list);
  }
  return out;
}

}  // namespace tl
