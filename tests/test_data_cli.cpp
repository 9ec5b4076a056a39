// The tinyllama binary's data subcommands, run as a user would.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <unistd.h>
#include <zstd.h>
#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/json_reader.h"
#include "data_test_util.h"

namespace {

std::vector<int> dt_parse_ids(const std::string& line) {
  std::istringstream in(line);
  std::vector<int> ids;
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

std::vector<std::string> dt_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

const std::string dt_binary = TL_BINARY;

// Runs a shell command line and returns {exit code, peak resident memory in MiB} of it.
// Runs a command whose stderr holds prepare's summary; returns its exit code and the peak
// memory it reported (the child's own VmHWM: wait4's ru_maxrss would include the RSS this
// test process had at fork, which is large once GPU tests have run).
std::pair<int, double> dt_run_peak_memory(const std::string& command, const std::string& err_file) {
  const int code = std::system(command.c_str());
  const std::string err = dt::read_text(err_file);
  const std::string key = "prepare: peak memory ";
  const size_t at = err.find(key);
  const double mib = at == std::string::npos ? -1.0 : std::atof(err.c_str() + at + key.size());
  return {WIFEXITED(code) ? WEXITSTATUS(code) : -1, mib};
}

}  // namespace

TEST(DataCli, TokenizeWholeInputMatchesKnownEncodings) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  for (const auto& [text, ids] : dt::llama_cases()) {
    dt::write_text(tmp / "in.txt", text);
    auto r = dt::run_command(dt_binary + " tokenize --tokenizer " + dt::llama_model() +
                                 " --bos --whole < " + tmp / "in.txt",
                             tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(dt_parse_ids(r.out), ids) << "text: " << text;
  }
}

TEST(DataCli, TokenizeLineByLine) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  // "grabbed" → 2646 1327 287 and " grabbed" → 29871 2646 1327 287 (known encodings).
  dt::write_text(tmp / "in.txt", "grabbed\n\n grabbed\n");
  auto r = dt::run_command(
      dt_binary + " tokenize --tokenizer " + dt::llama_model() + " --eos < " + tmp / "in.txt",
      tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = dt_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(dt_parse_ids(lines[0]), (std::vector<int>{2646, 1327, 287, 2}));
  EXPECT_EQ(dt_parse_ids(lines[1]), (std::vector<int>{2}));
  EXPECT_EQ(dt_parse_ids(lines[2]), (std::vector<int>{29871, 2646, 1327, 287, 2}));
}

TEST(DataCli, BadArgumentsFailWithAMessage) {
  dt::TempDir tmp;
  auto r = dt::run_command(
      dt_binary + " tokenize --tokenizer " + tmp / "absent.model" + " < /dev/null", tmp.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("absent.model"), std::string::npos) << r.err;

  dt::write_text(tmp / "corpus.txt", "a few words\n");
  r = dt::run_command(
      dt_binary + " tokenizer-train --out " + tmp / "m" + " --vocab-size 100 " + tmp / "corpus.txt",
      tmp.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("259"), std::string::npos) << r.err;

  r = dt::run_command(dt_binary + " prepare --out " + tmp / "out" + " " + tmp / "corpus.txt",
                      tmp.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--tokenizer"), std::string::npos) << r.err;

  r = dt::run_command(dt_binary + " tokenize --tokenizer " + tmp / "corpus.txt" + " --no-such-flag",
                      tmp.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no-such-flag"), std::string::npos) << r.err;
}

TEST(DataCli, PrepareWritesShardsAndRefusesMissingInputs) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  dt::write_text(tmp / "a.txt", "one\n%\ntwo\n");
  std::string base = dt_binary + " prepare --tokenizer " + dt::llama_model() +
                     " --source demo --out " + tmp / "out" + " --separator % --quiet ";
  auto r = dt::run_command(base + tmp / "a.txt" + " " + tmp / "gone.txt", tmp.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("gone.txt"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp / "out/manifest.json"));

  r = dt::run_command(base + tmp / "a.txt", tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << "--quiet printed: " << r.err;
  tl::json m = tl::read_json_file(tmp / "out/manifest.json");
  EXPECT_EQ(m["sources"]["demo"]["documents"], 2);
  EXPECT_TRUE(std::filesystem::exists(tmp / "out/train/demo_00000.bin"));

  // The same run again: said, and nothing done.
  const auto before = std::filesystem::last_write_time(tmp / "out/train/demo_00000.bin");
  r = dt::run_command(base + tmp / "a.txt", tmp.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("already prepared"), std::string::npos) << r.err;
  EXPECT_EQ(std::filesystem::last_write_time(tmp / "out/train/demo_00000.bin"), before);
  // Other settings over the same source need --overwrite.
  r = dt::run_command(base + "--chunk-size 3 " + tmp / "a.txt", tmp.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--overwrite"), std::string::npos) << r.err;
}

TEST(DataCli, TokenizerTrainWritesAModel) {
  dt::TempDir tmp;
  std::string corpus;
  for (int i = 0; i < 500; ++i)
    corpus += "the river runs past stone number " + std::to_string(i % 37) + "\n";
  dt::write_text(tmp / "corpus.txt", corpus);
  auto r = dt::run_command(dt_binary + " tokenizer-train --out " + tmp / "tok" +
                               " --vocab-size 320 --threads 1 " + tmp / "corpus.txt",
                           tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(tmp / "tok.model"));
  // Issue #18: it says what it wrote.
  EXPECT_NE(r.out.find(tmp / "tok.model"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(tmp / "tok.vocab"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vocab size 320"), std::string::npos) << r.out;
  dt::write_text(tmp / "in.txt", "river");
  r = dt::run_command(
      dt_binary + " tokenize --tokenizer " + tmp / "tok.model" + " --bos < " + tmp / "in.txt",
      tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ids = dt_parse_ids(r.out);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 1);
  for (int id : ids) EXPECT_LT(id, 320);
}

namespace {

// total bytes of JSON lines, nearly all of an excluded set, zstd-compressed into path (to
// little); returns how many documents are kept (one in 20000).
size_t write_filtered_jsonl_zst(const std::string& path, size_t total) {
  std::ofstream out(path, std::ios::binary);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
  std::string filler(2000, 'x');
  for (size_t i = 0; i < filler.size(); ++i) filler[i] = char('a' + (i * 7 + i / 13) % 26);
  std::string chunk, packed(ZSTD_CStreamOutSize(), '\0');
  size_t written = 0, kept = 0;
  for (size_t line = 0; written < total; ++line) {
    const bool keep = line % 20000 == 0;
    chunk += keep ? "{\"text\": \"Kept document " + std::to_string(line) +
                        ".\", \"meta\": {\"redpajama_set_name\": \"RedPajamaC4\"}}\n"
                  : "{\"text\": \"" + filler +
                        "\", \"meta\": {\"redpajama_set_name\": \"RedPajamaGithub\"}}\n";
    kept += keep;
    const bool last = written + chunk.size() >= total;
    if (chunk.size() < (1 << 20) && !last) continue;
    written += chunk.size();
    ZSTD_inBuffer in{chunk.data(), chunk.size(), 0};
    size_t left;
    do {
      ZSTD_outBuffer o{packed.data(), packed.size(), 0};
      left = ZSTD_compressStream2(cctx, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
      out.write(packed.data(), std::streamsize(o.pos));
    } while (last ? left != 0 : in.pos < in.size);
    chunk.clear();
  }
  ZSTD_freeCCtx(cctx);
  return kept;
}

}  // namespace

// Streaming: prepare's peak memory on a 256 MiB input stays within a few batches of its peak
// on a 4 MiB one (the baseline holds the binary's libraries, the tokenizer and the buffers,
// which differ between a CPU-only and a CUDA build).
TEST(DataCli, PrepareStreamsAZstdFileLargerThanItsMemoryBound) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  double peak_mib[2] = {0, 0};
  const size_t sizes[2] = {size_t(4) << 20, size_t(256) << 20};
  for (int i = 0; i < 2; ++i) {
    const std::string in = tmp / ("in" + std::to_string(i) + ".jsonl.zst");
    const std::string dir = tmp / ("out" + std::to_string(i));
    const size_t kept = write_filtered_jsonl_zst(in, sizes[i]);
    ASSERT_LT(std::filesystem::file_size(in), sizes[i] / 4);
    auto [code, peak] = dt_run_peak_memory(
        dt_binary + " prepare --tokenizer " + dt::llama_model() + " --source big --out " + dir +
            " --exclude-set RedPajamaGithub --batch-mb 4 --threads 2 --progress-seconds 1000 " +
            in + " 2>" + tmp / "err.txt",
        tmp / "err.txt");
    ASSERT_EQ(code, 0) << dt::read_text(tmp / "err.txt");
    tl::json m = tl::read_json_file(dir + "/manifest.json");
    EXPECT_EQ(m["sources"]["big"]["documents"], kept);
    EXPECT_GT(m["sources"]["big"]["skipped"]["excluded_set"].get<uint64_t>(), sizes[i] / 4096);
    ASSERT_GT(peak, 0.0) << "no peak memory in prepare's summary: "
                         << dt::read_text(tmp / "err.txt");
    peak_mib[i] = peak;
  }
  std::printf("prepare peak memory: %.1f MiB on 4 MiB of input, %.1f MiB on 256 MiB\n", peak_mib[0],
              peak_mib[1]);
  // --batch-mb 4 and 2 threads: a few batches in flight, far below the 256 MiB of input.
  EXPECT_LT(peak_mib[1] - peak_mib[0], 48.0)
      << "prepare held " << peak_mib[1] << " MiB for 256 MiB of input, " << peak_mib[0]
      << " MiB for 4 MiB";
}

TEST(DataCli, PrepareShowsProgressAndASummary) {
  DT_REQUIRE_SHARED_DATA();
  dt::TempDir tmp;
  const std::string cmd = dt_binary + " prepare --tokenizer " + dt::llama_model() +
                          " --separator '' --threads 1 " +
                          "--progress-seconds 0.2 --source shk --out ";
  const std::string input = " " + dt::shared_data_dir() + "/tinyshakespeare.txt";
  // Not a terminal: plain lines, one per period.
  auto r = dt::run_command(cmd + tmp / "plain" + input, tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = dt_lines(r.err);
  ASSERT_GE(lines.size(), 4u) << r.err;
  for (const char* part :
       {"prepare shk: ", "% of 1.12 MB read in ", "MB/s", "docs/s", "tok/s", "ETA"})
    EXPECT_NE(lines[0].find(part), std::string::npos) << "'" << lines[0] << "' lacks " << part;
  EXPECT_EQ(r.err.find('\r'), std::string::npos);
  EXPECT_EQ(lines[0].find("100.0%"), std::string::npos) << "the bar does not move: " << lines[0];
  for (const char* part :
       {"prepare: shk done in", "MB/s per thread", "train ", "skipped {\"empty\":2}"})
    EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
  // A terminal (through script(1)): one line redrawn in place with a bar.
  if (system("command -v script >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "script(1) is not installed";
  r = dt::run_command("script -qefc \"" + cmd + tmp / "tty" + input + "\" /dev/null", tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\rprepare shk ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("] 100.0% 1.12 MB/1.12 MB"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("#"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ETA"), std::string::npos) << r.out;
}
