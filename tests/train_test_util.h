// Helpers for the trainer tests (namespace train_test avoids clashes): tiny shards and a
// micro model, metrics readers, and running the tinyllama binary as a child process.
#pragma once
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/fs.h"
#include "core/json_reader.h"
#include "core/rng.h"
#include "data/packed.h"

extern char** environ;

namespace train_test {

namespace fs = std::filesystem;
using tl::json;

// A temp folder with shards: source a (counting modulo 48: learnable), source b (a noisy
// other pattern), and held-out val; removed with everything in it.
struct TrainFixture {
  std::string dir;
  TrainFixture() {
    dir = (fs::temp_directory_path() /
           ("tl_train_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++)))
              .string();
    fs::remove_all(dir);
    tl::make_dirs(dir + "/a");
    tl::make_dirs(dir + "/b");
    tl::make_dirs(dir + "/val");
    std::vector<int32_t> a, b, v;
    for (int i = 0; i < 6000; ++i) a.push_back(i % 48);
    tl::Rng rng(9);
    for (int i = 0; i < 6000; ++i)
      b.push_back(int32_t(48 + (i % 7) + (rng.below(4) == 0 ? rng.below(8) : 0)));
    for (int i = 0; i < 1200; ++i) v.push_back(i % 48);
    tl::write_packed_file(dir + "/a/a_00000.bin", std::vector<int32_t>(a.begin(), a.begin() + 3000),
                          8, 3000);
    tl::write_packed_file(dir + "/a/a_00001.bin", std::vector<int32_t>(a.begin() + 3000, a.end()),
                          8, 3000);
    tl::write_packed_file(dir + "/b/b_00000.bin", b, 8, 6000);
    tl::write_packed_file(dir + "/val/v_00000.bin", v, 8, 1200);
  }
  ~TrainFixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string run(const std::string& name) const { return dir + "/" + name; }

  json config(const std::string& run, int64_t steps) const {
    return json{
        {"model",
         {{"vocab_size", 64},
          {"dim", 32},
          {"n_layers", 2},
          {"n_heads", 4},
          {"n_kv_heads", 2},
          {"ffn_dim", 64},
          {"max_seq_len", 32}}},
        {"data",
         {{"sources", json::array({json{{"name", "a"}, {"paths", {dir + "/a"}}, {"weight", 0.7}},
                                   json{{"name", "b"}, {"paths", {dir + "/b"}}, {"weight", 0.3}}})},
          {"val", {dir + "/val"}},
          {"seq_len", 16}}},
        {"batch", {{"micro_batch", 4}, {"grad_accum", 2}}},
        {"optim", {{"lr", 1e-2}, {"min_lr", 1e-3}, {"warmup_steps", 5}, {"decay_steps", 40}}},
        {"train",
         {{"steps", steps},
          {"seed", 5},
          {"device", "cpu"},
          {"threads", 2},
          {"run_dir", dir + "/" + run},
          {"log_interval", 100}}},
        {"eval", {{"interval", 0}, {"batches", 4}}},
        {"checkpoint", {{"interval", 10}, {"keep", 10}}}};
  }
  // Writes a config file for the binary; returns its path.
  std::string config_file(const std::string& name, const json& j) const {
    const std::string path = dir + "/" + name + ".json";
    std::ofstream(path) << j.dump(2);
    return path;
  }
};

inline std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

// The training losses of metrics.jsonl, in order (NaN where the loss was not finite).
inline std::vector<double> train_losses(const std::string& metrics_path) {
  std::vector<double> out;
  for (const json& j : read_jsonl(metrics_path))
    if (j.contains("loss")) out.push_back(j["loss"].is_number() ? j["loss"].get<double>() : NAN);
  return out;
}

inline std::vector<json> events(const std::string& metrics_path, const std::string& kind) {
  std::vector<json> out;
  for (const json& j : read_jsonl(metrics_path))
    if (j.value("event", "") == kind) out.push_back(j);
  return out;
}

inline std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Starts the tinyllama binary with `args`, stdout and stderr appended to log_path.
// env: extra "NAME=value" entries; file_limit > 0 caps the size of any file it writes
// (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk).
inline pid_t spawn_binary(const std::vector<std::string>& args, const std::string& log_path,
                          const std::vector<std::string>& env = {}, rlim_t file_limit = 0) {
  std::vector<std::string> argv_s = {TL_BINARY};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s(env);
  for (char** e = environ; *e; ++e) env_s.push_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // The child: async-signal-safe calls only, then exec.
  const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(126);
  if (file_limit > 0) {
    struct rlimit lim = {file_limit, file_limit};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(126);
  }
  ::execve(TL_BINARY, argv.data(), envp.data());
  ::_exit(127);
}

// Waits for pid; returns its exit status, or 128 + signal when a signal ended it.
inline int wait_exit(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace train_test
