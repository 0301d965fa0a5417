// moco_engine/library.h - what every part of the installed library shares: the one exception type,
// the version, and where the library's messages go.
//
// These headers are all a program needs to embed images with a pretrained encoder (encoder.h); they
// use only the C++17 standard library, and everything else of the engine (tensors, modules, CUDA)
// stays inside libmoco_engine.so, whose only exported symbols are the ones declared here.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

// Marks what the shared library exports; the rest of it is hidden.
#if defined(__GNUC__) || defined(__clang__)
#define MOCO_ENGINE_API __attribute__((visibility("default")))
#else
#define MOCO_ENGINE_API
#endif

namespace moco_engine {

// Every failure of the library: a missing or damaged weights file, a device that is not there, an
// image that is not RGB. what() says what was expected, what was found and what to do, in the words
// of the `moco` command line.
class MOCO_ENGINE_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message);
  ~Error() override;
};

// The library's version, "MAJOR.MINOR.PATCH".
MOCO_ENGINE_API std::string version();

enum class LogLevel { Info, Warning };
using LogCallback = std::function<void(LogLevel level, const std::string& message)>;

// The library never prints. What it reports (for example "embed: skipped a.jpg: not an image: an
// empty file") goes to `callback`, one message per call, possibly from a worker thread but never two
// at a time; the callback must not call back into the library. An empty callback (the default)
// drops the messages. Returns nothing; set it before loading an encoder.
MOCO_ENGINE_API void set_log_callback(LogCallback callback);

}  // namespace moco_engine
