// fuzz_common.h - what the libFuzzer harnesses share (fuzz/README.md).
//
// A harness feeds the fuzzer's bytes to one reader of outside input. The reader may refuse them
// with the engine's errors (engine::Error, data::DecodeError): that is the contract. Anything else
// (another exception, a crash, a sanitizer report, a hang, a huge allocation) is a finding, and
// libFuzzer stops and saves the input.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>

#include "engine/check.h"
#include "engine/file_io.h"

namespace engine::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A folder of this process's own under the system's temporary folder (several fuzzers may run at
// once), made on first use and removed when the fuzzer exits.
inline const std::filesystem::path& scratch_dir() {
  struct Scratch {
    std::filesystem::path path = std::filesystem::temp_directory_path() / ("moco_fuzz_" + std::to_string(::getpid()));
    Scratch() { std::filesystem::create_directories(path); }
    ~Scratch() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Scratch scratch;
  return scratch.path;
}

// The bytes as a file for readers that take a path; returns the path.
inline std::string as_file(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = (scratch_dir() / name).string();
  write_file_atomic(path, as_text(data, size));
  return path;
}

// A property the reader promises for what it accepts; a broken one stops the fuzzer.
#define FUZZ_REQUIRE(condition, what)                                   \
  do {                                                                  \
    if (!(condition)) {                                                 \
      std::fprintf(stderr, "fuzz: broken promise: %s (%s)\n", what, #condition); \
      std::abort();                                                     \
    }                                                                   \
  } while (0)

// Runs `read`, accepting the engine's refusal.
template <typename Read>
void expect_success_or_refusal(Read&& read) {
  try {
    read();
  } catch (const engine::Error&) {
  }
}

}  // namespace engine::fuzz
