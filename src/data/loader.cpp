#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/block_order.h"
#include "data/shard_set.h"

namespace tl {

namespace {

constexpr uint64_t kSourceTag = 0x534f'5552'4345ull;

// First place where two JSON values differ, as "path: a vs b" ("" when equal).
std::string json_difference(const json& a, const json& b, const std::string& path) {
  if (a.type() == b.type() && a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key())) return cat(path, ".", it.key(), ": ", it.value().dump(), " vs absent");
      std::string d = json_difference(it.value(), b[it.key()], path + "." + it.key());
      if (!d.empty()) return d;
    }
    if (a.size() != b.size()) return cat(path, ": keys ", a.size(), " vs ", b.size());
    return "";
  }
  if (a.type() == b.type() && a.is_array() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size(); ++i) {
      std::string d = json_difference(a[i], b[i], cat(path, "[", i, "]"));
      if (!d.empty()) return d;
    }
    return "";
  }
  return a == b ? "" : cat(path, ": ", a.dump(), " vs ", b.dump());
}

}  // namespace

struct TrainLoader::Impl {
  struct Source {
    std::string name;
    std::unique_ptr<ShardSet> shards;
    std::unique_ptr<BlockOrder> order;
    uint64_t consumed = 0;  // blocks taken from this source's stream by all ranks
  };
  TrainLoaderOptions opts;
  std::vector<Source> sources;
  std::vector<double> cumulative;  // normalized cumulative weights; last = 1
  uint64_t samples = 0;            // global samples taken by all ranks
  std::vector<int32_t> block;      // (T+1)
  json fingerprint;

  size_t choose(uint64_t i) const {
    double u = double(hash_mix(opts.seed, kSourceTag, i) >> 11) * 0x1.0p-53;
    size_t s = size_t(std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin());
    return std::min(s, sources.size() - 1);
  }
};

TrainLoader::TrainLoader(const TrainLoaderOptions& o) : impl_(std::make_unique<Impl>()) {
  TL_CHECK(o.seq_len > 0, "data: seq_len must be positive, got ", o.seq_len);
  TL_CHECK(o.micro_batch > 0, "data: micro_batch must be positive, got ", o.micro_batch);
  TL_CHECK(o.world >= 1 && o.rank >= 0 && o.rank < o.world, "data: rank ", o.rank,
           " is not in a world of ", o.world);
  TL_CHECK(o.shuffle_window >= 1, "data: shuffle_window must be >= 1, got ", o.shuffle_window);
  TL_CHECK(!o.sources.empty(), "data: no sources");
  Impl& m = *impl_;
  m.opts = o;
  const int64_t block_tokens = int64_t(o.seq_len) + 1;
  std::set<std::string> names;
  double total = 0;
  json fp_sources = json::array();
  for (size_t i = 0; i < o.sources.size(); ++i) {
    const DataSourceSpec& spec = o.sources[i];
    TL_CHECK(!spec.name.empty(), "data: source ", i, " has no name");
    TL_CHECK(names.insert(spec.name).second, "data: source '", spec.name, "' is listed twice");
    TL_CHECK(std::isfinite(spec.weight) && spec.weight > 0, "data: source '", spec.name,
             "' has weight ", spec.weight, "; weights must be positive");
    auto shards = std::make_unique<ShardSet>(expand_shard_paths(spec.paths), block_tokens,
                                             size_t(o.shuffle_window) + 2, /*scan_max=*/true);
    TL_CHECK(shards->total_blocks() > 0, "data: source '", spec.name, "' has ",
             shards->total_tokens(), " tokens in ", shards->size(),
             " shards but no complete block of seq_len+1 = ", block_tokens,
             " tokens (blocks do not cross shard boundaries)");
    auto order = std::make_unique<BlockOrder>(shards->block_counts(), o.shuffle_window,
                                              hash_mix(o.seed, i));
    fp_sources.push_back({{"name", spec.name}, {"shards", shards->size()},
                          {"blocks", shards->total_blocks()}});
    m.sources.push_back({spec.name, std::move(shards), std::move(order), 0});
    total += spec.weight;
    m.cumulative.push_back(total);
  }
  for (double& c : m.cumulative) c /= total;
  m.cumulative.back() = 1.0;
  m.block.resize(size_t(block_tokens));
  m.fingerprint = {{"seq_len", o.seq_len}, {"seed", o.seed},
                   {"shuffle_window", o.shuffle_window}, {"sources", fp_sources}};
}

TrainLoader::~TrainLoader() = default;

void TrainLoader::next(int32_t* tokens, int32_t* targets) {
  Impl& m = *impl_;
  const uint64_t w = uint64_t(m.opts.world), T = uint64_t(m.opts.seq_len);
  const uint64_t n = uint64_t(m.opts.micro_batch) * w;
  // Walk every rank's samples so that all ranks keep the same counters; read ours.
  std::vector<uint64_t> consumed(m.sources.size());
  for (size_t s = 0; s < m.sources.size(); ++s) consumed[s] = m.sources[s].consumed;
  for (uint64_t j = 0; j < n; ++j) {
    const size_t s = m.choose(m.samples + j);
    const uint64_t position = consumed[s]++;
    if (j % w != uint64_t(m.opts.rank)) continue;
    auto [shard, b] = m.sources[s].order->at(position);
    m.sources[s].shards->read_block(shard, b, m.block.data());
    const uint64_t row = j / w;
    std::copy(m.block.begin(), m.block.end() - 1, tokens + row * T);
    std::copy(m.block.begin() + 1, m.block.end(), targets + row * T);
  }
  // Commit only after every read succeeded.
  for (size_t s = 0; s < m.sources.size(); ++s) m.sources[s].consumed = consumed[s];
  m.samples += n;
}

