#include "data/shard_tokenizer.h"

#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_reader.h"
#include "data/loader.h"

namespace tl {

namespace {

struct Recorded {
  std::string path, sha256;  // of the tokenizer, as the manifest gives them
};

// "train/x_00000.bin" -> the tokenizer its source records, for one manifest; empty when the
// file is absent or not one we understand (the shards' headers are checked elsewhere).
std::map<std::string, Recorded> recorded_tokenizers(const std::string& manifest) {
  std::map<std::string, Recorded> out;
  if (!file_exists(manifest)) return out;
  try {
    const json m = read_json_file(manifest);
    for (const auto& [name, e] : m.at("sources").items()) {
      if (!e.contains("tokenizer") || !e["tokenizer"].is_object()) continue;
      const json& t = e["tokenizer"];
      if (!t.contains("sha256") || !t["sha256"].is_string()) continue;
      const Recorded r{t.value("path", std::string("?")), t["sha256"].get<std::string>()};
      for (const char* split : {"train", "val"})
        if (e.contains(split))
          for (const auto& s : e[split].at("shards")) out[s.at("file").get<std::string>()] = r;
    }
  } catch (const std::exception&) {
    out.clear();
  }
  return out;
}

std::string short_sha(const std::string& sha) { return sha.substr(0, 12); }

}  // namespace

void check_shards_tokenizer(const std::vector<std::string>& shard_paths,
                            const std::string& tokenizer_path,
                            const std::string& tokenizer_sha256) {
  namespace fs = std::filesystem;
  std::map<std::string, std::map<std::string, Recorded>> by_manifest;
  for (const std::string& p : expand_shard_paths(shard_paths)) {
    const fs::path fp(p);
    const std::string manifest = (fp.parent_path().parent_path() / "manifest.json").string();
    auto it = by_manifest.find(manifest);
    if (it == by_manifest.end())
      it = by_manifest.emplace(manifest, recorded_tokenizers(manifest)).first;
    const auto e = it->second.find((fp.parent_path().filename() / fp.filename()).string());
    if (e == it->second.end() || e->second.sha256 == tokenizer_sha256) continue;
    fail("data: shard '", p, "' was prepared with another tokenizer: its manifest '", manifest,
         "' records '", e->second.path, "' (sha256 ", short_sha(e->second.sha256), "), not '",
         tokenizer_path, "' (sha256 ", short_sha(tokenizer_sha256),
         "); give the tokenizer the shards were prepared with (data.tokenizer), or prepare them "
         "again with this one");
  }
}

}  // namespace tl
