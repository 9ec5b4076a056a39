#include "data/block_order.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace tl {

namespace {
constexpr uint64_t kShardTag = 0x5348'4152'4453ull;  // domain tags keep the two hashes apart
constexpr uint64_t kWindowTag = 0x5749'4e44'4f57ull;

template <class T>
void shuffle(std::vector<T>& v, uint64_t seed) {  // Fisher-Yates
  Rng rng(seed);
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

// Index of the last entry of an ascending prefix array that is <= x.
size_t find_start(const std::vector<int64_t>& starts, int64_t x) {
  return size_t(std::upper_bound(starts.begin(), starts.end(), x) - starts.begin()) - 1;
}
}  // namespace

BlockOrder::BlockOrder(std::vector<int64_t> shard_blocks, int window, uint64_t seed)
    : shard_blocks_(std::move(shard_blocks)), window_(size_t(std::max(1, window))), seed_(seed) {
  per_epoch_ = std::accumulate(shard_blocks_.begin(), shard_blocks_.end(), int64_t(0));
  TL_ASSERT(per_epoch_ > 0);
}

void BlockOrder::enter_epoch(uint64_t epoch) {
  order_.resize(shard_blocks_.size());
  std::iota(order_.begin(), order_.end(), size_t(0));
  shuffle(order_, hash_mix(seed_, kShardTag, epoch));
  window_start_.assign(1, 0);
  for (size_t i = 0; i < order_.size(); i += window_) {
    int64_t n = 0;
    for (size_t j = i; j < std::min(i + window_, order_.size()); ++j) n += shard_blocks_[order_[j]];
    window_start_.push_back(window_start_.back() + n);
  }
  epoch_ = epoch;
  cur_window_ = SIZE_MAX;
}

void BlockOrder::enter_window(size_t window) {
  shard_start_.assign(1, 0);
  for (size_t j = window * window_; j < std::min((window + 1) * window_, order_.size()); ++j)
    shard_start_.push_back(shard_start_.back() + shard_blocks_[order_[j]]);
  perm_.resize(size_t(shard_start_.back()));
  std::iota(perm_.begin(), perm_.end(), int64_t(0));
  shuffle(perm_, hash_mix(seed_, kWindowTag, epoch_, window));
  cur_window_ = window;
}

std::pair<size_t, int64_t> BlockOrder::at(uint64_t p) {
  const uint64_t epoch = p / uint64_t(per_epoch_);
  const int64_t q = int64_t(p % uint64_t(per_epoch_));
  if (epoch != epoch_) enter_epoch(epoch);
  const size_t w = find_start(window_start_, q);
  if (w != cur_window_) enter_window(w);
  const int64_t local = perm_[size_t(q - window_start_[w])];
  const size_t k = find_start(shard_start_, local);
  return {order_[w * window_ + k], local - shard_start_[k]};
}

}  // namespace tl
