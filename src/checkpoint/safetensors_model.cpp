// A model folder's weights: one model.safetensors, or shards listed by an index file.
#include <filesystem>

#include "checkpoint/safetensors.h"
#include "core/fs.h"

namespace tl {

namespace {
std::string join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}
}  // namespace

SafetensorsModel::SafetensorsModel(const std::string& dir) : dir_(dir) {
  TL_CHECK(is_directory(dir), "'", dir, "' is not a folder");
  const std::string single = join(dir, "model.safetensors");
  const std::string index = join(dir, "model.safetensors.index.json");
  if (file_exists(single)) {  // what transformers prefers when both exist
    source_ = single;
    files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& t : files_[0]->tensors()) where_[t.name] = 0;
    return;
  }
  TL_CHECK(file_exists(index), "'", dir,
           "' holds neither model.safetensors nor model.safetensors.index.json");
  source_ = index;
  json j = read_json_file(index);
  TL_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), "'", index,
           "' has no \"weight_map\" object");
  std::map<std::string, size_t> by_file;
  const json& map = j["weight_map"];
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string& name = it.key();
    TL_CHECK(it.value().is_string(), "'", index, "': weight_map['", name, "'] must be a file name");
    const std::string file = it.value().get<std::string>();
    // Shards live in the folder itself; anything else is a malformed (or hostile) index.
    TL_CHECK(is_plain_file_name(file), "'", index, "': tensor '", name,
             "' maps to a bad file name '", file, "'");
    auto f = by_file.find(file);
    if (f == by_file.end()) {
      const std::string path = join(dir, file);
      TL_CHECK(file_exists(path), "'", index, "' maps tensor '", name, "' to shard '", path,
               "', which is missing");
      files_.push_back(std::make_unique<SafetensorsFile>(path));
      f = by_file.emplace(file, files_.size() - 1).first;
    }
    TL_CHECK(files_[f->second]->find(name), "shard '", files_[f->second]->path(),
             "' has no tensor '", name, "', which '", index, "' maps to it");
    where_[name] = f->second;
  }
}

SafetensorsModel::SafetensorsModel(SafetensorsModel&&) noexcept = default;
SafetensorsModel::~SafetensorsModel() = default;

std::vector<std::string> SafetensorsModel::names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : where_) out.push_back(name);
  return out;
}

const StTensorInfo* SafetensorsModel::find(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second]->find(name);
}

const SafetensorsFile& SafetensorsModel::file_of(const std::string& name) const {
  auto it = where_.find(name);
  TL_CHECK(it != where_.end(), "'", dir_, "' has no tensor '", name, "'");
  return *files_[it->second];
}

}  // namespace tl
