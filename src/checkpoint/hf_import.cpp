// Hugging Face Llama folder -> flat f32 parameters, every tensor name, shape and dtype checked.
#include <algorithm>
#include <cmath>
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

// "[1, 13]": the index of element i of a row-major tensor.
std::string index_str(const std::vector<int64_t>& shape, int64_t i) {
  std::vector<int64_t> at(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    at[d] = shape[d] > 0 ? i % shape[d] : 0;
    i = shape[d] > 0 ? i / shape[d] : 0;
  }
  return shape_str(at);
}

// A NaN or Inf weight would only show up as a NaN loss later: refuse it, naming where it is.
void check_finite(const SafetensorsFile& file, const StTensorInfo& t, const float* values) {
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(values[i]))
      fail("'", file.path(), "': tensor '", t.name, "' holds a non-finite value (", values[i],
           ") at element ", i, " ", index_str(t.shape, i), "; refusing to import it");
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
  const std::vector<HfTensorSlot> slots = hf_tensor_slots(out.config, layout);
  // Every tensor's presence, shape and dtype from the headers first: nothing is allocated
  // for a config that the files do not back.
  std::vector<const StTensorInfo*> found(slots.size(), nullptr);  // null: the embedding's copy
  std::set<std::string> used;
  for (size_t i = 0; i < slots.size(); ++i) {
    const HfTensorSlot& slot = slots[i];
    const StTensorInfo* t = weights.find(slot.name);
    used.insert(slot.name);
    if (slot.name == "lm_head.weight" && (tied || !t)) {  // the head is the embedding
      if (t) check_shape(weights.file_of(slot.name), *t, slot);
      continue;
    }
    TL_CHECK(t, "'", weights.source(), "': missing tensor '", slot.name, "'");
    check_shape(weights.file_of(slot.name), *t, slot);
    found[i] = t;
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

  out.params.assign(size_t(layout.total()), 0.0f);  // padding stays zero
  const int64_t embed_offset = layout.get(ParamKind::Embed).offset;
  for (size_t i = 0; i < slots.size(); ++i) {
    const HfTensorSlot& slot = slots[i];
    float* dst = out.params.data() + slot.offset;
    if (!found[i]) {
      std::copy_n(out.params.data() + embed_offset, shape_numel(slot.shape), dst);
      continue;
    }
    const SafetensorsFile& file = weights.file_of(slot.name);
    file.read_f32(*found[i], dst, size_t(found[i]->numel()));
    check_finite(file, *found[i], dst);
  }
  return out;
}

}  // namespace tl
