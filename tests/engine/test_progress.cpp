// test_progress.cpp - the progress line's text, when it prints off a terminal, and how it redraws
// on one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "engine/check.h"
#include "engine/progress.h"

namespace engine::testing {
namespace {

// Everything written to `file` so far.
std::string written(std::FILE* file) {
  std::fflush(file);
  std::rewind(file);
  std::string text;
  for (int c = std::fgetc(file); c != EOF; c = std::fgetc(file)) text += static_cast<char>(c);
  return text;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t begin = 0;
  for (size_t end = text.find('\n'); end != std::string::npos; end = text.find('\n', begin)) {
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  EXPECT_EQ(begin, text.size()) << "the output ends with a newline";
  return lines;
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(45), "45s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(59.6), "1m00s");
  EXPECT_EQ(format_duration(192), "3m12s");
  EXPECT_EQ(format_duration(3599.5), "1h00m");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(86399), "23h59m");
  EXPECT_EQ(format_duration(86400 + 3 * 3600 + 59 * 60), "1d03h");
  EXPECT_EQ(format_duration(-1), "--");
  EXPECT_EQ(format_duration(std::nan("")), "--");
  EXPECT_EQ(format_duration(std::numeric_limits<double>::infinity()), "--");
}

TEST(Progress, FormatsALine) {
  const std::vector<ProgressField> fields = {{"loss", "6.8123"}, {"acc1", "12.5%"}, {"", "1320 img/s"}};
  EXPECT_EQ(format_progress_line("epoch 3/200", 412, 989, 14, fields, "ETA 3m12s"),
            "epoch 3/200  [#####.........]  412/989  loss 6.8123  acc1 12.5%  1320 img/s  ETA 3m12s");
  EXPECT_EQ(format_progress_line("knn", 7, 989, 0, {}, ""), "knn    7/989");
  EXPECT_EQ(format_progress_line("e", 10, 10, 4, {}, "took 1s"), "e  [####]  10/10  took 1s");
  EXPECT_EQ(format_progress_line("e", 0, 10, 4, {}, ""), "e  [....]   0/10");
}

TEST(Progress, OffATerminalPrintsEveryPrintFreqStepsThenTheTimeTaken) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  {
    ProgressLine progress("epoch 1/2", 25, {.print_freq = 10, .bar_width = 5, .out = out, .interactive = false});
    for (int64_t step = 1; step <= 25; ++step) progress.update(step, {{"loss", fmt::format("{:.1f}", 30.0 - step)}});
    progress.finish();
    progress.finish();  // once only
  }
  const std::vector<std::string> lines = split_lines(written(out));
  std::fclose(out);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "epoch 1/2  [.....]   1/25  loss 29.0  ETA --");
  EXPECT_EQ(lines[1].rfind("epoch 1/2  [##...]  10/25  loss 20.0  ETA ", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("epoch 1/2  [####.]  20/25  loss 10.0  ETA ", 0), 0u) << lines[2];
  EXPECT_EQ(lines[3].rfind("epoch 1/2  [#####]  25/25  loss 5.0  took ", 0), 0u) << lines[3];
}

TEST(Progress, OnATerminalRedrawsOneLineInPlace) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  {
    ProgressLine progress("t", 2,
                          {.bar_width = 0, .min_redraw_seconds = 0, .out = out, .interactive = true});
    progress.update(1, {{"loss", "10.0000"}});
    progress.update(2, {{"loss", "9.5"}});
    progress.finish();
  }
  const std::string first = "t  1/2  loss 10.0000  ETA --";
  const std::string second = "t  2/2  loss 9.5  ETA 0s";
  const std::string last = "t  2/2  loss 9.5  took 0s";
  EXPECT_EQ(written(out), "\r" + first + "\r" + second + std::string(first.size() - second.size(), ' ') + "\r" +
                              last + "\n");
  std::fclose(out);
}

TEST(Progress, OnATerminalThrottlesRedrawsAndEndsAnUnfinishedLine) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  {
    ProgressLine progress("t", 100, {.bar_width = 0, .min_redraw_seconds = 1000, .out = out, .interactive = true});
    for (int64_t step = 1; step <= 50; ++step) progress.update(step, {});
    // Destroyed without finish(), as when an exception leaves the loop.
  }
  EXPECT_EQ(written(out), "\rt    1/100  ETA --\n");
  std::fclose(out);
}

TEST(Progress, RefusesNonsenseSettings) {
  EXPECT_THROW(ProgressLine("t", 0), Error);
  EXPECT_THROW(ProgressLine("t", 5, {.print_freq = 0}), Error);
  EXPECT_THROW(ProgressLine("t", 5, {.bar_width = -1}), Error);
}

}  // namespace
}  // namespace engine::testing
