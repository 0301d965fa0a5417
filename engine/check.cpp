// check.cpp - how an engine::Error reads.
#include "engine/check.h"

#include "engine/log.h"

namespace engine {

namespace {
std::string compose(const char* file, int line, const std::string& expression,
                    const std::string& message) {
  if (expression.empty()) return fmt::format("{}:{}: {}", file, line, message);
  return fmt::format("{}:{}: check `{}` failed: {}", file, line, expression, message);
}
}  // namespace

Error::Error(const char* file, int line, std::string expression, std::string message)
    : std::runtime_error(compose(file, line, expression, message)),
      file_(file),
      line_(line),
      expression_(std::move(expression)),
      message_(std::move(message)) {}

void warn(const char* file, int line, const std::string& message) {
  log_warning("warning: {}:{}: {}", file, line, message);
}

namespace detail {
void throw_error(const char* file, int line, const char* expression, std::string message) {
  throw Error(file, line, expression, std::move(message));
}
}  // namespace detail

}  // namespace engine
