// Error types shared by the whole core. Throw, never exit: the bindings turn
// each type into the Python exception named beside it.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace inferlab {

// Bad argument or bad input from the caller        -> Python ValueError
struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Malformed or hostile GGUF file                    -> inferlab.GGUFError (a ValueError)
struct GGUFError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Device or host memory would not fit               -> inferlab.DeviceMemoryError (a MemoryError)
struct DeviceMemoryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Anything else that failed at run time (CUDA error, I/O) -> Python RuntimeError
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A path that does not exist or cannot be opened  -> Python FileNotFoundError
struct FileNotFound : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Operation not supported on this build/device/type -> Python NotImplementedError
struct NotSupportedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

}  // namespace inferlab

// Argument check whose message names the argument: IL_CHECK_ARG(x.ndim() == 2, "x must be 2-D, got ", x.ndim())
#define IL_CHECK_ARG(cond, ...)                                              \
  do {                                                                      \
    if (!(cond)) throw ::inferlab::ValueError(::inferlab::str_cat(__VA_ARGS__)); \
  } while (0)
