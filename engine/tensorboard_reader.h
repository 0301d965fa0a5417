// tensorboard_reader.h - reads the scalars of a TensorBoard event file (ours or TensorFlow's), for
// tests and tools. Both CRCs of every record are verified (tfrecord.h).
//
// A writer that crashed mid-record leaves a last record cut short. read_tensorboard_file() accepts
// that and reports the leftover bytes in truncated_tail_bytes, so a tool can show everything the
// run logged; read_tensorboard_scalars() is strict and refuses such a file too. Both throw
// engine::Error naming the file and the byte offset for a record that is corrupt.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tensorboard_event.h"

namespace engine {

struct TensorBoardEventFile {
  std::string file_version;                // of the first event that has one ("brain.Event:2")
  std::vector<TensorBoardScalar> scalars;  // in file order
  int64_t events = 0;                      // complete records read
  uint64_t truncated_tail_bytes = 0;       // bytes of a last record cut short; 0 when complete
};

TensorBoardEventFile decode_tensorboard_events(std::string_view bytes, const std::string& source = "<memory>");
TensorBoardEventFile read_tensorboard_file(const std::string& path);
std::vector<TensorBoardScalar> read_tensorboard_scalars(const std::string& path);

}  // namespace engine
