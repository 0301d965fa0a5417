// progress.cpp - see progress.h.
#include "engine/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "engine/check.h"

namespace engine {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::string format_progress_line(std::string_view title, int64_t step, int64_t total, int bar_width,
                                 const std::vector<ProgressField>& fields, std::string_view tail) {
  std::string line(title);
  if (bar_width > 0) {
    const int64_t done = std::clamp<int64_t>(step, 0, total);
    const auto filled = static_cast<size_t>(bar_width * done / total);
    line += "  [" + std::string(filled, '#') + std::string(static_cast<size_t>(bar_width) - filled, '.') + "]";
  }
  const auto total_digits = static_cast<int>(std::to_string(total).size());
  line += fmt::format("  {:>{}}/{}", step, total_digits, total);
  for (const ProgressField& field : fields)
    line += field.name.empty() ? fmt::format("  {}", field.value) : fmt::format("  {} {}", field.name, field.value);
  if (!tail.empty()) line += fmt::format("  {}", tail);
  return line;
}

ProgressLine::ProgressLine(std::string title, int64_t total_steps, ProgressOptions options)
    : title_(std::move(title)), total_(total_steps), options_(options) {
  ENGINE_CHECK(total_ >= 1, "progress line '{}': expected at least one step, found {}", title_, total_);
  ENGINE_CHECK(options_.print_freq >= 1, "progress line '{}': print_freq must be at least 1, found {}", title_,
               options_.print_freq);
  ENGINE_CHECK(options_.bar_width >= 0, "progress line '{}': bar_width must be >= 0, found {}", title_,
               options_.bar_width);
  ENGINE_CHECK(options_.out != nullptr, "progress line '{}': no output stream", title_);
  const int fd = ::fileno(options_.out);
  interactive_ = options_.interactive.value_or(fd >= 0 && ::isatty(fd) == 1);
  winsize size{};
  if (interactive_ && fd >= 0 && ::ioctl(fd, TIOCGWINSZ, &size) == 0) terminal_columns_ = size.ws_col;
}

ProgressLine::~ProgressLine() {
  if (line_open_) {
    std::fputc('\n', options_.out);
    std::fflush(options_.out);
  }
}

double ProgressLine::seconds_since(Clock::time_point t) const {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void ProgressLine::update(int64_t step, const std::vector<ProgressField>& fields) {
  step_ = step;
  fields_ = fields;
  if (!first_update_time_) {
    first_update_time_ = Clock::now();
    first_update_step_ = step;
  }
  if (interactive_) {
    if (last_draw_time_ && seconds_since(*last_draw_time_) < options_.min_redraw_seconds) return;
  } else if (step == total_ || (step != 1 && step % options_.print_freq != 0)) {
    return;  // off a terminal the last step's line is finish()'s
  }
  // Seconds per step over the steps since the first update; unknown until a second update.
  const int64_t steps_timed = step - first_update_step_;
  const double eta = steps_timed > 0 ? seconds_since(*first_update_time_) / static_cast<double>(steps_timed) *
                                           static_cast<double>(total_ - step)
                                     : -1.0;
  draw(format_progress_line(title_, step, total_, options_.bar_width, fields_, "ETA " + format_duration(eta)), false);
}

void ProgressLine::finish() {
  if (finished_) return;
  finished_ = true;
  draw(format_progress_line(title_, step_, total_, options_.bar_width, fields_,
                            "took " + format_duration(seconds_since(start_))),
       true);
}

void ProgressLine::draw(const std::string& text, bool final_line) {
  last_draw_time_ = Clock::now();
  if (!interactive_) {
    std::fprintf(options_.out, "%s\n", text.c_str());
    std::fflush(options_.out);
    return;
  }
  // One column is left free: a line that fills the terminal exactly wraps on some terminals.
  std::string line = text;
  if (terminal_columns_ > 1 && line.size() > static_cast<size_t>(terminal_columns_ - 1))
    line.resize(static_cast<size_t>(terminal_columns_ - 1));
  const size_t blank = drawn_length_ > line.size() ? drawn_length_ - line.size() : 0;
  std::fprintf(options_.out, "\r%s%s%s", line.c_str(), std::string(blank, ' ').c_str(), final_line ? "\n" : "");
  std::fflush(options_.out);
  drawn_length_ = final_line ? 0 : line.size();
  line_open_ = !final_line;
}

}  // namespace engine
