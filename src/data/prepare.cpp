#include "data/prepare.h"

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <future>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/documents.h"
#include "data/tokenizer.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBatchBytes = 16 << 20;  // text per parallel batch: amortizes the join
constexpr size_t kBatchRecords = 1 << 16;
constexpr double kProgressSeconds = 5;

struct Counts {
  uint64_t records = 0, bytes = 0;
  uint64_t docs[2] = {0, 0}, tokens[2] = {0, 0};  // [0] train, [1] val
  uint64_t skipped[size_t(Skip::Count)] = {};
};

// One record's outcome, computed in parallel.
struct Tokenized {
  Skip skip = Skip::None;
  std::vector<int32_t> ids;  // the document's ids + EOS
  std::string error;
};

void validate(const PrepareOptions& o) {
  TL_CHECK(!o.source.empty(), "prepare: no source name");
  for (char ch : o.source)
    TL_CHECK(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.',
             "prepare: source name '", o.source, "' may only hold letters, digits, '_', '-', '.'");
  TL_CHECK(!o.out_dir.empty(), "prepare: no output folder");
  TL_CHECK(!o.inputs.empty(), "prepare: no inputs");
  TL_CHECK(!o.text_field.empty(), "prepare: empty text field name");
  TL_CHECK(o.chunk_tokens > 0, "prepare: chunk size must be positive");
  TL_CHECK(o.threads >= 0, "prepare: threads must be >= 0");
  TL_CHECK(o.val_fraction >= 0 && o.val_fraction < 1, "prepare: val fraction ", o.val_fraction,
           " is outside [0, 1)");
}

// Shards named SOURCE_<digits>.bin in dir.
std::vector<std::string> shards_of(const std::string& dir, const std::string& source) {
  std::vector<std::string> out;
  if (!is_directory(dir)) return out;
  const std::string head = source + "_";
  for (const auto& f : list_files(dir, ".bin")) {
    std::string name = fs::path(f).filename().string();
    std::string digits = name.substr(0, name.size() - 4);
    if (digits.compare(0, head.size(), head) != 0 || digits.size() == head.size()) continue;
    digits = digits.substr(head.size());
    if (digits.find_first_not_of("0123456789") == std::string::npos) out.push_back(f);
  }
  return out;
}

json read_manifest(const std::string& path) {
  if (!file_exists(path)) return {{"format", "tinyllama-prepare"}, {"version", 1}, {"sources", json::object()}};
  json m = read_json_file(path);
  TL_CHECK(m.is_object() && m.value("format", "") == "tinyllama-prepare" && m.contains("sources") &&
               m["sources"].is_object(),
           "prepare: '", path, "' exists but is not a tinyllama prepare manifest");
  return m;
}

void tokenize_batch(const Tokenizer& tok, const std::vector<InputFile>& files,
                    const std::string& field, int threads, std::vector<RawRecord>& batch,
                    std::vector<Tokenized>& out) {
  out.assign(batch.size(), Tokenized{});
  const int eos = tok.eos_id();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t i = 0; i < int64_t(batch.size()); ++i) {
    Tokenized& t = out[i];
    try {
      t.skip = extract_text(batch[i], files[batch[i].file].format, field);
      if (t.skip != Skip::None) continue;
      std::vector<int> ids = tok.encode(batch[i].data);
      t.ids.reserve(ids.size() + 1);
      t.ids.assign(ids.begin(), ids.end());
      t.ids.push_back(eos);
    } catch (const std::exception& e) {
      t.error = e.what();
    }
  }
}

// {documents, tokens, shards: [{file (relative to DIR), tokens}]}; w may be null (no split).
json split_entry(const PackedWriter* w, uint64_t docs, uint64_t chunk) {
  json shards = json::array();
  const uint64_t total = w ? w->tokens_written() : 0;
  for (size_t i = 0; w && i < w->files().size(); ++i) {
    fs::path p(w->files()[i]);
    shards.push_back({{"file", (p.parent_path().filename() / p.filename()).string()},
                      {"tokens", std::min(chunk, total - i * chunk)}});
  }
  return {{"documents", docs}, {"tokens", total}, {"shards", shards}};
}

void print_progress(const char* what, const Counts& c, double seconds) {
  double s = std::max(seconds, 1e-9), docs = double(c.docs[0] + c.docs[1]);
  double toks = double(c.tokens[0] + c.tokens[1]);
  std::fprintf(stderr, "prepare: %s%.1f MB, %.0f docs, %.0f tokens in %.1f s: %.2f MB/s, %.0f docs/s, %.3gM tokens/s\n",
               what, c.bytes / 1e6, docs, toks, seconds, c.bytes / 1e6 / s, docs / s, toks / 1e6 / s);
}

}  // namespace

bool is_val_document(uint64_t index, double val_fraction) {
  return double(hash_mix(kValSplitSeed, index) >> 11) * 0x1.0p-53 < val_fraction;
}

