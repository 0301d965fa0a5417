// log.cpp - see log.h.
#include "engine/log.h"

#include <cstdio>
#include <mutex>

namespace engine {

namespace {

void default_sink(LogLevel level, std::string_view message) {
  std::FILE* out = level == LogLevel::Warning ? stderr : stdout;
  std::fwrite(message.data(), 1, message.size(), out);
  std::fputc('\n', out);
  std::fflush(out);
}

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}

LogSink& current_sink() {
  static LogSink sink = default_sink;
  return sink;
}

}  // namespace

LogSink set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  LogSink previous = std::move(current_sink());
  current_sink() = sink ? std::move(sink) : LogSink(default_sink);
  return previous;
}

void log_message(LogLevel level, std::string_view message) {
  // One message at a time: lines from the loader's threads never interleave.
  std::lock_guard<std::mutex> lock(sink_mutex());
  current_sink()(level, message);
}

}  // namespace engine
