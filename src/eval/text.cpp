#include "eval/text.h"

#include <locale.h>
#include <wctype.h>

#include "core/error.h"

namespace tl::eval {

namespace {

// Decodes one code point at s[i] (valid UTF-8 assumed) and advances i.
char32_t next_cp(std::string_view s, size_t& i) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  const int n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (int k = 1; k < n && i + size_t(k) < s.size(); ++k)
    c = (c << 6) | (static_cast<unsigned char>(s[i + size_t(k)]) & 0x3F);
  i += size_t(n);
  return c;
}

void put_cp(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

// Byte offset just past the leading whitespace / at the start of the trailing whitespace.
size_t lead_end(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!py_isspace(next_cp(s, j))) break;
    i = j;
  }
  return i;
}
size_t trail_begin(std::string_view s) {
  size_t end = 0, i = 0;  // end: just past the last non-space code point
  while (i < s.size())
    if (!py_isspace(next_cp(s, i))) end = i;
  return end;
}

// The C.UTF-8 locale for case mapping; null when absent (then ASCII only).
locale_t utf8_locale() {
  static locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(0));
  return loc;
}
char32_t to_lower(char32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
  locale_t loc = utf8_locale();
  return loc ? char32_t(towlower_l(wint_t(c), loc)) : c;
}
char32_t to_title(char32_t c) {
  if (c < 0x80) return c >= 'a' && c <= 'z' ? c - 32 : c;
  locale_t loc = utf8_locale();
  return loc ? char32_t(towupper_l(wint_t(c), loc)) : c;
}

}  // namespace

std::string utf8_problem(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    int n = 0;
    char32_t c = 0, min = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2, c = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3, c = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4, c = b & 0x07, min = 0x10000;
    } else {
      return cat("invalid UTF-8 lead byte 0x", std::hex, int(b), std::dec, " at byte ", i);
    }
    if (i + size_t(n) > s.size()) return cat("UTF-8 sequence cut short at byte ", i);
    for (int k = 1; k < n; ++k) {
      const unsigned char t = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((t & 0xC0) != 0x80) return cat("invalid UTF-8 continuation at byte ", i + size_t(k));
      c = (c << 6) | (t & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
      return cat("invalid UTF-8 code point at byte ", i);
    i += size_t(n);
  }
  return "";
}

bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

size_t py_len(std::string_view s) {
  size_t n = 0;
  for (char ch : s) n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return n;
}

std::string py_lstrip(std::string_view s) { return std::string(s.substr(lead_end(s))); }
std::string py_rstrip(std::string_view s) { return std::string(s.substr(0, trail_begin(s))); }
std::string py_strip(std::string_view s) { return py_lstrip(s.substr(0, trail_begin(s))); }

std::string py_capitalize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    const char32_t c = next_cp(s, i);
    put_cp(out, first ? to_title(c) : to_lower(c));
    first = false;
  }
  return out;
}

std::string py_replace(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  size_t i = 0;
  for (size_t j; (j = s.find(from, i)) != std::string_view::npos; i = j + from.size()) {
    out.append(s.substr(i, j - i));
    out.append(to);
  }
  out.append(s.substr(i));
  return out;
}

std::string hellaswag_preprocess(std::string_view text) {
  std::string t = py_replace(py_strip(text), " [title]", ". ");
  // The regex \[.*?\] : from a '[', the first ']' after it, with no '\n' between ('.'
  // matches anything but a newline); a '[' without one stays and the scan moves on.
  std::string out;
  out.reserve(t.size());
  for (size_t i = 0; i < t.size();) {
    if (t[i] == '[') {
      size_t j = i + 1;
      while (j < t.size() && t[j] != ']' && t[j] != '\n') ++j;
      if (j < t.size() && t[j] == ']') {
        i = j + 1;
        continue;
      }
    }
    out += t[i++];
  }
  return py_replace(out, "  ", " ");
}

}  // namespace tl::eval