json TrainLoader::state() const {
  const Impl& m = *impl_;
  json consumed = json::array();
  for (const auto& s : m.sources) consumed.push_back(s.consumed);
  return {{"version", 1}, {"samples", m.samples}, {"consumed", consumed},
          {"fingerprint", m.fingerprint}};
}

void TrainLoader::restore(const json& state) {
  Impl& m = *impl_;
  TL_CHECK(state.is_object() && state.value("version", 0) == 1 && state.contains("samples") &&
               state.contains("consumed") && state.contains("fingerprint"),
           "data loader state: not a version-1 loader state: ", state.dump().substr(0, 200));
  std::string diff = json_difference(state["fingerprint"], m.fingerprint, "fingerprint");
  TL_CHECK(diff.empty(), "data loader state does not fit these sources (saved vs now): ", diff);
  const json& consumed = state["consumed"];
  TL_CHECK(consumed.is_array() && consumed.size() == m.sources.size(),
           "data loader state: 'consumed' must hold one counter per source");
  uint64_t sum = 0;
  for (const auto& c : consumed) sum += c.get<uint64_t>();
  TL_CHECK(sum == state["samples"].get<uint64_t>(), "data loader state: ", sum,
           " blocks consumed by the sources but ", state["samples"].get<uint64_t>(), " samples taken");
  m.samples = state["samples"].get<uint64_t>();
  for (size_t s = 0; s < m.sources.size(); ++s) m.sources[s].consumed = consumed[s].get<uint64_t>();
}

int64_t TrainLoader::blocks_in_source(size_t i) const {
  TL_CHECK(i < impl_->sources.size(), "data: no source ", i);
  return impl_->sources[i].shards->total_blocks();
}

uint64_t TrainLoader::max_token_id() const {
  uint64_t m = 0;
  for (const auto& s : impl_->sources) m = std::max(m, s.shards->max_token_id());
  return m;
}

// ---- SequentialBlocks ----

struct SequentialBlocks::Impl {
  std::unique_ptr<ShardSet> shards;
  std::vector<int64_t> first;  // first global block of each shard; size S+1
  int seq_len;
};

SequentialBlocks::SequentialBlocks(const std::vector<std::string>& paths, int seq_len)
    : impl_(std::make_unique<Impl>()) {
  TL_CHECK(seq_len > 0, "data: seq_len must be positive, got ", seq_len);
  impl_->seq_len = seq_len;
  impl_->shards = std::make_unique<ShardSet>(expand_shard_paths(paths), int64_t(seq_len) + 1, 2,
                                             /*scan_max=*/false);
  const ShardSet& s = *impl_->shards;
  TL_CHECK(s.total_blocks() > 0, "data: the ", s.size(), " evaluation shards (", s.path(0),
           ", ...) hold ", s.total_tokens(), " tokens but no complete block of seq_len+1 = ",
           seq_len + 1, " tokens");
  impl_->first.assign(1, 0);
  for (size_t i = 0; i < s.size(); ++i) impl_->first.push_back(impl_->first.back() + s.blocks(i));
}

SequentialBlocks::~SequentialBlocks() = default;

int64_t SequentialBlocks::num_blocks() const { return impl_->first.back(); }

void SequentialBlocks::read(int64_t i, int32_t* tokens, int32_t* targets) const {
  TL_CHECK(i >= 0 && i < num_blocks(), "data: block ", i, " is outside [0, ", num_blocks(), ")");
  const auto& f = impl_->first;
  const size_t s = size_t(std::upper_bound(f.begin(), f.end(), i) - f.begin()) - 1;
  const size_t T = size_t(impl_->seq_len);
  std::vector<int32_t> block(T + 1);
  impl_->shards->read_block(s, i - f[s], block.data());
  std::copy(block.begin(), block.end() - 1, tokens);
  std::copy(block.begin() + 1, block.end(), targets);
}

// ---- paths ----

std::vector<std::string> expand_shard_paths(const std::vector<std::string>& paths) {
  TL_CHECK(!paths.empty(), "data: no shard paths given");
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& p : paths) {
    std::vector<std::string> files;
    if (is_directory(p)) {
      files = list_files(p, ".bin");
      TL_CHECK(!files.empty(), "data: folder '", p, "' holds no *.bin shards");
    } else {
      TL_CHECK(file_exists(p), "data: shard path '", p, "' does not exist");
      files = {p};
    }
    for (auto& f : files) {
      TL_CHECK(seen.insert(f).second, "data: shard '", f, "' is listed twice");
      out.push_back(std::move(f));
    }
  }
  return out;
}

}  // namespace tl
