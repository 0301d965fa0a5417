// tensorboard_event.h - the protobuf messages of TensorBoard event files, encoded and decoded by
// hand (no protobuf library). Each TFRecord (tfrecord.h) of an event file holds one Event:
//
//   message Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   message Summary { repeated Value value = 1; }
//   message Value   { string tag = 1; float simple_value = 2; }
//
// (subsets of tensorflow/core/util/event.proto and summary.proto: the fields a scalar needs).
// Protobuf wire format: each field is a key varint (field_number << 3 | wire_type) then its value:
// wire type 0 a varint (step: int64 as two's complement, 10 bytes when negative), 1 eight bytes
// little-endian (wall_time), 2 a varint length then that many bytes (strings, nested messages),
// 5 four bytes little-endian (simple_value). The first Event of a file carries wall_time and
// file_version "brain.Event:2"; each later one wall_time, step and a Summary of scalars.
// The decoder skips fields and values it does not know (images, histograms), as protobuf does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace engine {

inline constexpr std::string_view kEventFileVersion = "brain.Event:2";

struct TensorBoardScalar {
  double wall_time;  // seconds since the Unix epoch
  int64_t step;
  std::string tag;
  float value;  // simple_value is a float in the protobuf
};

// A scalar to write, or one read back from an Event. Written as a float (simple_value); a double
// here lets callers pass their doubles in a braced list ({"lr", lr}) without a narrowing error.
struct TaggedValue {
  std::string tag;
  double value;
};

std::string encode_file_version_event(double wall_time);
std::string encode_scalars_event(double wall_time, int64_t step, const std::vector<TaggedValue>& values);

struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;          // empty when absent
  std::vector<TaggedValue> scalars;  // the Values with a simple_value
};

// Throws engine::Error, prefixed by `where`, when the bytes are not a well-formed Event.
DecodedEvent decode_event(std::string_view bytes, const std::string& where);

}  // namespace engine
