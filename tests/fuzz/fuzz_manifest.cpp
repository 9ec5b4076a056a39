// DIR/manifest.json of `prepare` as its two readers take it: the training loader (shard
// sizes and max_token_id next to DIR/train/*.bin, data/loader.cpp + shard_set.cpp), and a
// further `prepare` run into DIR (data/prepare.cpp: the manifest check, the re-run and
// duplicate detection). The target writes one valid shard (train/src_00000.bin) at start.
// TL_FUZZ_DUMP_SEED=FILE writes the manifest of a real prepare run into DIR (a seed).
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "data/loader.h"
#include "data/packed.h"
#include "data/prepare.h"
#include "fuzz_util.h"

namespace {

const std::string kTokenizer = TL_SOURCE_DIR "/tests/fuzz/corpus/tokenizer/tiny_bpe.model";

void remove_prepared(const std::string& dir) {
  std::error_code ec;
  for (const char* split : {"train", "val"})
    for (const auto& e : std::filesystem::directory_iterator(dir + "/" + split, ec))
      if (e.path().filename().string().rfind("prep_", 0) == 0)
        std::filesystem::remove(e.path(), ec);
}

tl::PrepareOptions prepare_options(const std::string& dir) {
  tl::PrepareOptions o;
  o.tokenizer = kTokenizer;
  o.source = "prep";
  o.out_dir = dir;
  o.inputs = {dir + "/input.txt"};
  o.chunk_tokens = 64;
  o.threads = 1;
  o.progress = false;
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string dir = tlfuzz::scratch("data");
  std::filesystem::create_directories(dir + "/train");
  tl::PackedWriter w(dir + "/train", "src", 300, 1000);
  std::vector<int32_t> ids(100);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 7 % 300);
  w.add(ids.data(), ids.size());
  w.finish();
  tlfuzz::write_file(dir + "/input.txt", "Hello there, a small document.\nAnd a second line.\n");
  if (const char* out = std::getenv("TL_FUZZ_DUMP_SEED")) {
    tl::prepare_dataset(prepare_options(dir));
    std::filesystem::copy_file(dir + "/manifest.json", out,
                               std::filesystem::copy_options::overwrite_existing);
    remove_prepared(dir);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = tlfuzz::scratch("data");
  tlfuzz::write_file(dir + "/manifest.json", data, size);
  tlfuzz::run([&] {
    tl::TrainLoaderOptions o;
    o.sources = {{"a", {dir + "/train/src_00000.bin"}, 1.0}};
    o.seq_len = 7;
    o.prefetch = 0;
    o.vocab_size = 300;
    tl::TrainLoader loader(o);
    std::vector<int32_t> tokens(7), targets(7);
    loader.next(tokens.data(), targets.data());
    (void)loader.max_token_id();
  });
  remove_prepared(dir);
  tlfuzz::run([&] { (void)tl::prepare_dataset(prepare_options(dir)); });
  remove_prepared(dir);
  return 0;
}
