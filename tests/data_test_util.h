// Helpers for the data tests (prefixed dt_ / DataTest to stay apart from other test files).
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/json_reader.h"

namespace dt {

// The shared test data folder ($TL_SHARED_DIR/data, else <repo>/../shared/data), or ""
// when the Llama 2 tokenizer is not there.
inline std::string shared_data_dir() {
  const char* env = std::getenv("TL_SHARED_DIR");
  std::string dir = std::string(env && *env ? env : TL_SOURCE_DIR "/../shared") + "/data";
  return std::filesystem::exists(dir + "/llama2-tokenizer.model") ? dir : "";
}

inline std::string llama_model() { return shared_data_dir() + "/llama2-tokenizer.model"; }

// A fresh folder under the system temp folder, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tl_data_test_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The Llama 2 tokenizer's known encodings: {text, ids with BOS first}.
inline std::vector<std::pair<std::string, std::vector<int>>> llama_cases() {
  std::vector<std::pair<std::string, std::vector<int>>> out;
  std::ifstream in(shared_data_dir() + "/llama2-tokenizer-cases.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    tl::json j = tl::json::parse(line);
    out.emplace_back(j["text"].get<std::string>(), j["ids"].get<std::vector<int>>());
  }
  return out;
}

struct CommandResult {
  int exit_code;
  std::string out, err;
};

// Runs a shell command line with stdout and stderr captured.
inline CommandResult run_command(const std::string& command, const std::string& dir) {
  std::string out = dir + "/cmd.stdout", err = dir + "/cmd.stderr";
  int status = std::system((command + " >" + out + " 2>" + err).c_str());
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return {code, read_text(out), read_text(err)};
}

// A message check that prints the message when it fails.
#define DT_EXPECT_THROW_WITH(stmt, ...)                                \
  do {                                                                 \
    try {                                                              \
      stmt;                                                            \
      ADD_FAILURE() << "expected tl::Error from " #stmt;               \
    } catch (const tl::Error& e) {                                     \
      for (const char* part : {__VA_ARGS__})                           \
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) \
            << "message '" << e.what() << "' lacks '" << part << "'";  \
    }                                                                  \
  } while (0)

#define DT_REQUIRE_SHARED_DATA()                                                            \
  if (dt::shared_data_dir().empty())                                                        \
  GTEST_SKIP() << "shared test data (llama2-tokenizer.model) not found: set TL_SHARED_DIR " \
                  "or place it at <repo>/../shared/data"

}  // namespace dt
