#include "data/loader.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/block_order.h"
#include "data/shard_set.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kSourceTag = 0x534f'5552'4345ull;

// First place where two JSON values differ, as "path: a vs b" ("" when equal).
std::string json_difference(const json& a, const json& b, const std::string& path) {
  if (a.type() == b.type() && a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key()))
        return cat(path, ".", it.key(), ": ", it.value().dump(), " vs absent");
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

// Per shard: its source's max_token_id from the prepare manifest next to it (DIR/manifest.json
// for DIR/train/*.bin), -1 when unknown.
std::vector<int64_t> manifest_max_ids(const std::vector<std::string>& paths) {
  std::map<std::string, std::unordered_map<std::string, int64_t>> by_dir;  // DIR → file → max id
  std::vector<int64_t> out;
  for (const auto& p : paths) {
    const fs::path fp(p);
    const std::string dir = fp.parent_path().parent_path().string();
    auto [it, fresh] = by_dir.try_emplace(dir);
    if (fresh && file_exists(dir + "/manifest.json")) {
      try {
        json m = read_json_file(dir + "/manifest.json");
        for (const auto& [name, e] : m.at("sources").items()) {
          int64_t max_id = -1;  // absent: unknown, the shards will be scanned
          if (e.contains("max_token_id")) {
            const json& v = e["max_token_id"];  // an integer, or the manifest is not ours
            if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX))
              throw std::runtime_error("max_token_id is not an integer");
            max_id = v.get<int64_t>();
          }
          for (const char* split : {"train", "val"})
            for (const auto& s : e.at(split).at("shards"))
              it->second[s.at("file").get<std::string>()] = max_id;
        }
      } catch (const std::exception&) {
        it->second.clear();  // not a manifest we understand: the shards will be scanned
      }
    }
    auto e = it->second.find((fp.parent_path().filename() / fp.filename()).string());
    out.push_back(e == it->second.end() ? -1 : e->second);
  }
  return out;
}

}  // namespace

struct TrainLoader::Impl {
  struct Source {
    std::string name;
    std::unique_ptr<ShardSet> shards;
    std::unique_ptr<BlockOrder> order;
    std::vector<int64_t> manifest_max;  // per shard, -1 unknown
  };
  // A micro-batch and the counters after it.
  struct Batch {
    std::vector<int32_t> tokens, targets;
    uint64_t samples = 0;
    std::vector<uint64_t> consumed;
    std::exception_ptr error;
  };
  TrainLoaderOptions opts;
  std::vector<Source> sources;
  std::vector<double> cumulative;  // normalized cumulative weights; last = 1
  json fingerprint;
  // The state handed out: global samples and blocks taken from each source's stream.
  uint64_t samples = 0;
  std::vector<uint64_t> consumed;
  double wait = 0;
  std::exception_ptr failed;  // a read error, thrown again by every later next()
  // Prefetch: the producer's own counters, a bounded queue, and the thread.
  uint64_t ahead_samples = 0;
  std::vector<uint64_t> ahead_consumed;
  std::deque<Batch> queue;
  std::mutex mu;
  std::condition_variable ready, space;
  bool stopping = false;
  std::thread producer;
  // max_token_id, computed once.
  mutable std::once_flag max_once;
  mutable uint64_t max_id = 0;
  mutable std::string max_origin;

  size_t choose(uint64_t i) const {
    double u = double(hash_mix(opts.seed, kSourceTag, i) >> 11) * 0x1.0p-53;
    size_t s =
        size_t(std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin());
    return std::min(s, sources.size() - 1);
  }

