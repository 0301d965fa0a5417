// test_tensorboard.cpp - CRC-32C against published vectors, TFRecord framing, the Event protobuf
// bytes, and event files written, read back exactly, and refused or reported when damaged.
#include <gtest/gtest.h>

#include <filesystem>
#include <algorithm>
#include <fstream>

#include "engine/check.h"
#include "engine/crc32c.h"
#include "engine/tensorboard_reader.h"
#include "engine/tensorboard_writer.h"
#include "engine/tfrecord.h"
#include "tests/common/temp_dir.h"

namespace engine::testing {
namespace {

namespace fs = std::filesystem;

// A fresh empty folder in this process's own temporary folder (removed at exit).
std::string fresh_dir(const std::string& name) {
  static const TempDir root("tensorboard");
  const fs::path dir = root.path() / name;
  fs::remove_all(dir);
  return dir.string();
}

std::vector<fs::path> files_in(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(Crc32c, MatchesPublishedVectors) {
  EXPECT_EQ(crc32c(""), 0x00000000u);
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // the CRC catalogue's check value
  EXPECT_EQ(crc32c("The quick brown fox jumps over the lazy dog"), 0x22620404u);
  // RFC 3720 (iSCSI) section B.4.
  std::string buf(32, '\0');
  EXPECT_EQ(crc32c(buf), 0x8A9136AAu);
  buf.assign(32, '\xff');
  EXPECT_EQ(crc32c(buf), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(i);
  EXPECT_EQ(crc32c(buf), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(31 - i);
  EXPECT_EQ(crc32c(buf), 0x113FDB5Cu);
  const unsigned char iscsi_read[48] = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                                        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                                        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(crc32c(iscsi_read, sizeof(iscsi_read)), 0xD9963A56u);
  // A running CRC continues over a split input.
  EXPECT_EQ(crc32c("456789", 6, crc32c("123")), 0xE3069283u);
}

TEST(Crc32c, MasksAsTFRecordDoes) {
  EXPECT_EQ(masked_crc32c(0), 0xA282EAD8u);
  EXPECT_EQ(masked_crc32c(0x00008000u), 0xA282EAD9u);  // bit 15 rotates down to bit 0
  EXPECT_EQ(masked_crc32c(0x00000001u), 0xA284EAD8u);  // bit 0 rotates up to bit 17
  // From a real TensorFlow event file: the record of Event(file_version="CRC test, one two").
  EXPECT_EQ(masked_crc32c(crc32c(std::string_view("\x1a\x11" "CRC test, one two"))), 0x5794D08Au);
}

TEST(TFRecord, FramesLengthDataAndBothCrcs) {
  std::string file;
  append_tfrecord(file, "abc");
  ASSERT_EQ(file.size(), 8u + 4u + 3u + 4u);
  EXPECT_EQ(file.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  const uint32_t length_crc = masked_crc32c(crc32c(file.data(), 8));
  const uint32_t data_crc = masked_crc32c(crc32c("abc"));
  EXPECT_EQ(file.substr(8, 4), std::string(reinterpret_cast<const char*>(&length_crc), 4));
  EXPECT_EQ(file.substr(12, 3), "abc");
  EXPECT_EQ(file.substr(15, 4), std::string(reinterpret_cast<const char*>(&data_crc), 4));

  append_tfrecord(file, "");
  append_tfrecord(file, "xyz!");
  const TFRecords records = split_tfrecords(file, "mem");
  ASSERT_EQ(records.records.size(), 3u);
  EXPECT_EQ(records.records[0].data, "abc");
  EXPECT_EQ(records.records[1].data, "");
  EXPECT_EQ(records.records[1].offset, 19u);
  EXPECT_EQ(records.records[2].data, "xyz!");
  EXPECT_EQ(records.records[2].offset, 35u);
  EXPECT_EQ(records.truncated_tail_bytes, 0u);
}

TEST(TensorBoardEvent, EncodesTheProtobufFieldsByteForByte) {
  // wall_time 1.5 = 0x3FF8000000000000: key 0x09 (field 1, fixed64), then the file version string
  // with key 0x1A (field 3, length-delimited) and its length 13.
  EXPECT_EQ(encode_file_version_event(1.5), std::string("\x09\0\0\0\0\0\0\xf8\x3f\x1a\x0d", 11) + "brain.Event:2");
  // step 3: key 0x10 (field 2, varint); summary: key 0x2A (field 5), 13 bytes holding one value
  // (key 0x0A, 11 bytes): tag "loss" (0x0A, 4) and simple_value 2.5f = 0x40200000 (key 0x15, fixed32).
  EXPECT_EQ(encode_scalars_event(1.5, 3, {{"loss", 2.5f}}),
            std::string("\x09\0\0\0\0\0\0\xf8\x3f\x10\x03\x2a\x0d\x0a\x0b\x0a\x04loss\x15\0\0\x20\x40", 26));
}

TEST(TensorBoardEvent, DecodesWhatItEncodesAndSkipsUnknownFields) {
  const DecodedEvent event =
      decode_event(encode_scalars_event(1234567890.25, -7, {{"a", 1.f}, {"b/c", -0.125f}}), "mem");
  EXPECT_EQ(event.wall_time, 1234567890.25);
  EXPECT_EQ(event.step, -7);
  ASSERT_EQ(event.scalars.size(), 2u);
  EXPECT_EQ(event.scalars[1].tag, "b/c");
  EXPECT_EQ(event.scalars[1].value, -0.125f);

  // An Event with fields this reader ignores: a varint field 4, a fixed32 field 6, and a summary
  // value carrying an image (field 4 of Value) instead of a simple_value.
  const std::string image_value = std::string("\x0a\x03img\x22\x02xy", 9);
  const std::string summary = "\x0a" + std::string(1, static_cast<char>(image_value.size())) + image_value;
  const std::string odd = std::string("\x20\x96\x01\x35\x01\x02\x03\x04\x10\x05", 10) + "\x2a" +
                          std::string(1, static_cast<char>(summary.size())) + summary;
  const DecodedEvent skipped = decode_event(odd, "mem");
  EXPECT_EQ(skipped.step, 5);
  EXPECT_TRUE(skipped.scalars.empty());

  EXPECT_THROW(decode_event(std::string("\x2a\x05\x0a", 3), "mem"), Error);   // a field past the end
  EXPECT_THROW(decode_event(std::string("\x10\xff", 2), "mem"), Error);        // a varint past the end
  EXPECT_THROW(decode_event(std::string("\x0b\x00", 2), "mem"), Error);        // wire type 3 (group)
}

TEST(TensorBoardWriter, WritesAFileThatReadsBackExactly) {
  const std::string dir = fresh_dir("roundtrip") + "/nested/logs";
  const double before = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string path;
  {
    TensorBoardWriter writer(dir);
    path = writer.path();
    writer.add_scalar("train/loss", 6.8123, 1);
    const double lr = 0.01;  // a run-time double, stored as the nearest float
    writer.add_scalars(2, {{"train/loss", 5.5}, {"train/lr", lr}});
    writer.add_scalar("val/acc1", 12.5, 1000000000000);
  }
  const double after = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_EQ(files_in(dir), std::vector<fs::path>{fs::path(path)});
  EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), 0u) << path;

  const TensorBoardEventFile file = read_tensorboard_file(path);
  EXPECT_EQ(file.file_version, "brain.Event:2");
  EXPECT_EQ(file.events, 4);
  EXPECT_EQ(file.truncated_tail_bytes, 0u);
  const std::vector<TensorBoardScalar> scalars = read_tensorboard_scalars(path);
  ASSERT_EQ(scalars.size(), 4u);
  const std::vector<std::tuple<int64_t, std::string, float>> expected = {
      {1, "train/loss", 6.8123f}, {2, "train/loss", 5.5f}, {2, "train/lr", 0.01f}, {1000000000000, "val/acc1", 12.5f}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(scalars[i].step, std::get<0>(expected[i])) << i;
    EXPECT_EQ(scalars[i].tag, std::get<1>(expected[i])) << i;
    EXPECT_EQ(scalars[i].value, std::get<2>(expected[i])) << i;
    EXPECT_GE(scalars[i].wall_time, before - 1e-3) << i;
    EXPECT_LE(scalars[i].wall_time, after + 1e-3) << i;
  }
  EXPECT_EQ(scalars[1].wall_time, scalars[2].wall_time) << "one event for the scalars of one call";
  fs::remove_all(fs::path(dir).parent_path().parent_path());
}

TEST(TensorBoardWriter, TwoWritersInOneSecondGetTwoFiles) {
  const std::string dir = fresh_dir("two");
  TensorBoardWriter first(dir);
  TensorBoardWriter second(dir);
  EXPECT_NE(first.path(), second.path());
  // Unless the second changed between the two, the second file is the first's name plus ".1".
  if (second.path().size() == first.path().size() + 2) {
    EXPECT_EQ(second.path(), first.path() + ".1");
  }
  EXPECT_EQ(files_in(dir).size(), 2u);
  fs::remove_all(dir);
}

TEST(TensorBoardWriter, BuffersUntilThePolicySaysFlush) {
  const std::string dir = fresh_dir("flush");
  TensorBoardWriter writer(dir, {.max_seconds = 1e9, .max_records = 3});
  const uintmax_t header_only = fs::file_size(writer.path());
  EXPECT_GT(header_only, 0u) << "the version record is written at once";
  writer.add_scalar("x", 1, 1);
  writer.add_scalar("x", 2, 2);
  EXPECT_EQ(fs::file_size(writer.path()), header_only);
  writer.add_scalar("x", 3, 3);  // the third record since the last write
  const uintmax_t three = fs::file_size(writer.path());
  EXPECT_GT(three, header_only);
  writer.add_scalar("x", 4, 4);
  EXPECT_EQ(fs::file_size(writer.path()), three);
  writer.flush();
  EXPECT_GT(fs::file_size(writer.path()), three);
  EXPECT_EQ(read_tensorboard_scalars(writer.path()).size(), 4u);

  TensorBoardWriter timed(dir, {.max_seconds = 0, .max_records = 1000});
  timed.add_scalar("x", 1, 1);
  EXPECT_EQ(read_tensorboard_scalars(timed.path()).size(), 1u) << "a zero interval writes every record";
  fs::remove_all(dir);
}

// The bytes of a file with three scalar events, and where each record starts.
struct SampleFile {
  std::string bytes;
  std::vector<uint64_t> offsets;
};

SampleFile sample_file() {
  SampleFile sample;
  append_tfrecord(sample.bytes, encode_file_version_event(10.0));
  for (int step = 1; step <= 3; ++step) {
    sample.offsets.push_back(sample.bytes.size());
    append_tfrecord(sample.bytes, encode_scalars_event(10.0 + step, step, {{"loss", 1.f / step}}));
  }
  return sample;
}

std::string refusal(const std::string& bytes) {
  try {
    decode_tensorboard_events(bytes, "events.bin");
  } catch (const Error& e) {
    return e.message();
  }
  ADD_FAILURE() << "a damaged event file was accepted";
  return "";
}

TEST(TensorBoardReader, RefusesACorruptByteNamingTheRecord) {
  const SampleFile sample = sample_file();
  const uint64_t second = sample.offsets[1];
  std::string data_hit = sample.bytes;
  data_hit[second + 14] ^= 0x01;  // inside the second scalar event's data
  EXPECT_EQ(refusal(data_hit),
            fmt::format("events.bin: the record at byte {} ({} bytes of data) is corrupt: the CRC of its data does "
                        "not match; the file is damaged (records before this byte are intact)",
                        second, sample.offsets[2] - second - 16));
  std::string length_hit = sample.bytes;
  length_hit[second + 1] ^= 0x40;  // the length field
  EXPECT_EQ(refusal(length_hit),
            fmt::format("events.bin: the record at byte {} is corrupt: the CRC of its length field does not match; "
                        "the file is damaged (records before this byte are intact)",
                        second));
  std::string crc_hit = sample.bytes;
  crc_hit[sample.offsets[2] - 1] ^= 0x80;  // the data CRC itself
  EXPECT_NE(refusal(crc_hit).find(fmt::format("record at byte {} ", second)), std::string::npos);
}

TEST(TensorBoardReader, ReportsATruncatedLastRecordAndKeepsTheRest) {
  const SampleFile sample = sample_file();
  const uint64_t last = sample.offsets[2];
  for (const uint64_t cut : {uint64_t{1}, uint64_t{4}, uint64_t{10}, sample.bytes.size() - last - 1}) {
    const std::string bytes = sample.bytes.substr(0, sample.bytes.size() - cut);
    const TensorBoardEventFile file = decode_tensorboard_events(bytes, "events.bin");
    EXPECT_EQ(file.events, 3) << cut;
    EXPECT_EQ(file.truncated_tail_bytes, bytes.size() - last) << cut;
    ASSERT_EQ(file.scalars.size(), 2u) << cut;
    EXPECT_EQ(file.scalars[1].step, 2);
    EXPECT_EQ(file.scalars[1].value, 0.5f);
    EXPECT_EQ(file.scalars[1].wall_time, 12.0);
  }
  EXPECT_EQ(decode_tensorboard_events(sample.bytes.substr(0, last)).truncated_tail_bytes, 0u);

  const std::string dir = fresh_dir("truncated");
  fs::create_directories(dir);
  const std::string path = dir + "/events.out.tfevents.1.test";
  std::ofstream(path, std::ios::binary) << sample.bytes.substr(0, sample.bytes.size() - 3);
  EXPECT_EQ(read_tensorboard_file(path).scalars.size(), 2u);
  try {
    read_tensorboard_scalars(path);
    ADD_FAILURE() << "the strict reader accepted a truncated file";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find(fmt::format("the last record is cut short ({} bytes", sample.bytes.size() - 3 - last)),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace engine::testing
