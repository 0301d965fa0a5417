// test_metrics_log.cpp - metrics.jsonl: appending, reopening, cutting off a half-written line, and
// dropping the entries after a resumed step.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/check.h"
#include "engine/metrics_log.h"

namespace engine::testing {
namespace {

std::string temp_path(const std::string& name) {
  const std::string path = ::testing::TempDir() + "/engine_metrics_log_test_" + name;
  std::filesystem::remove(path);
  return path;
}

std::string contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_raw(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(MetricsLog, AppendsOneLinePerEntryAndReopensForAppending) {
  const std::string path = temp_path("append.jsonl");
  {
    MetricsLog log(path);
    log.append(JsonObject().set("step", 1).set("loss", 6.5));
    EXPECT_EQ(contents(path), "{\"step\": 1, \"loss\": 6.5}\n") << "each line reaches the file when appended";
    log.append(JsonObject().set("step", 2).set("loss", 6.25));
    log.sync();
  }
  {
    MetricsLog log(path);
    log.append(JsonObject().set("epoch", 0).set("note", "line\nbreak"));
  }
  EXPECT_EQ(contents(path),
            "{\"step\": 1, \"loss\": 6.5}\n{\"step\": 2, \"loss\": 6.25}\n{\"epoch\": 0, \"note\": \"line\\nbreak\"}\n");
  const std::vector<FlatJsonObject> entries = MetricsLog::read(path);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[1].at("step").as_int64(), 2);
  EXPECT_EQ(entries[1].at("loss").as_double(), 6.25);
  EXPECT_EQ(entries[2].at("note").as_string(), "line\nbreak");
  std::filesystem::remove(path);
}

TEST(MetricsLog, OpeningCutsOffAHalfWrittenLastLine) {
  const std::string path = temp_path("partial.jsonl");
  // A line longer than the reader's 4 KiB block, so the backward search crosses blocks.
  const std::string long_line = "{\"step\": 1, \"text\": \"" + std::string(5000, 'x') + "\"}\n";
  write_raw(path, long_line + "{\"step\": 2, \"lo");
  EXPECT_THROW(MetricsLog::read(path), Error);
  {
    MetricsLog log(path);
    log.append(JsonObject().set("step", 2).set("loss", 1.0));
  }
  EXPECT_EQ(contents(path), long_line + "{\"step\": 2, \"loss\": 1}\n");

  write_raw(path, std::string(6000, 'y'));  // no complete line at all
  { MetricsLog log(path); }
  EXPECT_EQ(contents(path), "");
  std::filesystem::remove(path);
}

TEST(MetricsLog, TruncateAfterStepDropsLaterStepsAndBrokenLines) {
  const std::string path = temp_path("resume.jsonl");
  write_raw(path,
            "{\"step\": 1, \"loss\": 7}\n"
            "{\"step\": 2, \"loss\": 6}\n"
            "{\"epoch\": 0, \"acc1\": 1.5}\n"
            "not json\n"
            "{\"step\": 3, \"loss\": 5}\n"
            "{\"step\": 4, \"loss\": 4}\n"
            "{\"step\": 2.5}\n"
            "{\"step\": 5, \"loss\": 3}\n"
            "{\"step\": 6, \"lo");
  EXPECT_EQ(MetricsLog::truncate_after_step(path, 3), 5u);  // steps 4 and 5, "not json", 2.5, the half line
  EXPECT_EQ(contents(path),
            "{\"step\": 1, \"loss\": 7}\n"
            "{\"step\": 2, \"loss\": 6}\n"
            "{\"epoch\": 0, \"acc1\": 1.5}\n"
            "{\"step\": 3, \"loss\": 5}\n");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  EXPECT_EQ(MetricsLog::truncate_after_step(path, 3), 0u) << "nothing left to drop";
  EXPECT_EQ(MetricsLog::truncate_after_step(path, 0), 3u);
  EXPECT_EQ(contents(path), "{\"epoch\": 0, \"acc1\": 1.5}\n");
  std::filesystem::remove(path);

  EXPECT_EQ(MetricsLog::truncate_after_step(path, 3), 0u);
  EXPECT_FALSE(std::filesystem::exists(path)) << "a missing log stays missing";
}

TEST(MetricsLog, WriteFailuresNameTheFile) {
  try {
    MetricsLog log(::testing::TempDir() + "/no_such_folder_for_metrics/metrics.jsonl");
    ADD_FAILURE() << "a log in a missing folder was opened";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("no_such_folder_for_metrics/metrics.jsonl"), std::string::npos) << e.what();
  }
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full to stand for a full disk";
  MetricsLog full("/dev/full");
  try {
    full.append(JsonObject().set("step", 1));
    ADD_FAILURE() << "a write to a full disk was accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("'/dev/full' failed after 0 of 12 bytes (disk full?)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::testing