  // Reads the micro-batch after counters (n_samples, n_consumed) into tokens/targets and
  // advances the counters. Walks every rank's samples so that all ranks keep the same
  // counters; reads only ours.
  void produce(uint64_t& n_samples, std::vector<uint64_t>& n_consumed, int32_t* tokens,
               int32_t* targets) {
    const uint64_t w = uint64_t(opts.world), T = uint64_t(opts.seq_len);
    const uint64_t n = uint64_t(opts.micro_batch) * w;
    std::vector<uint64_t> c = n_consumed;
    std::vector<int32_t> block(T + 1);
    for (uint64_t j = 0; j < n; ++j) {
      const size_t s = choose(n_samples + j);
      const uint64_t position = c[s]++;
      if (j % w != uint64_t(opts.rank)) continue;
      auto [shard, b] = sources[s].order->at(position);
      sources[s].shards->read_block(shard, b, block.data());
      if (opts.vocab_size)
        for (int32_t t : block)
          TL_CHECK(uint64_t(t) < opts.vocab_size, "data: source '", sources[s].name, "': shard '",
                   sources[s].shards->path(shard), "' holds token id ", t, " in block ", b,
                   ", outside the vocabulary of ", opts.vocab_size);
      const uint64_t row = j / w;
      std::copy(block.begin(), block.end() - 1, tokens + row * T);
      std::copy(block.begin() + 1, block.end(), targets + row * T);
    }
    n_consumed = c;  // commit only after every read succeeded
    n_samples += n;
  }

  void run_producer() {
    const size_t elems = size_t(opts.micro_batch) * size_t(opts.seq_len);
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        space.wait(lock, [&] { return stopping || queue.size() < size_t(opts.prefetch); });
        if (stopping) return;
      }
      Batch b;
      b.tokens.resize(elems);
      b.targets.resize(elems);
      try {
        produce(ahead_samples, ahead_consumed, b.tokens.data(), b.targets.data());
        b.samples = ahead_samples;
        b.consumed = ahead_consumed;
      } catch (...) {
        b.error = std::current_exception();
      }
      const bool failed_now = bool(b.error);
      {
        std::lock_guard<std::mutex> lock(mu);
        queue.push_back(std::move(b));
      }
      ready.notify_one();
      if (failed_now) return;
    }
  }

  void start_producer() {
    ahead_samples = samples;
    ahead_consumed = consumed;
    stopping = false;
    producer = std::thread([this] { run_producer(); });
  }

  void stop_producer() {
    if (!producer.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
    }
    space.notify_all();
    producer.join();
    queue.clear();
  }
};

TrainLoader::TrainLoader(const TrainLoaderOptions& o) : impl_(std::make_unique<Impl>()) {
  TL_CHECK(o.seq_len > 0, "data: seq_len must be positive, got ", o.seq_len);
  TL_CHECK(o.micro_batch > 0, "data: micro_batch must be positive, got ", o.micro_batch);
  TL_CHECK(o.world >= 1 && o.rank >= 0 && o.rank < o.world, "data: rank ", o.rank,
           " is not in a world of ", o.world);
  TL_CHECK(o.shuffle_window >= 1, "data: shuffle_window must be >= 1, got ", o.shuffle_window);
  TL_CHECK(o.prefetch >= 0, "data: prefetch must be >= 0, got ", o.prefetch);
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
    std::vector<std::string> paths = expand_shard_paths(spec.paths);
    std::vector<int64_t> max_ids = manifest_max_ids(paths);
    // The prefetch thread keeps a window's shards mapped while the caller's may differ.
    auto shards =
        std::make_unique<ShardSet>(std::move(paths), block_tokens, size_t(o.shuffle_window) + 2);
    TL_CHECK(shards->total_blocks() > 0, "data: source '", spec.name, "' has ",
             shards->total_tokens(), " tokens in ", shards->size(),
             " shards but no complete block of seq_len+1 = ", block_tokens,
             " tokens (blocks do not cross shard boundaries)");
    auto order =
        std::make_unique<BlockOrder>(shards->block_counts(), o.shuffle_window, hash_mix(o.seed, i));
    fp_sources.push_back(
        {{"name", spec.name}, {"shards", shards->size()}, {"blocks", shards->total_blocks()}});
    m.sources.push_back({spec.name, std::move(shards), std::move(order), std::move(max_ids)});
    total += spec.weight;
    m.cumulative.push_back(total);
  }
  for (double& c : m.cumulative) c /= total;
  m.cumulative.back() = 1.0;
  m.consumed.assign(m.sources.size(), 0);
  m.fingerprint = {{"seq_len", o.seq_len},
                   {"seed", o.seed},
                   {"shuffle_window", o.shuffle_window},
                   {"sources", fp_sources}};
}

