// tensorboard_writer.h - scalars for TensorBoard: an event file under the run's logs/ folder.
//
// The file is `log_dir/events.out.tfevents.<unix seconds>.<hostname>` (TensorBoard reads only files
// whose name contains "tfevents"); when that name is taken, ".1", ".2", ... is appended. It is a
// TFRecord file (tfrecord.h) of Events (tensorboard_event.h): first the file-version event, then
// one event per add_scalar / add_scalars call. Values are stored as float (simple_value).
//
// Records are buffered in memory and written when flush() is called, when `max_records` records
// or `max_seconds` seconds have gone by since the last write, and in the destructor. A write that
// fails (disk full) throws engine::Error naming the file; the bytes not yet written stay buffered,
// so a later flush() continues the file without a gap or a broken record.
// tools/read_tfevents.py reads these files without TensorFlow; read_tensorboard_file() in
// tensorboard_reader.h reads them in C++.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensorboard_event.h"

namespace engine {

struct TensorBoardFlushPolicy {
  double max_seconds = 10.0;
  int64_t max_records = 100;
};

class TensorBoardWriter {
 public:
  // Creates `log_dir` (and its parents) when absent and the event file in it.
  explicit TensorBoardWriter(const std::string& log_dir, TensorBoardFlushPolicy policy = {});
  ~TensorBoardWriter();  // flushes; a failure there is printed as a warning, not thrown
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  // Several scalars of one step in one event: add_scalars(step, {{"loss", 1.2}, {"lr", 0.01}}).
  void add_scalars(int64_t step, const std::vector<TaggedValue>& values);
  void flush();

  const std::string& path() const { return path_; }

 private:
  void append_event(const std::string& event);

  std::string path_;
  int fd_ = -1;
  TensorBoardFlushPolicy policy_;
  std::string pending_;  // framed records not yet written
  int64_t pending_records_ = 0;
  std::chrono::steady_clock::time_point last_write_;
};

}  // namespace engine
