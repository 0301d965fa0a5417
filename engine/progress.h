// progress.h - the terminal progress line of training and evaluation loops:
//
//   epoch 3/200  [#######.............]  412/989  loss 6.8123  acc1 12.5%  1320 img/s  ETA 3m12s
//
// The caller names the loop (`title`), gives the number of steps, and after each step passes the
// values to show as (name, formatted value) pairs, so pretraining, linear evaluation and kNN share
// it. The line adds the bar, the step count and the time left, estimated from the steps since the
// first update (the first step, slowed by warm-up, does not skew it).
//
// On a terminal (isatty) the line is redrawn in place with '\r', at most every
// `min_redraw_seconds`, clipped to the terminal's width. Elsewhere (output to a file, a pipe, a
// job log) a plain line is printed after the first step and every `print_freq` steps, so the log
// stays readable. finish() ends the loop with a last line that gives the time taken
// ("took 5m03s") instead of the estimate, then a newline; in a log the last step's line is that one.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace engine {

struct ProgressField {
  std::string name;   // "loss"; empty for a value that names itself ("1320 img/s")
  std::string value;  // "6.8123", already formatted by the caller
};

struct ProgressOptions {
  int64_t print_freq = 10;          // off a terminal: a line every this many steps
  int bar_width = 20;               // 0: no bar
  double min_redraw_seconds = 0.1;  // on a terminal: redraws closer than this are skipped
  std::FILE* out = stdout;
  std::optional<bool> interactive = std::nullopt;  // redraw in place; default: whether `out` is a terminal
};

// "45s", "3m12s", "1h02m", "2d03h" (rounded to the second first, then cut to two units); "--" for
// a negative or non-finite duration (nothing to estimate from yet).
std::string format_duration(double seconds);

// The text of one line, without '\r' or '\n': title, bar, "step/total" (the step padded to the
// width of the total, so the line does not jitter), the fields, then `tail` ("ETA 3m12s").
std::string format_progress_line(std::string_view title, int64_t step, int64_t total, int bar_width,
                                 const std::vector<ProgressField>& fields, std::string_view tail);

class ProgressLine {
 public:
  ProgressLine(std::string title, int64_t total_steps, ProgressOptions options = {});
  ~ProgressLine();  // ends a line left unfinished (a loop cut short by an exception) with a newline
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // After `step` of the total steps are done (1-based).
  void update(int64_t step, const std::vector<ProgressField>& fields);
  // The last line: the last update's step and fields, the time taken, and a newline.
  void finish();

 private:
  using Clock = std::chrono::steady_clock;
  void draw(const std::string& line, bool final_line);
  double seconds_since(Clock::time_point t) const;

  std::string title_;
  int64_t total_;
  ProgressOptions options_;
  bool interactive_;
  int terminal_columns_ = 0;  // 0: unknown, no clipping

  Clock::time_point start_ = Clock::now();
  std::optional<Clock::time_point> first_update_time_;
  int64_t first_update_step_ = 0;
  std::optional<Clock::time_point> last_draw_time_;
  int64_t step_ = 0;
  std::vector<ProgressField> fields_;
  size_t drawn_length_ = 0;  // of the line now on the terminal, to blank what a shorter one leaves
  bool line_open_ = false;   // a redrawn line without its newline yet
  bool finished_ = false;
};

}  // namespace engine
