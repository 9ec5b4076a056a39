#include "data/prepare.h"

#include <fnmatch.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <numeric>
#include <thread>
#include <type_traits>

#include "core/error.h"
#include "core/fs.h"
#include "core/process_memory.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/documents.h"
#include "data/parquet/reader.h"
#include "data/progress.h"
#include "data/tokenizer.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBatchRecords = 1 << 16;
constexpr uint64_t kValFileTag = 0x7661'6c66'696c'65ull;

struct Counts {
  uint64_t records = 0, bytes = 0;
  uint64_t docs[2] = {0, 0}, tokens[2] = {0, 0};  // [0] train, [1] val
  uint64_t skipped[size_t(Skip::Count)] = {};
  std::map<std::string, uint64_t> sets;  // records per set name (JSON lines with a set field)
};

// One record's outcome, computed in parallel.
struct Tokenized {
  Skip skip = Skip::None;
  std::vector<int32_t> ids;  // the document's ids + EOS
  std::string set, error;
};

void validate(const PrepareOptions& o) {
  TL_CHECK(!o.source.empty(), "prepare: no source name");
  for (char ch : o.source)
    TL_CHECK(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.',
             "prepare: source name '", o.source, "' may only hold letters, digits, '_', '-', '.'");
  TL_CHECK(!o.out_dir.empty(), "prepare: no output folder");
  TL_CHECK(!o.inputs.empty(), "prepare: no inputs");
  TL_CHECK(!o.text_field.empty(), "prepare: empty text field name");
  TL_CHECK(!o.column.empty(), "prepare: empty parquet column name");
  TL_CHECK(o.chunk_tokens > 0, "prepare: chunk size must be positive");
  TL_CHECK(o.threads >= 0, "prepare: threads must be >= 0");
  TL_CHECK(o.val_fraction >= 0 && o.val_fraction < 1, "prepare: val fraction ", o.val_fraction,
           " is outside [0, 1)");
  TL_CHECK(o.val_fraction == 0 || o.val_files.empty(),
           "prepare: hold out documents (val fraction) or files (val files), not both");
  TL_CHECK(o.exclude_sets.empty() || !o.set_field.empty(),
           "prepare: excluded sets need a set field");
}

std::vector<std::string> split_path(const std::string& dotted) {
  std::vector<std::string> out;
  size_t at = 0;
  while (!dotted.empty()) {
    size_t dot = dotted.find('.', at);
    out.push_back(dotted.substr(at, dot == std::string::npos ? std::string::npos : dot - at));
    if (dot == std::string::npos) break;
    at = dot + 1;
  }
  return out;
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
  if (!file_exists(path))
    return {{"format", "tinyllama-prepare"}, {"version", 1}, {"sources", json::object()}};
  json m = read_json_file(path);
  TL_CHECK(m.is_object() && m.value("format", "") == "tinyllama-prepare" && m.contains("sources") &&
               m["sources"].is_object(),
           "prepare: '", path, "' exists but is not a tinyllama prepare manifest");
  return m;
}

// Per input, in parallel: its quick identity and, for parquet, whether the column can be
// read. Every unreadable column is reported at once, before any work.
std::vector<std::string> identify_inputs(const std::vector<InputFile>& files,
                                         const std::string& column, int threads) {
  std::vector<std::string> ids(files.size()), problems(files.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t i = 0; i < int64_t(files.size()); ++i) {
    try {
      ids[i] = quick_file_identity(files[i].path);
      if (files[i].format == InputFormat::Parquet)
        problems[i] = parquet::ParquetFile(files[i].path).string_column_problem(column);
    } catch (const std::exception& e) {
      problems[i] = e.what();
    }
  }
  std::string report;
  size_t bad = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    if (problems[i].empty()) continue;
    if (++bad <= 10) report += cat("\n  ", files[i].path, ": ", problems[i]);
  }
  TL_CHECK(bad == 0, "prepare: ", bad, " of ", files.size(), " inputs cannot be read", report,
           bad > 10 ? "\n  ..." : "");
  return ids;
}

