// The training config JSON (train/train_config.cpp), parsed in memory, then validated.
#include "fuzz_util.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tlfuzz::run([&] {
    // Not JSON at all is the JSON library's business, not the parser's.
    const tl::json j = tl::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return;
    const tl::TrainConfig c = tl::TrainConfig::from_json(j);
    c.validate();
    (void)c.tokens_per_step();
  });
  return 0;
}
