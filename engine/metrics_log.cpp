// metrics_log.cpp - see metrics_log.h.
#include "engine/metrics_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "engine/check.h"
#include "engine/file_io.h"

namespace engine {

namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ENGINE_CHECK(in.good(), "cannot open '{}' for reading: {}", path, std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  ENGINE_CHECK(!in.bad(), "reading '{}' failed", path);
  return std::move(bytes).str();
}

// The complete lines of `text` (each ended by '\n', the '\n' removed); what follows the last
// '\n' is a line still being written and is not returned.
std::vector<std::string_view> complete_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t begin = 0;
  for (size_t end = text.find('\n'); end != std::string_view::npos; end = text.find('\n', begin)) {
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

// The size the file at `fd` has once a last line without its '\n' is cut off: one past the last
// '\n', or 0 when there is none. Reads backwards in blocks, so a large log costs one block.
off_t size_without_partial_line(int fd, off_t size, const std::string& path) {
  constexpr off_t kBlock = 4096;
  char block[kBlock];
  off_t end = size;
  while (end > 0) {
    const off_t begin = std::max<off_t>(0, end - kBlock);
    const ssize_t n = ::pread(fd, block, static_cast<size_t>(end - begin), begin);
    ENGINE_CHECK(n == end - begin, "reading '{}' failed: {}", path, std::strerror(errno));
    for (off_t i = n - 1; i >= 0; --i)
      if (block[i] == '\n') return begin + i + 1;
    end = begin;
  }
  return 0;
}

// Line `line_number` (from 1) of `path` parsed; throws engine::Error unless it is a JSON object.
nlohmann::json parse_entry(std::string_view line, const std::string& path, size_t line_number) {
  nlohmann::json entry;
  try {
    entry = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {  // malformed, or a number past double (1e400)
    ENGINE_THROW("{} line {}: expected a JSON object, found malformed JSON: {}", path, line_number, e.what());
  }
  ENGINE_CHECK(entry.is_object(), "{} line {}: expected a JSON object, found a JSON {}", path, line_number,
               entry.type_name());
  return entry;
}

// What truncate_after_step does with one line.
enum class ResumedLine { keep, after_step, invalid };

ResumedLine classify_for_resume(std::string_view line, int64_t step) {
  const nlohmann::json entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (entry.is_discarded() || !entry.is_object()) return ResumedLine::invalid;
  const auto found = entry.find("step");
  if (found == entry.end()) return ResumedLine::keep;
  if (!found->is_number_integer()) return ResumedLine::invalid;
  // nlohmann reads every non-negative integer as unsigned, and one above INT64_MAX only fits there.
  const bool later = found->is_number_unsigned()
                         ? step < 0 || found->get<uint64_t>() > static_cast<uint64_t>(step)
                         : found->get<int64_t>() > step;
  return later ? ResumedLine::after_step : ResumedLine::keep;
}

}  // namespace

MetricsLog::MetricsLog(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  ENGINE_CHECK(fd_ >= 0, "cannot open the metrics log '{}' for appending: {} (does its folder exist?)", path_,
               std::strerror(errno));
  struct stat info {};
  if (::fstat(fd_, &info) != 0) {
    const int err = errno;
    ::close(fd_);
    ENGINE_THROW("cannot stat the metrics log '{}': {}", path_, std::strerror(err));
  }
  if (info.st_size == 0) return;
  try {
    const off_t complete = size_without_partial_line(fd_, info.st_size, path_);
    if (complete == info.st_size) return;
    ENGINE_CHECK(::ftruncate(fd_, complete) == 0, "cannot cut the half-written last line off '{}': {}", path_,
                 std::strerror(errno));
    ENGINE_WARN("{}: cut off {} bytes of a half-written last line (the previous run stopped mid-write)", path_,
                info.st_size - complete);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::append(const nlohmann::ordered_json& entry) {
  const std::string line =
      entry.dump(/*indent=*/-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace) + '\n';
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    ENGINE_CHECK(n > 0, "appending to the metrics log '{}' failed after {} of {} bytes (disk full?): {}", path_,
                 written, line.size(), std::strerror(errno));
    written += static_cast<size_t>(n);
  }
}

void MetricsLog::sync() {
  ENGINE_CHECK(::fsync(fd_) == 0, "flushing the metrics log '{}' to the disk failed: {}", path_, std::strerror(errno));
}

size_t MetricsLog::truncate_after_step(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return 0;
  const std::string text = read_text_file(path);
  const std::vector<std::string_view> lines = complete_lines(text);
  std::string kept;
  kept.reserve(text.size());
  size_t invalid = 0, after_step = 0;
  for (const std::string_view line : lines) {
    switch (classify_for_resume(line, step)) {
      case ResumedLine::after_step:
        ++after_step;
        break;
      case ResumedLine::invalid:
        ++invalid;
        break;
      case ResumedLine::keep:
        kept.append(line);
        kept += '\n';
        break;
    }
  }
  const bool partial_last_line = !text.empty() && text.back() != '\n';
  invalid += partial_last_line ? 1 : 0;
  if (invalid > 0)
    ENGINE_WARN("{}: dropped {} line(s) that were not complete JSON objects with an integer \"step\" "
                "(a crash mid-write?)",
                path, invalid);
  if (invalid + after_step > 0) write_file_atomic(path, kept);
  return invalid + after_step;
}

std::vector<nlohmann::json> MetricsLog::read(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<nlohmann::json> entries;
  size_t line_number = 0;
  for (const std::string_view line : complete_lines(text)) entries.push_back(parse_entry(line, path, ++line_number));
  ENGINE_CHECK(text.empty() || text.back() == '\n',
               "{}: the last line has no end (the writer stopped mid-line); open it with a MetricsLog, or "
               "truncate_after_step, to cut it off",
               path);
  return entries;
}

}  // namespace engine
