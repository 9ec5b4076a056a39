// Helpers for the checkpoint / safetensors / HF tests (namespace ckpt_test avoids clashes).
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/param_layout.h"
#include "text_test_util.h"

namespace ckpt_test {

// A fresh folder under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tl_ckpt_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

inline std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// The message of the tl::Error that f throws, or a marker when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const tl::Error& e) {
    return e.what();
  }
  return "<no tl::Error thrown>";
}

using text_test::has;

// A small GQA model: head dim 8, 4 query heads over 2 KV heads, odd-ish sizes.
inline tl::ModelConfig small_config() {
  tl::ModelConfig c;
  c.vocab_size = 48;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_dim = 40;
  c.max_seq_len = 16;
  c.rope_theta = 10000.0f;
  c.norm_eps = 1e-5f;
  return c;
}

// Random values in every parameter, zeros in the padding between them.
inline std::vector<float> random_params(const tl::ModelConfig& cfg, uint64_t seed) {
  tl::ParamLayout layout(cfg);
  std::vector<float> p(size_t(layout.total()), 0.0f);
  tl::Rng rng(seed);
  for (const auto& info : layout.params())
    for (int64_t i = 0; i < info.numel(); ++i)
      p[size_t(info.offset + i)] = float(rng.normal() * 0.05);
  return p;
}

inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct RunResult {
  int rc = -1;
  std::string output;  // stdout and stderr
};

// Runs a shell command line, capturing both streams.
inline RunResult run_cmd(const std::string& cmd) {
  RunResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace ckpt_test
