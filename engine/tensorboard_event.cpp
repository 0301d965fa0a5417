// tensorboard_event.cpp - protobuf encoding of Event, Summary and Value (the schema in the header).
#include "engine/tensorboard_event.h"

#include <bit>
#include <cstring>

#include "engine/check.h"

namespace engine {

static_assert(std::endian::native == std::endian::little,
              "protobuf fixed-width fields are little-endian; this code copies them as they are");

namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// Field numbers of the schema in tensorboard_event.h.
namespace field_number {
constexpr uint32_t event_wall_time = 1, event_step = 2, event_file_version = 3, event_summary = 5;
constexpr uint32_t summary_value = 1;
constexpr uint32_t value_tag = 1, value_simple_value = 2;
}  // namespace field_number

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7F) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

void put_key(std::string& out, uint32_t field, WireType wire) { put_varint(out, (uint64_t{field} << 3) | wire); }

template <typename T>
void put_fixed(std::string& out, uint32_t field, T value) {
  put_key(out, field, sizeof(T) == 8 ? kFixed64 : kFixed32);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// Reads one message's fields in order; every read is bounds-checked.
class FieldReader {
 public:
  FieldReader(std::string_view bytes, const std::string& where, const char* message)
      : bytes_(bytes), where_(where), message_(message) {}

  bool done() const { return pos_ >= bytes_.size(); }

  // The next field's number and wire type.
  std::pair<uint32_t, uint32_t> next_key() {
    const uint64_t key = varint();
    const uint64_t field = key >> 3;
    ENGINE_CHECK(field >= 1 && field <= 0x1FFFFFFF, "{}: malformed {}: field number {} at byte {} is out of range",
                 where_, message_, field, pos_);
    return {static_cast<uint32_t>(field), static_cast<uint32_t>(key & 7)};
  }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      ENGINE_CHECK(pos_ < bytes_.size(), "{}: malformed {}: a varint runs past its end", where_, message_);
      const auto byte = static_cast<unsigned char>(bytes_[pos_++]);
      value |= uint64_t{byte & 0x7Fu} << shift;
      if (!(byte & 0x80)) return value;
    }
    ENGINE_THROW("{}: malformed {}: a varint is longer than 10 bytes", where_, message_);
  }

  template <typename T>
  T fixed() {
    ENGINE_CHECK(bytes_.size() - pos_ >= sizeof(T), "{}: malformed {}: a {}-byte field runs past its end", where_,
                 message_, sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string_view length_delimited() {
    const uint64_t length = varint();
    ENGINE_CHECK(length <= bytes_.size() - pos_, "{}: malformed {}: a field of {} bytes runs past its end ({} left)",
                 where_, message_, length, bytes_.size() - pos_);
    const std::string_view value = bytes_.substr(pos_, length);
    pos_ += length;
    return value;
  }

  void skip(uint32_t wire) {
    switch (wire) {
      case kVarint: varint(); return;
      case kFixed64: fixed<uint64_t>(); return;
      case kLengthDelimited: length_delimited(); return;
      case kFixed32: fixed<uint32_t>(); return;
      default:
        ENGINE_THROW("{}: malformed {}: wire type {} (groups are not used by event files, other values do not exist)",
                     where_, message_, wire);
    }
  }

 private:
  std::string_view bytes_;
  const std::string& where_;
  const char* message_;
  size_t pos_ = 0;
};

void decode_summary(std::string_view bytes, const std::string& where, std::vector<TaggedValue>& scalars) {
  FieldReader summary(bytes, where, "Summary");
  while (!summary.done()) {
    const auto [field, wire] = summary.next_key();
    if (field != field_number::summary_value || wire != kLengthDelimited) {
      summary.skip(wire);
      continue;
    }
    FieldReader value(summary.length_delimited(), where, "Summary.Value");
    TaggedValue scalar{"", 0.0};
    bool has_simple_value = false;
    while (!value.done()) {
      const auto [value_field, value_wire] = value.next_key();
      if (value_field == field_number::value_tag && value_wire == kLengthDelimited) {
        scalar.tag = std::string(value.length_delimited());
      } else if (value_field == field_number::value_simple_value && value_wire == kFixed32) {
        scalar.value = value.fixed<float>();
        has_simple_value = true;
      } else {
        value.skip(value_wire);
      }
    }
    if (has_simple_value) scalars.push_back(std::move(scalar));
  }
}

}  // namespace

std::string encode_file_version_event(double wall_time) {
  std::string event;
  put_fixed(event, field_number::event_wall_time, wall_time);
  put_bytes(event, field_number::event_file_version, kEventFileVersion);
  return event;
}

std::string encode_scalars_event(double wall_time, int64_t step, const std::vector<TaggedValue>& values) {
  std::string summary;
  for (const TaggedValue& v : values) {
    std::string value;
    put_bytes(value, field_number::value_tag, v.tag);
    put_fixed(value, field_number::value_simple_value, static_cast<float>(v.value));
    put_bytes(summary, field_number::summary_value, value);
  }
  std::string event;
  put_fixed(event, field_number::event_wall_time, wall_time);
  put_key(event, field_number::event_step, kVarint);
  put_varint(event, static_cast<uint64_t>(step));  // int64: negative steps as two's complement
  put_bytes(event, field_number::event_summary, summary);
  return event;
}

DecodedEvent decode_event(std::string_view bytes, const std::string& where) {
  DecodedEvent event;
  FieldReader reader(bytes, where, "Event");
  while (!reader.done()) {
    const auto [field, wire] = reader.next_key();
    if (field == field_number::event_wall_time && wire == kFixed64) {
      event.wall_time = reader.fixed<double>();
    } else if (field == field_number::event_step && wire == kVarint) {
      event.step = static_cast<int64_t>(reader.varint());
    } else if (field == field_number::event_file_version && wire == kLengthDelimited) {
      event.file_version = std::string(reader.length_delimited());
    } else if (field == field_number::event_summary && wire == kLengthDelimited) {
      decode_summary(reader.length_delimited(), where, event.scalars);
    } else {
      reader.skip(wire);
    }
  }
  return event;
}

}  // namespace engine
