#include "core/json_reader.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>

namespace tl {

JsonReader::JsonReader(const json& obj, std::string path) : obj_(obj), path_(std::move(path)) {
  TL_CHECK(obj_.is_object(), "config: '", path_.empty() ? "(root)" : path_,
           "' must be a JSON object, got ", obj_.type_name());
}

const json& JsonReader::child(const char* key) {
  seen_.insert(key);
  static const json empty = json::object();
  auto it = obj_.find(key);
  return it == obj_.end() ? empty : *it;
}

void JsonReader::finish() const {
  for (auto it = obj_.begin(); it != obj_.end(); ++it) {
    if (seen_.count(it.key())) continue;
    std::string allowed;
    for (const auto& k : seen_) allowed += (allowed.empty() ? "" : ", ") + k;
    fail("config: unknown key '", full(it.key()), "' (allowed here: ", allowed, ")");
  }
}

void JsonReader::read_value(const json& v, const char* key, int& out) {
  int64_t x = 0;
  read_value(v, key, x);
  TL_CHECK(x >= INT32_MIN && x <= INT32_MAX, "config: '", full(key), "' is out of range");
  out = int(x);
}
void JsonReader::read_value(const json& v, const char* key, int64_t& out) {
  if (v.is_number_unsigned()) {
    TL_CHECK(v.get<uint64_t>() <= uint64_t(INT64_MAX), "config: '", full(key),
             "' is out of range: ", v.dump());
    out = int64_t(v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    out = v.get<int64_t>();
  } else if (v.is_number_float()) {  // 1e6 written as a float
    const double d = v.get<double>();
    TL_CHECK(d == std::trunc(d), "config: '", full(key), "' must be an integer, got ", v.dump());
    // Before the conversion: a double beyond int64's range has no conversion (UB).
    TL_CHECK(d >= -0x1p63 && d < 0x1p63, "config: '", full(key), "' is out of range: ", v.dump());
    out = int64_t(d);
  } else {
    fail("config: '", full(key), "' must be an integer, got ", v.dump());
  }
}
void JsonReader::read_value(const json& v, const char* key, uint64_t& out) {
  int64_t x = 0;
  read_value(v, key, x);
  TL_CHECK(x >= 0, "config: '", full(key), "' must not be negative");
  out = uint64_t(x);
}
void JsonReader::read_value(const json& v, const char* key, double& out) {
  TL_CHECK(v.is_number(), "config: '", full(key), "' must be a number, got ", v.dump());
  out = v.get<double>();
}
void JsonReader::read_value(const json& v, const char* key, float& out) {
  double x = 0;
  read_value(v, key, x);
  out = float(x);
}
void JsonReader::read_value(const json& v, const char* key, bool& out) {
  TL_CHECK(v.is_boolean(), "config: '", full(key), "' must be true or false, got ", v.dump());
  out = v.get<bool>();
}
void JsonReader::read_value(const json& v, const char* key, std::string& out) {
  TL_CHECK(v.is_string(), "config: '", full(key), "' must be a string, got ", v.dump());
  out = v.get<std::string>();
}
void JsonReader::read_value(const json& v, const char* key, std::vector<std::string>& out) {
  TL_CHECK(v.is_array(), "config: '", full(key), "' must be a list of strings, got ", v.dump());
  out.clear();
  for (const auto& e : v) {
    TL_CHECK(e.is_string(), "config: '", full(key), "' must be a list of strings, got ", v.dump());
    out.push_back(e.get<std::string>());
  }
}

void json_set_dotted(json& root, const std::string& dotted_key, const std::string& value) {
  TL_CHECK(!dotted_key.empty(), "--set needs key=value, got an empty key");
  json* node = &root;
  size_t start = 0;
  while (true) {
    size_t dot = dotted_key.find('.', start);
    std::string part =
        dotted_key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    TL_CHECK(!part.empty(), "--set: malformed key '", dotted_key, "'");
    if (dot == std::string::npos) {
      json parsed;
      try {
        parsed = json::parse(value);
      } catch (const json::exception&) {
        parsed = value;  // a bare word is a string
      }
      (*node)[part] = parsed;
      return;
    }
    if (!node->contains(part)) (*node)[part] = json::object();
    node = &(*node)[part];
    TL_CHECK(node->is_object(), "--set: '", dotted_key.substr(0, dot), "' is not an object");
    start = dot + 1;
  }
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  TL_CHECK(in.good(), "cannot open '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::parse_error& e) {
    fail("'", path, "' is not valid JSON: ", e.what());
  }
}

}  // namespace tl
