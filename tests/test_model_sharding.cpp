// The sharding arithmetic: every parameter is owned by exactly one rank, chunks are equal
// and aligned, padding is where it should be, and the index maps (owner, shard index,
// padded index, pieces, extract/insert, reshard) agree with each other, for many worlds.
#include <gtest/gtest.h>

#include <numeric>

#include "model/sharding.h"

using namespace tl;

namespace {

ModelConfig small_model(int vocab = 61, int dim = 40, int layers = 3, int ffn = 72) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.dim = dim;
  c.n_layers = layers;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_dim = ffn;
  c.max_seq_len = 16;
  return c;
}

}  // namespace

TEST(DistSharding, UnitsAreTheEmbeddingEachLayerAndTheHead) {
  ModelConfig cfg = small_model();
  ParamLayout layout(cfg);
  auto units = model_units(layout);
  ASSERT_EQ(units.size(), size_t(cfg.n_layers + 2));
  EXPECT_EQ(units[0].begin, 0);
  EXPECT_EQ(units[0].end, layout.layer_begin(0));
  EXPECT_FALSE(units[0].backward_needs_weights);
  for (int l = 0; l < cfg.n_layers; ++l) {
    EXPECT_EQ(units[size_t(l + 1)].begin, layout.layer_begin(l));
    EXPECT_EQ(units[size_t(l + 1)].end, layout.layer_end(l));
    EXPECT_TRUE(units[size_t(l + 1)].backward_needs_weights);
  }
  EXPECT_EQ(units.back().begin, layout.get(ParamKind::FinalNorm).offset);
  EXPECT_EQ(units.back().end, layout.total());
  // Every parameter lies inside the unit the hooks name for it.
  for (const auto& p : layout.params()) {
    const int u = p.layer >= 0 ? p.layer + 1 : p.kind == ParamKind::Embed ? 0 : cfg.n_layers + 1;
    EXPECT_GE(p.offset, units[size_t(u)].begin) << p.name;
    EXPECT_LE(p.offset + p.numel(), units[size_t(u)].end) << p.name;
  }
}

TEST(DistSharding, EveryElementHasExactlyOneOwnerForManyWorlds) {
  for (auto cfg : {small_model(), small_model(64, 32, 2, 64), small_model(7, 8, 1, 24)}) {
    ParamLayout layout(cfg);
    for (int world : {1, 2, 3, 4, 5, 7, 8}) {
      for (int64_t align : {int64_t(1), int64_t(4), kParamAlign}) {
        SCOPED_TRACE(cat("world ", world, " align ", align, " P ", layout.total()));
        Sharding s(layout, world, align);
        EXPECT_EQ(s.flat_total(), layout.total());
        int64_t shard_sum = 0, padded_sum = 0;
        for (const auto& u : s.units()) {
          EXPECT_EQ(u.padded % (world * align), 0);
          EXPECT_GE(u.padded, u.len());
          EXPECT_LT(u.padded - u.len(), world * align);  // no more padding than needed
          EXPECT_EQ(u.shard * world, u.padded);
          EXPECT_EQ(u.shard % align, 0);  // chunks stay aligned
          EXPECT_EQ(u.shard_offset, shard_sum);
          EXPECT_EQ(u.padded_offset, padded_sum);
          shard_sum += u.shard;
          padded_sum += u.padded;
        }
        EXPECT_EQ(s.shard_total(), shard_sum);
        EXPECT_EQ(s.padded_total(), padded_sum);

        // Pieces of all ranks cover [0, P) exactly once and match owner/shard_index.
        std::vector<int> covered(size_t(layout.total()), 0);
        for (int r = 0; r < world; ++r) {
          int64_t last_shard_end = -1;
          for (const auto& p : s.pieces(r)) {
            EXPECT_GT(p.len, 0);
            EXPECT_GE(p.shard, last_shard_end);  // shard order follows flat order
            last_shard_end = p.shard + p.len;
            EXPECT_LE(p.shard + p.len, s.shard_total());
            for (int64_t i = 0; i < p.len; ++i) {
              covered[size_t(p.flat + i)]++;
              ASSERT_EQ(s.owner(p.flat + i), r);
              ASSERT_EQ(s.shard_index(p.flat + i), p.shard + i);
            }
          }
        }
        for (size_t i = 0; i < covered.size(); ++i) ASSERT_EQ(covered[i], 1) << "element " << i;
      }
    }
  }
}

