// tfrecord.h - TFRecord framing, the container of TensorBoard event files.
//
// A file is a sequence of records, each:
//   uint64  length of the data, little-endian
//   uint32  masked_crc32c of those 8 length bytes, little-endian
//   bytes   the data (`length` bytes)
//   uint32  masked_crc32c of the data, little-endian
// (masked_crc32c in crc32c.h.) Writers only append, so a crash leaves a file whose last record may
// be cut short; anything else that fails a check is damage.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace engine {

// Appends one record carrying `data` to `out`.
void append_tfrecord(std::string& out, std::string_view data);

struct TFRecord {
  uint64_t offset;        // where the record starts in the file
  std::string_view data;  // a view into the bytes that were split
};

struct TFRecords {
  std::vector<TFRecord> records;
  // Bytes at the end that start a record but stop before its end (a writer stopped mid-record);
  // 0 for a complete file. Callers decide whether that is acceptable.
  uint64_t truncated_tail_bytes = 0;
};

// Splits `bytes` into records, verifying both CRCs of each. Throws engine::Error naming `source`
// and the byte offset of the record when a CRC does not match. A last record cut short is not an
// error: it is counted in truncated_tail_bytes.
TFRecords split_tfrecords(std::string_view bytes, const std::string& source);

}  // namespace engine
