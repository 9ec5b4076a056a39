// The one substring check every test file uses. The helper namespaces (ckpt_test,
// report_test) bring it in with using-declarations, so a file that sees several of them (or
// a unity translation unit holding several test files) finds one function, not an ambiguity.
#pragma once
#include <string>

namespace text_test {

inline bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace text_test
