// A native checkpoint (.tlck, checkpoint/checkpoint.cpp): header, CRCs, sections.
#include "checkpoint/checkpoint.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tlfuzz::scratch("in.tlck");
  tlfuzz::write_file(path, data, size);
  tlfuzz::run([&] { (void)tl::read_checkpoint_meta(path); });
  tlfuzz::run([&] { (void)tl::load_checkpoint(path, true); });
  return 0;
}