// A member of an object, or null for a missing key or a non-object. An existing manifest is
// read through this: a damaged one must give an error or a mismatch, never a const
// operator[] on a missing key (undefined behaviour) or a stray json exception.
const json& member(const json& j, const char* key) {
  static const json none;
  if (!j.is_object()) return none;
  auto it = j.find(key);
  return it == j.end() ? none : *it;
}

// Refuses inputs listed twice or held by another source of the manifest.
void check_duplicates(const json& inputs, const json& manifest, const std::string& source,
                      const std::string& manifest_path) {
  std::map<std::pair<uint64_t, std::string>, std::string> seen;  // (bytes, quick) → where
  for (const auto& [name, entry] : member(manifest, "sources").items()) {
    const json& listed = member(entry, "inputs");
    if (name == source || !listed.is_array()) continue;
    for (const auto& in : listed) {
      const json &quick = member(in, "quick_sha256"), &bytes = member(in, "bytes"),
                 &path = member(in, "path");
      if (!quick.is_string()) continue;
      TL_CHECK(bytes.is_number_unsigned(), "prepare: '", manifest_path, "' is damaged: sources.",
               name, ".inputs lists an input whose 'bytes' is ", bytes.dump(),
               " (not a size); fix or remove the manifest");
      seen[{bytes.get<uint64_t>(), quick.get<std::string>()}] =
          cat("source '", name, "' of ", manifest_path, " (as ",
              path.is_string() ? path.get<std::string>() : path.dump(), ")");
    }
  }
  for (const auto& in : inputs) {
    auto key = std::make_pair(in["bytes"].get<uint64_t>(), in["quick_sha256"].get<std::string>());
    auto [it, fresh] = seen.emplace(key, cat("this run (as ", in["path"].get<std::string>(), ")"));
    TL_CHECK(
        fresh, "prepare: input '", in["path"].get<std::string>(), "' is already prepared in ",
        it->second,
        ": its documents would be trained on twice. Pass --allow-duplicates to prepare it anyway");
  }
}

// The parts of a manifest entry that make two runs the same run.
bool same_run(const json& prev, const json& head) {
  for (const char* k : {"separator", "text_field", "column", "set_field", "exclude_sets",
                        "val_fraction", "val_files", "chunk_size", "strict"})
    if (!prev.is_object() || !prev.contains(k) || prev[k] != head[k]) return false;
  if (member(member(prev, "tokenizer"), "sha256") != head["tokenizer"]["sha256"]) return false;
  const json& inputs = member(prev, "inputs");
  if (!inputs.is_array() || inputs.size() != head["inputs"].size()) return false;
  for (size_t i = 0; i < head["inputs"].size(); ++i)
    if (member(inputs[i], "quick_sha256") != head["inputs"][i]["quick_sha256"] ||
        member(inputs[i], "bytes") != head["inputs"][i]["bytes"])
      return false;
  return true;
}

bool shards_present(const std::string& dir, const json& entry) {
  for (const char* split : {"train", "val"}) {
    const json& shards = member(member(entry, split), "shards");
    if (!shards.is_array()) return false;
    for (const auto& s : shards) {
      const json& file = member(s, "file");
      if (!file.is_string() || !file_exists(dir + "/" + file.get<std::string>())) return false;
    }
  }
  return true;
}