TrainLoader::~TrainLoader() { impl_->stop_producer(); }

void TrainLoader::next(int32_t* tokens, int32_t* targets) {
  Impl& m = *impl_;
  Timer timer;
  if (m.failed) std::rethrow_exception(m.failed);
  if (m.opts.prefetch == 0) {
    m.produce(m.samples, m.consumed, tokens, targets);
    m.wait += timer.seconds();
    return;
  }
  if (!m.producer.joinable()) m.start_producer();  // lazily: restore() may come first
  Impl::Batch b;
  {
    std::unique_lock<std::mutex> lock(m.mu);
    m.ready.wait(lock, [&] { return !m.queue.empty(); });
    b = std::move(m.queue.front());
    m.queue.pop_front();
  }
  m.space.notify_one();
  if (b.error) {
    m.failed = b.error;
    m.wait += timer.seconds();
    std::rethrow_exception(b.error);
  }
  std::copy(b.tokens.begin(), b.tokens.end(), tokens);
  std::copy(b.targets.begin(), b.targets.end(), targets);
  m.samples = b.samples;
  m.consumed = std::move(b.consumed);
  m.wait += timer.seconds();
}

double TrainLoader::wait_seconds() const { return impl_->wait; }

json TrainLoader::state() const {
  const Impl& m = *impl_;
  return {{"version", 1},
          {"samples", m.samples},
          {"consumed", m.consumed},
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
           " blocks consumed by the sources but ", state["samples"].get<uint64_t>(),
           " samples taken");
  m.stop_producer();  // what it read ahead follows the old counters
  m.failed = nullptr;
  m.samples = state["samples"].get<uint64_t>();
  m.consumed = consumed.get<std::vector<uint64_t>>();
}

int64_t TrainLoader::blocks_in_source(size_t i) const {
  TL_CHECK(i < impl_->sources.size(), "data: no source ", i);
  return impl_->sources[i].shards->total_blocks();
}

uint64_t TrainLoader::max_token_id() const {
  const Impl& m = *impl_;
  std::call_once(m.max_once, [&] {
    constexpr uint64_t kScanTokens = uint64_t(1) << 28;
    uint64_t best = 0, unknown_tokens = 0;
    std::vector<std::pair<const ShardSet*, size_t>> unknown;
    for (const auto& s : m.sources)
      for (size_t k = 0; k < s.shards->size(); ++k) {
        if (s.manifest_max[k] >= 0) {
          best = std::max(best, uint64_t(s.manifest_max[k]));
        } else {
          unknown.emplace_back(s.shards.get(), k);
          unknown_tokens += s.shards->tokens(k);
        }
      }
    size_t scanned = 0;
    if (unknown_tokens <= kScanTokens) {
      for (auto [set, k] : unknown) best = std::max(best, set->scan_max(k));
      scanned = unknown.size();
    } else {  // evenly spread shards until kScanTokens are read
      uint64_t read = 0;
      const size_t stride = size_t((unknown_tokens + kScanTokens - 1) / kScanTokens);
      for (size_t i = 0; i < unknown.size() && read < kScanTokens; i += stride, ++scanned) {
        best = std::max(best, unknown[i].first->scan_max(unknown[i].second));
        read += unknown[i].first->tokens(unknown[i].second);
      }
    }
    m.max_id = best;
    const size_t total = unknown.size();
    m.max_origin = total == 0         ? "manifests"
                   : scanned == total ? cat("manifests + a scan of ", total, " shards without one")
                                      : cat("manifests + a sample of ", scanned, " of ", total,
                                            " shards without one");
  });
  return m.max_id;
}

std::string TrainLoader::max_token_id_origin() const {
  max_token_id();
  return impl_->max_origin;
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
  std::vector<std::string> files = expand_shard_paths(paths);
  impl_->shards = std::make_unique<ShardSet>(std::move(files), int64_t(seq_len) + 1, 2);
  const ShardSet& s = *impl_->shards;
  TL_CHECK(s.total_blocks() > 0, "data: the ", s.size(), " evaluation shards (", s.path(0),
           ", ...) hold ", s.total_tokens(),
           " tokens but no complete block of seq_len+1 = ", seq_len + 1, " tokens");
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
