// Python's str semantics where the evaluation harness's prompts depend on them: UTF-8 text
// seen as code points, Python whitespace (str.isspace), strip, capitalize, len, and the
// HellaSwag cleanup. docs/eval.md states each rule.
#pragma once
#include <string>
#include <string_view>

namespace tl::eval {

// "" when s is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF), else
// what is wrong and at which byte.
std::string utf8_problem(std::string_view s);

bool py_isspace(char32_t c);               // Python's str.isspace() for one code point
size_t py_len(std::string_view s);         // code points (valid UTF-8 assumed)
std::string py_strip(std::string_view s);  // both ends, Python whitespace
std::string py_lstrip(std::string_view s);
std::string py_rstrip(std::string_view s);
// First code point to title case, the rest to lower case (C.UTF-8 simple case mapping;
// ASCII exactly as Python).
std::string py_capitalize(std::string_view s);
// Every non-overlapping `from`, left to right, replaced by `to` (Python's str.replace).
std::string py_replace(std::string_view s, std::string_view from, std::string_view to);

// HellaSwag's preprocess(): strip; " [title]" -> ". "; drop every shortest "[...]" span
// that holds no newline; one pass of "  " -> " ".
std::string hellaswag_preprocess(std::string_view text);

}  // namespace tl::eval