void tokenize_batch(const Tokenizer& tok, const std::vector<InputFile>& files,
                    const TextSelection& sel, int threads, std::vector<RawRecord>& batch,
                    std::vector<Tokenized>& out, ProgressCounters& progress) {
  out.assign(batch.size(), Tokenized{});
  // Largest records first, so that no thread is left with a big one at the end of the
  // batch; the results keep their places, so the order of documents does not change.
  std::vector<uint32_t> order(batch.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return batch[a].data.size() > batch[b].data.size();
  });
  const int eos = tok.eos_id();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t k = 0; k < int64_t(order.size()); ++k) {
    const uint32_t i = order[size_t(k)];
    Tokenized& t = out[i];
    try {
      t.skip = extract_text(batch[i], files[batch[i].file].format, sel, &t.set);
      if (t.skip != Skip::None) continue;
      static_assert(std::is_same_v<int32_t, int>, "the tokenizer's ids move into the document");
      t.ids = tok.encode(batch[i].data);
      t.ids.push_back(eos);
      progress.text_bytes.fetch_add(batch[i].data.size(), std::memory_order_relaxed);
      progress.documents.fetch_add(1, std::memory_order_relaxed);
      progress.tokens.fetch_add(t.ids.size(), std::memory_order_relaxed);
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

// text: bytes of the documents' text (what was tokenized).
void print_summary(const PrepareOptions& o, const json& e, const Counts& c, uint64_t text,
                   size_t files, uint64_t disk, double s, int threads) {
  const double t = std::max(s, 1e-9), docs = double(c.docs[0] + c.docs[1]);
  const double toks = double(c.tokens[0] + c.tokens[1]);
  std::fprintf(stderr,
               "prepare: %s done in %s: %s read from %zu files (%s of records), %s of text in %s "
               "documents, %s tokens\n",
               o.source.c_str(), Progress::duration(s).c_str(),
               Progress::bytes(double(disk)).c_str(), files,
               Progress::bytes(double(c.bytes)).c_str(), Progress::bytes(double(text)).c_str(),
               Progress::count(docs).c_str(), Progress::count(toks).c_str());
  std::fprintf(
      stderr,
      "prepare: %.2f MB/s of text (%.2f MB/s per thread, %d threads), %s docs/s, %s tokens/s\n",
      double(text) / 1e6 / t, double(text) / 1e6 / t / threads, threads,
      Progress::count(docs / t).c_str(), Progress::count(toks / t).c_str());
  std::fprintf(
      stderr, "prepare: train %s tokens in %zu shards, val %s tokens in %zu shards, in %s\n",
      Progress::count(double(c.tokens[0])).c_str(), e["train"]["shards"].size(),
      Progress::count(double(c.tokens[1])).c_str(), e["val"]["shards"].size(), o.out_dir.c_str());
  std::fprintf(stderr, "prepare: skipped %s\n",
               e["skipped"].empty() ? "nothing" : e["skipped"].dump().c_str());
  if (!e["sets"].empty())
    std::fprintf(stderr, "prepare: records per set %s\n", e["sets"].dump().c_str());
  std::fprintf(stderr, "prepare: peak memory %.1f MiB\n",
               double(peak_resident_bytes()) / (1 << 20));
}

}  // namespace

bool is_val_document(uint64_t index, double val_fraction) {
  return double(hash_mix(kValSplitSeed, index) >> 11) * 0x1.0p-53 < val_fraction;
}

std::vector<bool> val_file_mask(const std::vector<std::string>& paths, const std::string& spec) {
  std::vector<bool> mask(paths.size(), false);
  if (spec.empty()) return mask;
  if (spec.find_first_not_of("0123456789") == std::string::npos) {
    const uint64_t n = std::stoull(spec);
    TL_CHECK(n < paths.size(), "prepare: --val-files ", n, " leaves no training file of ",
             paths.size());
    // The n files with the smallest hash of their position: spread, fixed, thread-free.
    std::vector<std::pair<uint64_t, size_t>> keyed;
    for (size_t i = 0; i < paths.size(); ++i) keyed.emplace_back(hash_mix(kValFileTag, i), i);
    std::sort(keyed.begin(), keyed.end());
    for (uint64_t k = 0; k < n; ++k) mask[keyed[k].second] = true;
    return mask;
  }
  size_t hits = 0;
  for (size_t i = 0; i < paths.size(); ++i)
    hits += mask[i] = ::fnmatch(spec.c_str(), paths[i].c_str(), 0) == 0;
  TL_CHECK(hits > 0, "prepare: --val-files pattern '", spec, "' matches none of the ", paths.size(),
           " inputs");
  TL_CHECK(hits < paths.size(), "prepare: --val-files pattern '", spec, "' matches every input");
  return mask;
}

json prepare_dataset(const PrepareOptions& o) {
  validate(o);
  const Tokenizer tok = Tokenizer::load(o.tokenizer);
  const std::vector<InputFile> files = expand_inputs(o.inputs, o.folder_suffixes);
  TL_CHECK(!files.empty(), "prepare: the input folders hold no files ending in ",
           json(o.folder_suffixes).dump(), " (see --ext)");
  const int threads =
      o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::string> paths;
  for (const auto& f : files) paths.push_back(f.path);
  const std::vector<bool> val_mask = val_file_mask(paths, o.val_files);
  const std::vector<std::string> ids = identify_inputs(files, o.column, threads);

  const std::string train_dir = o.out_dir + "/train", val_dir = o.out_dir + "/val";
  const std::string manifest_path = o.out_dir + "/manifest.json";
  json manifest = read_manifest(manifest_path);  // fail early on a foreign file
  json inputs = json::array();
  uint64_t disk_total = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    inputs.push_back({{"path", files[i].path},
                      {"bytes", files[i].bytes},
                      {"format", format_name(files[i].format)},
                      {"quick_sha256", ids[i]},
                      {"val", bool(val_mask[i])}});
    disk_total += files[i].bytes;
  }
  json entry = {
      {"tool", kPrepareTool},
      {"source", o.source},
      {"tokenizer",
       {{"path", tok.path()}, {"sha256", tok.sha256()}, {"vocab_size", tok.vocab_size()}}},
      {"inputs", inputs},
      {"separator", o.separator ? json(*o.separator) : json(nullptr)},
      {"text_field", o.text_field},
      {"column", o.column},
      {"set_field", o.set_field},
      {"exclude_sets", o.exclude_sets},
      {"strict", o.strict},
      {"val_fraction", o.val_fraction},
      {"val_files", o.val_files},
      {"val_seed", kValSplitSeed},
      {"chunk_size", o.chunk_tokens},
      {"dtype", packed_dtype_name(packed_dtype_for_vocab(tok.vocab_size()))},
  };
  if (manifest["sources"].contains(o.source) && !o.overwrite) {
    const json& prev = manifest["sources"][o.source];
    if (same_run(prev, entry) && shards_present(o.out_dir, prev)) {
      std::fprintf(
          stderr,
          "prepare: source '%s' in %s was already prepared from these %zu inputs with these "
          "settings (same sizes and hashes): nothing to do (--overwrite redoes it)\n",
          o.source.c_str(), o.out_dir.c_str(), files.size());
      return prev;
    }
  }
  if (!o.allow_duplicates) check_duplicates(inputs, manifest, o.source, manifest_path);
  std::vector<std::string> old = shards_of(train_dir, o.source);
  for (auto& f : shards_of(val_dir, o.source)) old.push_back(f);
  if (!old.empty()) {
    TL_CHECK(o.overwrite, "prepare: '", o.out_dir, "' already holds ", old.size(),
             " shards of source '", o.source, "' (", old[0],
             ", ...) from other inputs or settings; pass --overwrite to replace them");
    for (const auto& f : old) fs::remove(f);
    // Until the new shards are done, the manifest must not describe the removed ones.
    if (manifest["sources"].erase(o.source))
      write_file_atomic(manifest_path, manifest.dump(2) + "\n");
  }

  const bool any_val =
      o.val_fraction > 0 || std::find(val_mask.begin(), val_mask.end(), true) != val_mask.end();
  const size_t batch_bytes =
      o.batch_bytes ? o.batch_bytes : std::max<size_t>(16 << 20, size_t(threads) * (4 << 20));
  TextSelection sel;
  sel.field = o.text_field;
  sel.set_path = split_path(o.set_field);
  sel.exclude_sets = o.exclude_sets;
  PackedWriter train(train_dir, o.source, tok.vocab_size(), o.chunk_tokens);
  std::optional<PackedWriter> val;
  if (any_val) val.emplace(val_dir, o.source, tok.vocab_size(), o.chunk_tokens);
  Counts c;
  Timer timer;
  RecordReader reader(files, o.separator, o.column);
  ProgressCounters counters;
  try {
    // Input consumed: the batches done, plus the share of the current batch's input that
    // its text tokenized so far stands for (the reader itself runs a batch ahead).
    std::atomic<uint64_t> disk_lo{0}, disk_hi{0}, text_lo{0}, text_hi{0};
    auto disk_done = [&] {
      const double lo = double(disk_lo.load()), hi = double(disk_hi.load());
      const double tl = double(text_lo.load()), th = double(text_hi.load());
      const double f =
          th > tl ? std::clamp((double(counters.text_bytes.load()) - tl) / (th - tl), 0.0, 1.0) : 0;
      return uint64_t(lo + (hi - lo) * f);
    };
    Progress progress("prepare " + o.source, disk_total, disk_done, counters, o.progress_seconds,
                      o.progress);
    using Batch =
        std::pair<std::vector<RawRecord>, uint64_t>;  // records, input bytes consumed after them
    auto read_batch = [&] {
      Batch b;
      reader.next_batch(b.first, batch_bytes, kBatchRecords);
      b.second = reader.disk_bytes();
      return b;
    };
    // Packs one tokenized batch into the shards, in input order (runs on its own thread).
    auto pack = [&](std::vector<RawRecord> batch, std::vector<Tokenized> out) {
      for (size_t i = 0; i < batch.size(); ++i) {
        const uint64_t index = c.records++;
        const Tokenized& t = out[i];
        const std::string& file = files[batch[i].file].path;
        TL_CHECK(t.error.empty(), "prepare: ", file, ":", batch[i].line, ": ", t.error);
        if (!t.set.empty()) c.sets[t.set]++;
        if (t.skip != Skip::None) {
          TL_CHECK(!(o.strict && skip_is_malformed(t.skip)), "prepare: ", file, ":", batch[i].line,
                   ": ", skip_name(t.skip), " (--strict)");
          c.skipped[size_t(t.skip)]++;
          continue;
        }
        const int split =
            val && (val_mask[batch[i].file] || is_val_document(index, o.val_fraction)) ? 1 : 0;
        (split ? *val : train).add(t.ids.data(), t.ids.size());
        c.docs[split]++;
        c.tokens[split] += t.ids.size();
      }
    };  // batch and out are freed here too, off the tokenizing path
    // Three stages at once: reading batch k+1, tokenizing batch k, packing batch k-1. Packing
    // is serial, so left in line it would cap the speed-up at 16 threads near 10x.
    std::future<Batch> next = std::async(std::launch::async, read_batch);
    std::future<void> packing;  // declared last: on an error it finishes before files go
    for (;;) {
      Batch got;
      try {
        got = next.get();
      } catch (...) {
        if (packing.valid()) packing.get();  // an error earlier in the input is the one to report
        throw;
      }
      auto& [batch, disk_after] = got;
      if (batch.empty()) break;
      next = std::async(std::launch::async, read_batch);
      uint64_t raw = 0;
      for (const auto& r : batch) raw += r.data.size();
      c.bytes += raw;
      disk_lo = disk_hi.load();
      text_lo = counters.text_bytes.load();
      text_hi = text_lo + raw;  // the text is at most the records' bytes
      disk_hi = disk_after;
      std::vector<Tokenized> out;
      tokenize_batch(tok, files, sel, threads, batch, out, counters);
      if (packing.valid()) packing.get();  // the batch before, packed (or its error thrown)
      packing = std::async(std::launch::async, pack, std::move(batch), std::move(out));
    }
    if (packing.valid()) packing.get();
    disk_lo = disk_hi = disk_total;
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
  for (size_t i = 0; i < files.size(); ++i) entry["inputs"][i]["sha256"] = reader.file_sha256(i);
  entry["documents"] = c.docs[0] + c.docs[1];
  entry["tokens"] = c.tokens[0] + c.tokens[1];
  entry["max_token_id"] = std::max(train.max_id(), val ? val->max_id() : -1);
  entry["skipped"] = skipped;
  entry["sets"] = c.sets;
  entry["train"] = split_entry(&train, c.docs[0], o.chunk_tokens);
  entry["val"] = split_entry(val ? &*val : nullptr, c.docs[1], o.chunk_tokens);
  manifest["sources"][o.source] = entry;
  write_file_atomic(manifest_path, manifest.dump(2) + "\n");
  if (o.progress)
    print_summary(o, entry, c, counters.text_bytes.load(), files.size(), disk_total,
                  timer.seconds(), threads);
  return entry;
}

}  // namespace tl
