// A LITPKDS packed shard (data/packed.cpp): header check, mapping, token reads, and a
// ShardSet over it (data/shard_set.cpp).
#include <algorithm>
#include <vector>

#include "data/packed.h"
#include "data/shard_set.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tlfuzz::scratch("train/src_00000.bin");
  tlfuzz::write_file(path, data, size);
  tlfuzz::run([&] { (void)tl::read_packed_header(path); });
  tlfuzz::run([&] {
    tl::PackedShard s(path);
    const uint64_t n = std::min<uint64_t>(s.num_tokens(), 1 << 16);
    std::vector<int32_t> out(static_cast<size_t>(n));
    s.read(0, n, out.data());
    if (s.num_tokens() > 0) (void)s.token(s.num_tokens() - 1);
  });
  tlfuzz::run([&] {
    tl::ShardSet set({path}, 4, 2);
    std::vector<int32_t> block(4);
    if (set.total_blocks() > 0) set.read_block(0, set.blocks(0) - 1, block.data());
    if (set.tokens(0) <= (1 << 16)) (void)set.scan_max(0);
  });
  return 0;
}
