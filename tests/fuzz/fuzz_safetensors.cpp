// A safetensors file (checkpoint/safetensors_read.cpp): header JSON, dtypes, shapes, offsets;
// then every small tensor converted to f32.
#include <vector>

#include "checkpoint/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tlfuzz::scratch("model.safetensors");
  tlfuzz::write_file(path, data, size);
  tlfuzz::run([&] {
    tl::SafetensorsFile f(path);
    std::vector<float> out;
    for (const auto& t : f.tensors()) {
      (void)f.bytes(t);
      const int64_t n = t.numel();
      if (n < 0 || n > (1 << 20)) continue;
      out.resize(size_t(n));
      f.read_f32(t, out.data(), out.size());
    }
  });
  return 0;
}
