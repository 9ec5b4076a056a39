// Strict reading of JSON objects into typed config structs: every key must be known,
// every value must have the right type, and errors name the full key path.
#pragma once
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace tl {

using json = nlohmann::json;

class JsonReader {
 public:
  // path: where this object sits in the config ("optim"), for messages.
  JsonReader(const json& obj, std::string path);

  template <class T>
  void get(const char* key, T& out) {
    seen_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) return;
    read_value(*it, key, out);
  }
  template <class T>
  void require(const char* key, T& out) {
    TL_CHECK(obj_.contains(key), "config: missing required key '", full(key), "'");
    get(key, out);
  }
  bool has(const char* key) const { return obj_.contains(key); }
  // Marks a key as handled by the caller (e.g. a nested object read separately).
  const json& child(const char* key);
  std::string full(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  // Throws naming any key that no get/child asked for.
  void finish() const;

 private:
  void read_value(const json& v, const char* key, int& out);
  void read_value(const json& v, const char* key, int64_t& out);
  void read_value(const json& v, const char* key, uint64_t& out);
  void read_value(const json& v, const char* key, float& out);
  void read_value(const json& v, const char* key, double& out);
  void read_value(const json& v, const char* key, bool& out);
  void read_value(const json& v, const char* key, std::string& out);
  void read_value(const json& v, const char* key, std::vector<std::string>& out);

  const json& obj_;
  std::string path_;
  std::set<std::string> seen_;
};

// Sets a dotted key ("optim.lr") in a JSON tree from a command-line string value:
// numbers, true/false, null and JSON literals are parsed; anything else is a string.
void json_set_dotted(json& root, const std::string& dotted_key, const std::string& value);

// Reads a JSON file; the message names the file and the parse error position.
json read_json_file(const std::string& path);

}  // namespace tl