json prepare_dataset(const PrepareOptions& o) {
  validate(o);
  const Tokenizer tok = Tokenizer::load(o.tokenizer);
  const std::vector<InputFile> files = expand_inputs(o.inputs, o.folder_suffixes);
  TL_CHECK(!files.empty(), "prepare: the input folders hold no files ending in ",
           json(o.folder_suffixes).dump(), " (see --ext)");
  const std::string train_dir = o.out_dir + "/train", val_dir = o.out_dir + "/val";
  const std::string manifest_path = o.out_dir + "/manifest.json";
  json manifest = read_manifest(manifest_path);  // fail early on a foreign file
  std::vector<std::string> old = shards_of(train_dir, o.source);
  for (auto& f : shards_of(val_dir, o.source)) old.push_back(f);
  if (!old.empty()) {
    TL_CHECK(o.overwrite, "prepare: '", o.out_dir, "' already holds ", old.size(), " shards of source '",
             o.source, "' (", old[0], ", ...); pass --overwrite to replace them");
    for (const auto& f : old) fs::remove(f);
    // Until the new shards are done, the manifest must not describe the removed ones.
    if (manifest["sources"].erase(o.source)) write_file_atomic(manifest_path, manifest.dump(2) + "\n");
  }
  const int threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));

  PackedWriter train(train_dir, o.source, tok.vocab_size(), o.chunk_tokens);
  std::optional<PackedWriter> val;
  if (o.val_fraction > 0) val.emplace(val_dir, o.source, tok.vocab_size(), o.chunk_tokens);
  Counts c;
  Timer timer, since_print;
  try {
    RecordReader reader(files, o.separator);
    auto read_batch = [&] {
      std::vector<RawRecord> b;
      reader.next_batch(b, kBatchBytes, kBatchRecords);
      return b;
    };
    // Reading the next batch overlaps tokenizing this one.
    std::future<std::vector<RawRecord>> next = std::async(std::launch::async, read_batch);
    std::vector<Tokenized> out;
    for (;;) {
      std::vector<RawRecord> batch = next.get();
      if (batch.empty()) break;
      next = std::async(std::launch::async, read_batch);
      for (const auto& r : batch) c.bytes += r.data.size();
      tokenize_batch(tok, files, o.text_field, threads, batch, out);
      for (size_t i = 0; i < batch.size(); ++i) {
        const uint64_t index = c.records++;
        const Tokenized& t = out[i];
        const std::string& file = files[batch[i].file].path;
        TL_CHECK(t.error.empty(), "prepare: ", file, ":", batch[i].line, ": ", t.error);
        if (t.skip != Skip::None) {
          TL_CHECK(!(o.strict && skip_is_malformed(t.skip)), "prepare: ", file, ":", batch[i].line,
                   ": ", skip_name(t.skip), " (--strict)");
          c.skipped[size_t(t.skip)]++;
          continue;
        }
        const int split = val && is_val_document(index, o.val_fraction) ? 1 : 0;
        (split ? *val : train).add(t.ids.data(), t.ids.size());
        c.docs[split]++;
        c.tokens[split] += t.ids.size();
      }
      if (o.progress && since_print.seconds() >= kProgressSeconds) {
        print_progress("", c, timer.seconds());
        since_print.reset();
      }
    }
    train.finish();
    if (val) val->finish();
  } catch (...) {
    for (const auto& f : train.files()) fs::remove(f);
    if (val)
      for (const auto& f : val->files()) fs::remove(f);
    throw;
  }

  json skipped = json::object();
  for (size_t s = 1; s < size_t(Skip::Count); ++s)
    if (c.skipped[s]) skipped[skip_name(Skip(s))] = c.skipped[s];
  json inputs = json::array();
  for (const auto& f : files)
    inputs.push_back({{"path", f.path}, {"bytes", f.bytes},
                      {"format", f.format == InputFormat::Jsonl ? "jsonl" : "text"}});
  json entry = {
      {"tool", kPrepareTool},
      {"source", o.source},
      {"tokenizer", {{"path", tok.path()}, {"sha256", tok.sha256()}, {"vocab_size", tok.vocab_size()}}},
      {"inputs", inputs},
      {"separator", o.separator ? json(*o.separator) : json(nullptr)},
      {"text_field", o.text_field},
      {"val_fraction", o.val_fraction},
      {"val_seed", kValSplitSeed},
      {"documents", c.docs[0] + c.docs[1]},
      {"tokens", c.tokens[0] + c.tokens[1]},
      {"skipped", skipped},
      {"chunk_size", o.chunk_tokens},
      {"dtype", packed_dtype_name(packed_dtype_for_vocab(tok.vocab_size()))},
      {"train", split_entry(&train, c.docs[0], o.chunk_tokens)},
      {"val", split_entry(val ? &*val : nullptr, c.docs[1], o.chunk_tokens)},
  };
  manifest["sources"][o.source] = entry;
  write_file_atomic(manifest_path, manifest.dump(2) + "\n");
  if (o.progress) {
    print_progress("done: ", c, timer.seconds());
    std::fprintf(stderr, "prepare: %s: %zu train + %zu val shards in %s, skipped %s\n", o.source.c_str(),
                 train.files().size(), val ? val->files().size() : size_t(0), o.out_dir.c_str(),
                 skipped.empty() ? "nothing" : skipped.dump().c_str());
  }
  return entry;
}

}  // namespace tl
