// library.cpp - see moco_engine/library.h and library_guard.h.
#include "moco_engine/library.h"

#include <mutex>

#include "api/library_guard.h"
#include "engine/log.h"

namespace moco_engine {

namespace {

std::mutex& callback_mutex() {
  static std::mutex m;
  return m;
}

LogCallback& user_callback() {
  static LogCallback callback;
  return callback;
}

}  // namespace

Error::Error(const std::string& message) : std::runtime_error(message) {}
Error::~Error() = default;

std::string version() { return MOCO_ENGINE_VERSION; }

void set_log_callback(LogCallback callback) {
  detail::route_engine_log();
  std::lock_guard<std::mutex> lock(callback_mutex());
  user_callback() = std::move(callback);
}

namespace detail {

void route_engine_log() {
  // The engine's default sink prints (the command line wants that); inside the library nothing
  // prints: every message goes to the user's callback, or nowhere.
  static std::once_flag once;
  std::call_once(once, [] {
    engine::set_log_sink([](engine::LogLevel level, std::string_view message) {
      LogCallback callback;
      {
        std::lock_guard<std::mutex> lock(callback_mutex());
        callback = user_callback();
      }
      if (callback)
        callback(level == engine::LogLevel::Warning ? LogLevel::Warning : LogLevel::Info, std::string(message));
    });
  });
}

}  // namespace detail

}  // namespace moco_engine
