// tfrecord.cpp - see tfrecord.h.
#include "engine/tfrecord.h"

#include <bit>
#include <cstring>

#include "engine/check.h"
#include "engine/crc32c.h"

namespace engine {

static_assert(std::endian::native == std::endian::little,
              "TFRecord stores little-endian integers; this code copies them as they are");

namespace {

constexpr size_t kHeaderBytes = 12;  // length + its CRC
constexpr size_t kFooterBytes = 4;   // the data's CRC

template <typename T>
void append_le(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

template <typename T>
T read_le(const char* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

}  // namespace

void append_tfrecord(std::string& out, std::string_view data) {
  const uint64_t length = data.size();
  const size_t header_begin = out.size();
  append_le(out, length);
  append_le(out, masked_crc32c(crc32c(out.data() + header_begin, sizeof(length))));
  out.append(data);
  append_le(out, masked_crc32c(crc32c(data)));
}

TFRecords split_tfrecords(std::string_view bytes, const std::string& source) {
  TFRecords result;
  uint64_t offset = 0;
  while (offset < bytes.size()) {
    const uint64_t left = bytes.size() - offset;
    if (left < kHeaderBytes) {
      result.truncated_tail_bytes = left;
      break;
    }
    const char* record = bytes.data() + offset;
    const uint64_t length = read_le<uint64_t>(record);
    ENGINE_CHECK(masked_crc32c(crc32c(record, 8)) == read_le<uint32_t>(record + 8),
                 "{}: the record at byte {} is corrupt: the CRC of its length field does not match; the "
                 "file is damaged (records before this byte are intact)",
                 source, offset);
    const uint64_t after_header = left - kHeaderBytes;
    if (after_header < kFooterBytes || length > after_header - kFooterBytes) {
      result.truncated_tail_bytes = left;
      break;
    }
    const std::string_view data = bytes.substr(offset + kHeaderBytes, length);
    ENGINE_CHECK(masked_crc32c(crc32c(data)) == read_le<uint32_t>(record + kHeaderBytes + length),
                 "{}: the record at byte {} ({} bytes of data) is corrupt: the CRC of its data does not "
                 "match; the file is damaged (records before this byte are intact)",
                 source, offset, length);
    result.records.push_back({offset, data});
    offset += kHeaderBytes + length + kFooterBytes;
  }
  return result;
}

}  // namespace engine
