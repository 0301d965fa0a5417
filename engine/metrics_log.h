// metrics_log.h - a JSON Lines log of a run's metrics (D/metrics.jsonl): one JSON object per line,
// e.g. {"kind":"step","epoch":3,"step":412,"loss":6.8123,"lr":0.015}, written with nlohmann::json.
//
// Entries are nlohmann::ordered_json, so a line's keys come out in the order the caller set them.
// JSON has no NaN or infinity: nlohmann writes them as null, so a diverged loss shows up as null
// instead of breaking the file. Strings that are not valid UTF-8 (file names need not be) have
// their bad bytes replaced by U+FFFD instead of making append() throw.
//
// Durability. Each entry goes to the file as one write() of the whole line, straight to the kernel
// (no user-space buffer), so when the process dies the file holds every entry appended before,
// and at worst a part of the one being written. That part, found when the log is opened again, is
// cut off (the file is truncated back to its last complete line). An operating-system crash can
// lose more unless sync() was called: a caller that wants the log as durable as its checkpoints
// calls sync() when it writes one.
//
// Resuming. A run that resumes from a checkpoint taken at step S has logged entries after S that
// it is about to log again; truncate_after_step(path, S), called before the log is opened, drops
// them so the file has no duplicated or orphaned steps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace engine {

class MetricsLog {
 public:
  // Opens `path` for appending, creating it (not its folder) when absent.
  explicit MetricsLog(std::string path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Writes `entry` as one line. Throws engine::Error naming the file when the write fails.
  void append(const nlohmann::ordered_json& entry);
  // Flushes the file to the disk (fsync).
  void sync();
  const std::string& path() const { return path_; }

  // Rewrites `path` (atomically, via write_file_atomic) keeping only its complete lines that are
  // valid JSON objects and have no "step" or an integer "step" <= `step`. Lines that are not (a
  // half-written last line, garbage) are dropped with a warning. Returns how many lines were
  // dropped; a missing file is left missing (returns 0). Call it before a MetricsLog opens the file.
  static size_t truncate_after_step(const std::string& path, int64_t step);

  // Every line of `path` parsed (tests and tools); throws engine::Error naming the file and line on
  // a line that is not a JSON object.
  static std::vector<nlohmann::json> read(const std::string& path);

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace engine
