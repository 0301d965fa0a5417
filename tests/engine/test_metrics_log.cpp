// test_metrics_log.cpp - metrics.jsonl: appending, reopening, cutting off a half-written line, and
// dropping the entries after a resumed step.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/check.h"
#include "engine/metrics_log.h"
#include "tests/common/temp_dir.h"

namespace engine::testing {
namespace {

// This process's own folder (removed at exit), so that two builds' suites can run at once.
const TempDir& test_dir() {
  static const TempDir dir("metrics_log");
  return dir;
}

std::string temp_path(const std::string& name) {
  const std::string path = (test_dir().path() / name).string();
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
    log.append({{"step", 1}, {"loss", 6.5}});
    EXPECT_EQ(contents(path), "{\"step\":1,\"loss\":6.5}\n") << "each line reaches the file when appended";
    log.append({{"step", 2}, {"loss", 6.25}});
    log.sync();
  }
  {
    MetricsLog log(path);
    log.append({{"note", "line\nbreak"}, {"epoch", 0}});
  }
  EXPECT_EQ(contents(path),
            "{\"step\":1,\"loss\":6.5}\n{\"step\":2,\"loss\":6.25}\n{\"note\":\"line\\nbreak\",\"epoch\":0}\n")
      << "keys in the order they were set";
  const std::vector<nlohmann::json> entries = MetricsLog::read(path);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[1].at("step").get<int64_t>(), 2);
  EXPECT_EQ(entries[1].at("loss").get<double>(), 6.25);
  EXPECT_EQ(entries[2].at("note").get<std::string>(), "line\nbreak");
  std::filesystem::remove(path);
}

TEST(MetricsLog, WritesNonFiniteNumbersAsNullAndBadUtf8AsReplacement) {
  const std::string path = temp_path("special.jsonl");
  {
    MetricsLog log(path);
    log.append({{"loss", std::numeric_limits<double>::quiet_NaN()},
                {"lr", std::numeric_limits<double>::infinity()},
                {"grad", -std::numeric_limits<double>::infinity()},
                {"file", "caf\xc3\xa9 a\xff" "b"}});
  }
  EXPECT_EQ(contents(path), "{\"loss\":null,\"lr\":null,\"grad\":null,\"file\":\"caf\xc3\xa9 a\xef\xbf\xbd" "b\"}\n")
      << "valid UTF-8 passes through, the stray byte 0xff becomes U+FFFD";
  const std::vector<nlohmann::json> entries = MetricsLog::read(path);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].at("loss").is_null());
  std::filesystem::remove(path);
}

TEST(MetricsLog, ReadRefusesLinesThatAreNotObjectsNamingTheLine) {
  const std::string path = temp_path("not_objects.jsonl");
  // The last: a number past double's range, which nlohmann reports as out_of_range, not as a parse
  // error (found by fuzz_run_metadata: it escaped as an uncaught exception).
  for (const std::string& bad : {std::string("[1, 2]"), std::string("{\"step\": 1,}"), std::string("7"),
                                 std::string("{\"loss\": 1.4E355}")}) {
    write_raw(path, "{\"step\": 1}\n" + bad + "\n");
    try {
      MetricsLog::read(path);
      ADD_FAILURE() << "read accepted the line " << bad;
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("not_objects.jsonl line 2: expected a JSON object"), std::string::npos) << e.what();
    }
  }
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
    log.append({{"step", 2}, {"loss", 1.0}});
  }
  EXPECT_EQ(contents(path), long_line + "{\"step\":2,\"loss\":1.0}\n");

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
            "{\"step\": \"3\"}\n"
            "[3]\n"
            "{\"step\": -2, \"loss\": 8}\n"
            "{\"step\": 18446744073709551615}\n"
            "{\"step\": 5, \"loss\": 3}\n"
            "{\"step\": 6, \"lo");
  // Dropped: steps 4, 5 and 2^64-1 (later), "not json", 2.5, "3", [3] and the half line (broken).
  EXPECT_EQ(MetricsLog::truncate_after_step(path, 3), 8u);
  EXPECT_EQ(contents(path),
            "{\"step\": 1, \"loss\": 7}\n"
            "{\"step\": 2, \"loss\": 6}\n"
            "{\"epoch\": 0, \"acc1\": 1.5}\n"
            "{\"step\": 3, \"loss\": 5}\n"
            "{\"step\": -2, \"loss\": 8}\n")
      << "kept lines are copied byte for byte";
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  EXPECT_EQ(MetricsLog::truncate_after_step(path, 3), 0u) << "nothing left to drop";
  EXPECT_EQ(MetricsLog::truncate_after_step(path, 0), 3u);
  EXPECT_EQ(contents(path), "{\"epoch\": 0, \"acc1\": 1.5}\n{\"step\": -2, \"loss\": 8}\n");
  EXPECT_EQ(MetricsLog::truncate_after_step(path, -3), 1u) << "a negative step is compared as one";
  EXPECT_EQ(contents(path), "{\"epoch\": 0, \"acc1\": 1.5}\n");
  std::filesystem::remove(path);

  EXPECT_EQ(MetricsLog::truncate_after_step(path, 3), 0u);
  EXPECT_FALSE(std::filesystem::exists(path)) << "a missing log stays missing";
}

TEST(MetricsLog, WriteFailuresNameTheFile) {
  try {
    MetricsLog log((test_dir().path() / "no_such_folder_for_metrics" / "metrics.jsonl").string());
    ADD_FAILURE() << "a log in a missing folder was opened";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("no_such_folder_for_metrics/metrics.jsonl"), std::string::npos) << e.what();
  }
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full to stand for a full disk";
  MetricsLog full("/dev/full");
  try {
    full.append({{"step", 1}});
    ADD_FAILURE() << "a write to a full disk was accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("'/dev/full' failed after 0 of 11 bytes (disk full?)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::testing
