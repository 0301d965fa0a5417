// tensorboard_writer.cpp - see tensorboard_writer.h.
#include "engine/tensorboard_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "engine/check.h"
#include "engine/tfrecord.h"

namespace engine {

namespace {

double unix_seconds_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// Creates the event file under a name no other writer holds (O_EXCL), returning its descriptor.
int create_event_file(const std::string& log_dir, std::string& path) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::now().time_since_epoch());
  const std::string base =
      (std::filesystem::path(log_dir) / fmt::format("events.out.tfevents.{}.{}", seconds.count(), host_name()))
          .string();
  constexpr int kMaxSuffix = 1000;
  for (int suffix = 0; suffix < kMaxSuffix; ++suffix) {
    path = suffix == 0 ? base : fmt::format("{}.{}", base, suffix);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) return fd;
    ENGINE_CHECK(errno == EEXIST, "cannot create the TensorBoard event file '{}': {}", path, std::strerror(errno));
  }
  ENGINE_THROW("cannot create a TensorBoard event file in '{}': '{}' and {} suffixed names are all taken", log_dir,
               base, kMaxSuffix - 1);
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& log_dir, TensorBoardFlushPolicy policy) : policy_(policy) {
  std::error_code error;
  std::filesystem::create_directories(log_dir, error);
  ENGINE_CHECK(!error, "cannot create the TensorBoard log folder '{}': {}", log_dir, error.message());
  fd_ = create_event_file(log_dir, path_);
  append_tfrecord(pending_, encode_file_version_event(unix_seconds_now()));
  ++pending_records_;
  try {
    flush();  // the file is valid, with its version record, from the start
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

TensorBoardWriter::~TensorBoardWriter() {
  try {
    flush();
  } catch (const Error& e) {
    ENGINE_WARN("the last {} bytes of TensorBoard records were not written: {}", pending_.size(), e.what());
  }
  ::close(fd_);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  add_scalars(step, {{tag, value}});
}

void TensorBoardWriter::add_scalars(int64_t step, const std::vector<TaggedValue>& values) {
  append_event(encode_scalars_event(unix_seconds_now(), step, values));
}

void TensorBoardWriter::append_event(const std::string& event) {
  append_tfrecord(pending_, event);
  ++pending_records_;
  const double since_write = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_write_).count();
  if (pending_records_ >= policy_.max_records || since_write >= policy_.max_seconds) flush();
}

void TensorBoardWriter::flush() {
  size_t written = 0;
  while (written < pending_.size()) {
    const ssize_t n = ::write(fd_, pending_.data() + written, pending_.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      pending_.erase(0, written);  // keep exactly what is missing from the file
      ENGINE_THROW("writing the TensorBoard event file '{}' failed (disk full?): {}; {} bytes stay buffered", path_,
                   std::strerror(err), pending_.size());
    }
    written += static_cast<size_t>(n);
  }
  pending_.clear();
  pending_records_ = 0;
  last_write_ = std::chrono::steady_clock::now();
}

}  // namespace engine