TEST(DistSharding, AllGatherOfChunksIsTheUnitInPaddedOrder) {
  // Simulate the collective: concatenating the ranks' chunks of a unit in rank order must
  // give the unit's flat range (then padding), which is what the unit buffers rely on.
  ModelConfig cfg = small_model();
  ParamLayout layout(cfg);
  std::vector<float> full(size_t(layout.total()));
  std::iota(full.begin(), full.end(), 1.0f);
  for (int world : {1, 2, 3, 6}) {
    Sharding s(layout, world);
    std::vector<std::vector<float>> shards(size_t(world),
                                           std::vector<float>(size_t(s.shard_total())));
    for (int r = 0; r < world; ++r) extract_shard(s, r, full.data(), shards[size_t(r)].data());
    for (int u = 0; u < s.num_units(); ++u) {
      const ShardUnit& su = s.unit(u);
      std::vector<float> gathered;
      for (int r = 0; r < world; ++r)
        gathered.insert(gathered.end(), shards[size_t(r)].begin() + su.shard_offset,
                        shards[size_t(r)].begin() + su.shard_offset + su.shard);
      ASSERT_EQ(int64_t(gathered.size()), su.padded);
      for (int64_t j = 0; j < su.padded; ++j) {
        const float want = j < su.len() ? full[size_t(su.begin + j)] : 0.0f;
        ASSERT_EQ(gathered[size_t(j)], want) << "world " << world << " unit " << u << " j " << j;
        if (j < su.len()) {
          ASSERT_EQ(s.padded_index(su.begin + j), su.padded_offset + j);
        }
      }
    }
  }
}

TEST(DistSharding, ExtractInsertRoundTripAndPaddingIsZero) {
  ModelConfig cfg = small_model();
  ParamLayout layout(cfg);
  std::vector<float> full(size_t(layout.total()));
  for (size_t i = 0; i < full.size(); ++i) full[i] = float(i % 1000) + 0.5f;
  for (int world : {1, 2, 3, 4}) {
    Sharding s(layout, world);
    std::vector<float> back(full.size(), -1.0f);
    for (int r = 0; r < world; ++r) {
      std::vector<float> shard(size_t(s.shard_total()), 123.0f);
      extract_shard(s, r, full.data(), shard.data());
      int64_t owned = 0;
      for (const auto& p : s.pieces(r)) owned += p.len;
      int64_t zeros = 0;
      for (float x : shard) zeros += x == 0.0f;
      EXPECT_EQ(zeros, s.shard_total() - owned) << "padding must be zero (world " << world << ")";
      insert_shard(s, r, shard.data(), back.data());
    }
    EXPECT_EQ(back, full) << "world " << world;
  }
}

TEST(DistSharding, ReshardCopyMovesShardsBetweenWorldSizes) {
  ModelConfig cfg = small_model();
  ParamLayout layout(cfg);
  std::vector<float> full(size_t(layout.total()));
  for (size_t i = 0; i < full.size(); ++i) full[i] = float(i) * 0.25f;
  for (int from_w : {1, 2, 3, 4}) {
    for (int to_w : {1, 2, 3, 5}) {
      Sharding from(layout, from_w), to(layout, to_w);
      std::vector<std::vector<float>> src(static_cast<size_t>(from_w));
      for (int r = 0; r < from_w; ++r) {
        src[size_t(r)].resize(size_t(from.shard_total()));
        extract_shard(from, r, full.data(), src[size_t(r)].data());
      }
      for (int d = 0; d < to_w; ++d) {
        std::vector<float> dst(size_t(to.shard_total()), 0.0f), want(dst.size());
        for (int r = 0; r < from_w; ++r)
          reshard_copy(from, r, src[size_t(r)].data(), to, d, dst.data());
        extract_shard(to, d, full.data(), want.data());
        ASSERT_EQ(dst, want) << from_w << " -> " << to_w << " rank " << d;
      }
    }
  }
}

TEST(DistSharding, RejectsBadArguments) {
  ParamLayout layout(small_model());
  EXPECT_THROW(Sharding(layout, 0), Error);
  Sharding s(layout, 2);
  EXPECT_THROW(s.pieces(2), Error);
  EXPECT_THROW(s.owner(layout.total()), Error);
  EXPECT_THROW(s.owner(-1), Error);
}
