// tensorboard_reader.cpp - see tensorboard_reader.h.
#include "engine/tensorboard_reader.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/check.h"
#include "engine/tfrecord.h"

namespace engine {

TensorBoardEventFile decode_tensorboard_events(std::string_view bytes, const std::string& source) {
  const TFRecords records = split_tfrecords(bytes, source);
  TensorBoardEventFile file;
  file.truncated_tail_bytes = records.truncated_tail_bytes;
  for (const TFRecord& record : records.records) {
    DecodedEvent event = decode_event(record.data, fmt::format("{}: the record at byte {}", source, record.offset));
    ++file.events;
    if (file.file_version.empty()) file.file_version = std::move(event.file_version);
    for (TaggedValue& scalar : event.scalars)
      file.scalars.push_back({event.wall_time, event.step, std::move(scalar.tag), static_cast<float>(scalar.value)});
  }
  return file;
}

TensorBoardEventFile read_tensorboard_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ENGINE_CHECK(in.good(), "cannot open the TensorBoard event file '{}': {}", path, std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  ENGINE_CHECK(!in.bad(), "reading the TensorBoard event file '{}' failed", path);
  return decode_tensorboard_events(std::move(bytes).str(), path);
}

std::vector<TensorBoardScalar> read_tensorboard_scalars(const std::string& path) {
  TensorBoardEventFile file = read_tensorboard_file(path);
  ENGINE_CHECK(file.truncated_tail_bytes == 0,
               "{}: the last record is cut short ({} bytes after the last complete record; the writer stopped "
               "mid-write); read_tensorboard_file() reads the {} complete records",
               path, file.truncated_tail_bytes, file.events);
  return std::move(file.scalars);
}

}  // namespace engine
