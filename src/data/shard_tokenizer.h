// Shards and the tokenizer that made them: prepare records the tokenizer (path and SHA-256)
// in DIR/manifest.json for the shards DIR/train/*.bin and DIR/val/*.bin.
#pragma once
#include <string>
#include <vector>

namespace tl {

// Refuses a tokenizer other than the one the prepare manifests of these shards (files or
// folders, as for expand_shard_paths) recorded: the message names the shard, the manifest,
// both tokenizer files and both SHA-256s (short). Shards without a manifest, manifests this
// version does not read, and sources that record no tokenizer are not checked.
void check_shards_tokenizer(const std::vector<std::string>& shard_paths,
                            const std::string& tokenizer_path, const std::string& tokenizer_sha256);

}  // namespace tl
