// log.h - how the library reports what it is doing: every message goes through one sink, which a
// program replaces to route the engine's reports into its own logging.
//
//   log_info("resumed from {}: epoch {}", path, epoch);      // progress and results
//   log_warning("loader: skipping {}", file);                  // something was wrong but work goes on
//
// The default sink writes Info to stdout and Warning to stderr, each message as one line, flushed,
// so a command-line run reads as before and a log file interleaves correctly with the progress
// line (engine/progress.h, which draws on its own stream). Errors are not logged: they are thrown
// (engine/check.h) and the caller decides.
//
// The sink is process-wide and may be called from any thread (the data loader warns from its
// workers); calls are serialised by a lock, so one message never interleaves with another, and a
// sink must therefore not log itself. set_log_sink is meant for the start of a program, before
// threads that log exist.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string_view>
#include <utility>

namespace engine {

enum class LogLevel { Info, Warning };

using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Replaces the sink; an empty function restores the default. Returns the previous sink.
LogSink set_log_sink(LogSink sink);

// Sends one message (no trailing newline) to the sink.
void log_message(LogLevel level, std::string_view message);

template <typename... Args>
void log_info(fmt::format_string<Args...> format, Args&&... args) {
  log_message(LogLevel::Info, fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void log_warning(fmt::format_string<Args...> format, Args&&... args) {
  log_message(LogLevel::Warning, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace engine
