// A GGUF file (checkpoint/gguf_file.cpp, gguf_llama.cpp): header, metadata of every type,
// tensor infos, offsets; then the llama import (metadata -> config, every tensor dequantized).
#include "checkpoint/gguf.h"
#include "checkpoint/gguf_llama.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tlfuzz::scratch("model.gguf");
  tlfuzz::write_file(path, data, size);
  tlfuzz::run([&] {
    tl::gguf::File f(path);
    for (const auto& t : f.tensors())
      if (tl::gguf::known_tensor_type(t.type)) (void)f.data(t);
  });
  tlfuzz::run([&] { (void)tl::import_gguf(path); });
  return 0;
}
