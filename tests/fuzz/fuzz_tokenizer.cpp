// A SentencePiece tokenizer file as Tokenizer::load reads it (data/tokenizer.cpp), then a
// round trip through the loaded model.
#include "data/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tlfuzz::scratch("tokenizer.model");
  tlfuzz::write_file(path, data, size);
  tlfuzz::run([&] {
    const tl::Tokenizer t = tl::Tokenizer::load(path);
    const std::vector<int> ids = t.encode("Hello wörld 123 <s> \xff\xfe tabs\tand\nlines");
    (void)t.decode(ids);
    for (int i = 0; i < std::min(t.vocab_size(), 64); ++i) (void)t.piece(i);
    (void)t.bos_id();
    (void)t.eos_id();
  });
  return 0;
}
