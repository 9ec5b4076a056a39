// Data benchmark helpers (bench/data_bench.sh drives them):
//   tinyllama_data_bench make-inputs TEXT OUT_DIR MB
//     OUT_DIR/text.txt: TEXT repeated to MB megabytes; OUT_DIR/slim.jsonl.zst: its
//     paragraphs as SlimPajama-schema JSON lines ({"text", "meta": {"redpajama_set_name"}}).
//   tinyllama_data_bench loader SHARD_DIR SEQ_LEN BATCH STEPS STEP_MS PREFETCH [cold]
//     Reads STEPS micro-batches; with STEP_MS > 0 each step also "computes" that long (a
//     sleep), as a training step would. Prints blocks/s and the time spent in next() per
//     step. "cold" first drops the shards from the page cache (posix_fadvise), so blocks
//     come from the disk.
#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_reader.h"
#include "core/timer.h"
#include "data/loader.h"

using namespace tl;

namespace {

int make_inputs(const std::string& src, const std::string& dir, double mb) {
  const std::string text = read_file(src);
  make_dirs(dir);
  std::string big;
  while (double(big.size()) < mb * 1e6) big += text;
  write_file_atomic(dir + "/text.txt", big);
  // Paragraphs (split at blank lines) as JSON lines, then zstd level 3 (as SlimPajama's).
  std::string lines;
  for (size_t at = 0; at < big.size();) {
    size_t end = big.find("\n\n", at);
    if (end == std::string::npos) end = big.size();
    if (end > at)
      lines += json{{"text", big.substr(at, end - at)},
                    {"meta", {{"redpajama_set_name", "RedPajamaBook"}}}}
                   .dump() +
               "\n";
    at = end + 2;
  }
  std::string packed(ZSTD_compressBound(lines.size()), '\0');
  packed.resize(ZSTD_compress(packed.data(), packed.size(), lines.data(), lines.size(), 3));
  write_file_atomic(dir + "/slim.jsonl.zst", packed);
  std::printf("text.txt %.1f MB, slim.jsonl.zst %.1f MB (%.1f MB of JSON lines)\n",
              big.size() / 1e6, packed.size() / 1e6, lines.size() / 1e6);
  return 0;
}

void drop_from_page_cache(const std::string& dir) {
  for (const auto& f : list_files(dir, ".bin")) {
    int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

int loader(const std::string& dir, int seq_len, int batch, int steps, double step_ms, int prefetch,
           bool cold) {
  if (cold) drop_from_page_cache(dir);
  TrainLoaderOptions o;
  o.sources = {{"bench", {dir}, 1.0}};
  o.seq_len = seq_len;
  o.micro_batch = batch;
  o.seed = 1;
  o.prefetch = prefetch;
  Timer start;
  TrainLoader l(o);
  const double startup = start.seconds();
  std::vector<int32_t> tokens(size_t(batch) * seq_len), targets(tokens.size());
  std::vector<double> waits;
  Timer total;
  for (int s = 0; s < steps; ++s) {
    const double before = l.wait_seconds();
    l.next(tokens.data(), targets.data());
    waits.push_back(l.wait_seconds() - before);
    if (step_ms > 0)
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(step_ms));
  }
  const double secs = total.seconds();
  std::sort(waits.begin(), waits.end());
  double sum = 0;
  for (double w : waits) sum += w;
  std::printf(
      "loader (%s cache): seq_len %d, batch %d, prefetch %d, step %.0f ms: start-up %.3f s, %d "
      "steps "
      "in %.2f s = %.0f blocks/s; next() per step: mean %.1f us, median %.1f us, p99 %.1f us, max "
      "%.1f us "
      "(the first call starts the prefetch)\n",
      cold ? "cold" : "warm", seq_len, batch, prefetch, step_ms, startup, steps, secs,
      double(steps) * batch / secs, 1e6 * sum / steps, 1e6 * waits[waits.size() / 2],
      1e6 * waits[waits.size() * 99 / 100], 1e6 * waits.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "make-inputs" && argc == 5) return make_inputs(argv[2], argv[3], std::stod(argv[4]));
    if (cmd == "loader" && (argc == 8 || (argc == 9 && std::string(argv[8]) == "cold")))
      return loader(argv[2], std::stoi(argv[3]), std::stoi(argv[4]), std::stoi(argv[5]),
                    std::stod(argv[6]), std::stoi(argv[7]), argc == 9);
    std::fprintf(stderr,
                 "usage: %s make-inputs TEXT OUT_DIR MB | loader SHARD_DIR SEQ_LEN BATCH STEPS "
                 "STEP_MS PREFETCH [cold]\n",
                 argv[0]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
