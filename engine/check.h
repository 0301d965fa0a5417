// check.h - engine::Error and the checks that throw it.
//
// Every failed check says where (file:line), what was checked (the expression as written) and a
// message that states what was expected, what was found and what to do. We throw instead of
// aborting because the engine is a library that others embed; the moco command catches at the top.
//
//   ENGINE_CHECK(a.numel() == b.numel(), "add: expected equal sizes, found {} and {}", na, nb);
//   ENGINE_THROW("checkpoint {}: no tensor named '{}'", path, name);
//
// The CUDA-library wrappers (CUDA_CHECK, CUBLAS_CHECK, CUDNN_CHECK, NCCL_CHECK, the kernel-launch
// check) live in cuda_check.h, which only CUDA translation units include.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace engine {

class Error : public std::runtime_error {
 public:
  Error(const char* file, int line, std::string expression, std::string message);

  const std::string& file() const { return file_; }
  int line() const { return line_; }
  const std::string& expression() const { return expression_; }  // empty for ENGINE_THROW
  const std::string& message() const { return message_; }         // without the location

 private:
  std::string file_;
  int line_;
  std::string expression_;
  std::string message_;
};

// Prints a warning without throwing: for destructors and cleanup paths.
void warn(const char* file, int line, const std::string& message);

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const char* expression, std::string message);

// nvcc's front end cannot evaluate fmt's consteval format-string checks, so CUDA translation
// units format at run time; host code keeps the compile-time check.
template <typename... Args>
std::string format_runtime(std::string_view format, Args&&... args) {
  return ::fmt::vformat(format, ::fmt::make_format_args(args...));
}
}  // namespace detail

}  // namespace engine

#if defined(__CUDACC__)
#define ENGINE_FORMAT(...) ::engine::detail::format_runtime(__VA_ARGS__)
#else
#define ENGINE_FORMAT(...) ::fmt::format(__VA_ARGS__)
#endif

#define ENGINE_CHECK(cond, ...)                                                              \
  do {                                                                                       \
    if (!(cond)) [[unlikely]]                                                                \
      ::engine::detail::throw_error(__FILE__, __LINE__, #cond, ENGINE_FORMAT(__VA_ARGS__));  \
  } while (0)

#define ENGINE_THROW(...) \
  ::engine::detail::throw_error(__FILE__, __LINE__, "", ENGINE_FORMAT(__VA_ARGS__))

#define ENGINE_WARN(...) ::engine::warn(__FILE__, __LINE__, ENGINE_FORMAT(__VA_ARGS__))
