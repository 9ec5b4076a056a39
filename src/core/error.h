// Errors: library code throws tl::Error with a message that names the problem;
// only main() decides to exit.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace tl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<<.
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace tl

// TL_CHECK(cond, parts...): throws tl::Error("parts...") when cond is false.
#define TL_CHECK(cond, ...)               \
  do {                                    \
    if (!(cond)) ::tl::fail(__VA_ARGS__); \
  } while (0)

// Internal invariant: names the expression, file and line.
#define TL_ASSERT(cond)                                                                     \
  do {                                                                                      \
    if (!(cond)) ::tl::fail("internal error: ", #cond, " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)
