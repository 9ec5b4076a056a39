// CPython's random.Random, bit for bit, for what lm-evaluation-harness's few-shot sampler
// uses: seeding from a non-negative int, getrandbits, _randbelow and sample(). MT19937
// seeded with init_by_array over the int's 32-bit words (least significant first).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tl::eval {

class PyRandom {
 public:
  explicit PyRandom(uint64_t seed);  // random.Random(seed)

  uint32_t next_u32();             // genrand_uint32
  uint64_t getrandbits(int k);     // 0 <= k <= 64
  uint64_t randbelow(uint64_t n);  // n > 0: rejection sampling on n.bit_length() bits
  // random.sample(range(n), k): k distinct indices in selection order. Throws when k > n.
  std::vector<size_t> sample(size_t n, size_t k);

 private:
  void init_genrand(uint32_t s);
  std::array<uint32_t, 624> mt_{};
  int mti_ = 625;
};

}  // namespace tl::eval
