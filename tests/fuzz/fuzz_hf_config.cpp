// A Hugging Face config.json (checkpoint/hf_config.cpp), parsed in memory.
#include "checkpoint/hf.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tlfuzz::run([&] {
    // Not JSON at all is the JSON library's business, not the parser's.
    const tl::json j = tl::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return;
    const tl::ModelConfig cfg = tl::model_config_from_hf(j);
    (void)tl::hf_config_from_model(cfg);
  });
  return 0;
}
