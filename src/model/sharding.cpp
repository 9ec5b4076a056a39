#include "model/sharding.h"

#include <algorithm>
#include <cstring>

namespace tl {

std::vector<ShardUnit> model_units(const ParamLayout& layout) {
  int n_layers = 0;
  for (const auto& p : layout.params())
    if (p.kind == ParamKind::AttnNorm) n_layers++;
  std::vector<ShardUnit> units;
  auto add = [&](int64_t begin, int64_t end, bool bwd_weights) {
    ShardUnit u;
    u.begin = begin;
    u.end = end;
    u.backward_needs_weights = bwd_weights;
    units.push_back(u);
  };
  const int64_t head_begin = layout.get(ParamKind::FinalNorm).offset;
  add(0, n_layers > 0 ? layout.layer_begin(0) : head_begin, false);
  for (int l = 0; l < n_layers; ++l) add(layout.layer_begin(l), layout.layer_end(l), true);
  add(head_begin, layout.total(), true);
  return units;
}

Sharding::Sharding(const ParamLayout& layout, int world, int64_t align)
    : world_(world), align_(align), flat_total_(layout.total()) {
  TL_CHECK(world >= 1, "sharding: world size must be at least 1, got ", world);
  TL_CHECK(align >= 1, "sharding: alignment must be at least 1, got ", align);
  units_ = model_units(layout);
  const int64_t quantum = int64_t(world) * align;
  for (auto& u : units_) {
    u.padded = (u.len() + quantum - 1) / quantum * quantum;
    u.shard = u.padded / world;
    u.padded_offset = padded_total_;
    u.shard_offset = shard_total_;
    padded_total_ += u.padded;
    shard_total_ += u.shard;
    max_padded_ = std::max(max_padded_, u.padded);
  }
}

int Sharding::unit_of(int64_t i) const {
  TL_CHECK(i >= 0 && i < flat_total_, "sharding: flat index ", i, " is outside [0, ", flat_total_,
           ")");
  // Units are sorted by begin: the last one that starts at or before i.
  auto it = std::upper_bound(units_.begin(), units_.end(), i,
                             [](int64_t v, const ShardUnit& u) { return v < u.begin; });
  return int(it - units_.begin()) - 1;
}

int Sharding::owner(int64_t i) const {
  const ShardUnit& u = units_[size_t(unit_of(i))];
  return int((i - u.begin) / u.shard);
}

int64_t Sharding::shard_index(int64_t i) const {
  const ShardUnit& u = units_[size_t(unit_of(i))];
  return u.shard_offset + (i - u.begin) % u.shard;
}

int64_t Sharding::padded_index(int64_t i) const {
  const ShardUnit& u = units_[size_t(unit_of(i))];
  return u.padded_offset + (i - u.begin);
}

std::vector<ShardPiece> Sharding::pieces(int rank) const {
  TL_CHECK(rank >= 0 && rank < world_, "sharding: rank ", rank, " is outside [0, ", world_, ")");
  std::vector<ShardPiece> out;
  for (const auto& u : units_) {
    const int64_t lo = int64_t(rank) * u.shard;  // unit-local
    const int64_t hi = std::min(lo + u.shard, u.len());
    if (hi > lo) out.push_back({u.begin + lo, u.shard_offset, hi - lo});
  }
  return out;
}

void extract_shard(const Sharding& s, int rank, const float* full, float* shard) {
  std::memset(shard, 0, size_t(s.shard_total()) * sizeof(float));
  for (const auto& p : s.pieces(rank))
    std::memcpy(shard + p.shard, full + p.flat, size_t(p.len) * sizeof(float));
}

void insert_shard(const Sharding& s, int rank, const float* shard, float* full) {
  for (const auto& p : s.pieces(rank))
    std::memcpy(full + p.flat, shard + p.shard, size_t(p.len) * sizeof(float));
}

std::vector<ReshardRun> reshard_runs(const Sharding& from, int src_rank, const Sharding& to,
                                     int dst_rank) {
  TL_CHECK(from.flat_total() == to.flat_total(), "reshard: the shardings describe models of ",
           from.flat_total(), " and ", to.flat_total(), " parameters");
  const auto a = from.pieces(src_rank), b = to.pieces(dst_rank);
  // Both lists are sorted by flat start and disjoint: a merge walk finds the overlaps, in
  // flat order, which is src order too (a shard holds its pieces in flat order).
  std::vector<ReshardRun> out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const int64_t lo = std::max(a[i].flat, b[j].flat);
    const int64_t hi = std::min(a[i].flat + a[i].len, b[j].flat + b[j].len);
    if (hi > lo)
      out.push_back({a[i].shard + (lo - a[i].flat), b[j].shard + (lo - b[j].flat), hi - lo});
    if (a[i].flat + a[i].len < b[j].flat + b[j].len)
      ++i;
    else
      ++j;
  }
  return out;
}

void reshard_copy(const Sharding& from, int src_rank, const float* src, const Sharding& to,
                  int dst_rank, float* dst) {
  for (const ReshardRun& r : reshard_runs(from, src_rank, to, dst_rank))
    std::memcpy(dst + r.dst, src + r.src, size_t(r.len) * sizeof(float));
}

}  // namespace tl
