#include "eval/py_random.h"

#include <cmath>
#include <unordered_set>

#include "core/error.h"

namespace tl::eval {

namespace {
constexpr int N = 624, M = 397;
constexpr uint32_t MATRIX_A = 0x9908b0dfu, UPPER = 0x80000000u, LOWER = 0x7fffffffu;

int bit_length(uint64_t n) {
  int k = 0;
  for (; n; n >>= 1) ++k;
  return k;
}
}  // namespace

void PyRandom::init_genrand(uint32_t s) {
  mt_[0] = s;
  for (int i = 1; i < N; ++i)
    mt_[size_t(i)] = 1812433253u * (mt_[size_t(i - 1)] ^ (mt_[size_t(i - 1)] >> 30)) + uint32_t(i);
  mti_ = N;
}

PyRandom::PyRandom(uint64_t seed) {
  // CPython: the absolute value's 32-bit words, least significant first; 0 gives one word.
  std::vector<uint32_t> key{uint32_t(seed)};
  if (seed >> 32) key.push_back(uint32_t(seed >> 32));
  init_genrand(19650218u);
  int i = 1, j = 0;
  const int len = int(key.size());
  for (int k = std::max(N, len); k; --k) {
    mt_[size_t(i)] =
        (mt_[size_t(i)] ^ ((mt_[size_t(i - 1)] ^ (mt_[size_t(i - 1)] >> 30)) * 1664525u)) +
        key[size_t(j)] + uint32_t(j);
    ++i, ++j;
    if (i >= N) mt_[0] = mt_[N - 1], i = 1;
    if (j >= len) j = 0;
  }
  for (int k = N - 1; k; --k) {
    mt_[size_t(i)] =
        (mt_[size_t(i)] ^ ((mt_[size_t(i - 1)] ^ (mt_[size_t(i - 1)] >> 30)) * 1566083941u)) -
        uint32_t(i);
    ++i;
    if (i >= N) mt_[0] = mt_[N - 1], i = 1;
  }
  mt_[0] = 0x80000000u;  // the initial array is non-zero
}

uint32_t PyRandom::next_u32() {
  static constexpr uint32_t mag01[2] = {0u, MATRIX_A};
  if (mti_ >= N) {
    int kk = 0;
    for (; kk < N - M; ++kk) {
      const uint32_t y = (mt_[size_t(kk)] & UPPER) | (mt_[size_t(kk + 1)] & LOWER);
      mt_[size_t(kk)] = mt_[size_t(kk + M)] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; kk < N - 1; ++kk) {
      const uint32_t y = (mt_[size_t(kk)] & UPPER) | (mt_[size_t(kk + 1)] & LOWER);
      mt_[size_t(kk)] = mt_[size_t(kk + (M - N))] ^ (y >> 1) ^ mag01[y & 1u];
    }
    const uint32_t y = (mt_[N - 1] & UPPER) | (mt_[0] & LOWER);
    mt_[N - 1] = mt_[M - 1] ^ (y >> 1) ^ mag01[y & 1u];
    mti_ = 0;
  }
  uint32_t y = mt_[size_t(mti_++)];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

uint64_t PyRandom::getrandbits(int k) {
  TL_CHECK(k >= 0 && k <= 64, "getrandbits(", k, "): 0..64 bits supported");
  if (k == 0) return 0;
  if (k <= 32) return next_u32() >> (32 - k);
  // Words fill from the least significant; the last one keeps its top (k - 32) bits.
  const uint64_t low = next_u32();
  return low | (uint64_t(next_u32() >> (64 - k)) << 32);
}

uint64_t PyRandom::randbelow(uint64_t n) {
  TL_CHECK(n > 0, "randbelow(0)");
  const int k = bit_length(n);
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

std::vector<size_t> PyRandom::sample(size_t n, size_t k) {
  TL_CHECK(k <= n, "sample: ", k, " items from a population of ", n);
  std::vector<size_t> result(k);
  // CPython picks by memory: a list copy of the population when it is smaller than a
  // k-element set (21 + the set's table size), else draws with a set of chosen indices.
  size_t setsize = 21;
  if (k > 5) setsize += size_t(std::pow(4.0, std::ceil(std::log(double(k * 3)) / std::log(4.0))));
  if (n <= setsize) {
    std::vector<size_t> pool(n);
    for (size_t i = 0; i < n; ++i) pool[i] = i;
    for (size_t i = 0; i < k; ++i) {
      const size_t j = size_t(randbelow(n - i));
      result[i] = pool[j];
      pool[j] = pool[n - i - 1];
    }
  } else {
    std::unordered_set<size_t> selected;
    for (size_t i = 0; i < k; ++i) {
      size_t j = size_t(randbelow(n));
      while (selected.count(j)) j = size_t(randbelow(n));
      selected.insert(j);
      result[i] = j;
    }
  }
  return result;
}

}  // namespace tl::eval
