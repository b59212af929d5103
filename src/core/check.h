// Errors that fail loudly and precisely: every check throws hyrax::Error with the failed condition, file:line and
// a message built from the offending values.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace hyrax {

/// The one exception type hyrax throws for bad input or broken invariants; what() is a complete one-line message.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

/// Concatenates the arguments with operator<< into a string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

/// Throws hyrax::Error with a message made of the arguments (no location: for user-facing input errors).
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(str_cat(args...));
}

}  // namespace hyrax

/// Input validation: throws hyrax::Error carrying only the message (meant for the user).
#define HYRAX_REQUIRE(cond, ...)                  \
  do {                                            \
    if (!(cond)) ::hyrax::fail(__VA_ARGS__);      \
  } while (0)

/// Internal invariant: throws hyrax::Error naming the condition and file:line, then the message.
#define HYRAX_CHECK(cond, ...)                                                                           \
  do {                                                                                                   \
    if (!(cond))                                                                                         \
      ::hyrax::fail("check failed: " #cond " at ", __FILE__, ":", __LINE__ __VA_OPT__(, ": ", ) __VA_ARGS__); \
  } while (0)
