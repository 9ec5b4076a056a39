// The training config JSON (train/train_config.cpp), parsed in memory, then validated.
#include "fuzz_util.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tlfuzz::run([&] {
    const tl::json j = tl::json::parse(data, data + size);
    const tl::TrainConfig c = tl::TrainConfig::from_json(j);
    c.validate();
    (void)c.tokens_per_step();
  });
  return 0;
}
