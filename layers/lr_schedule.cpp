// lr_schedule.cpp - see lr_schedule.h.
#include "layers/lr_schedule.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <numbers>

#include "engine/check.h"

namespace engine::nn {

double LrSchedule::at(int64_t epoch, int64_t step_in_epoch, int64_t steps_per_epoch) const {
  ENGINE_CHECK(epochs > 0 && steps_per_epoch > 0, "LrSchedule: epochs ({}) and steps per epoch ({}) must be positive",
               epochs, steps_per_epoch);
  switch (kind) {
    case LrScheduleKind::Cosine:
      return base_lr * 0.5 * (1.0 + std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(epochs)));
    case LrScheduleKind::CosinePerStep: {
      const double progress = static_cast<double>(epoch) +
                              static_cast<double>(step_in_epoch) / static_cast<double>(steps_per_epoch);
      return base_lr * 0.5 * (1.0 + std::cos(std::numbers::pi * progress / static_cast<double>(epochs)));
    }
    case LrScheduleKind::Steps: {
      double lr = base_lr;
      for (int64_t milestone : milestones)
        if (epoch >= milestone) lr *= gamma;
      return lr;
    }
  }
  return base_lr;
}

std::string LrSchedule::describe() const {
  switch (kind) {
    case LrScheduleKind::Cosine: return "cosine";
    case LrScheduleKind::CosinePerStep: return "cosine-per-step";
    case LrScheduleKind::Steps: return fmt::format("step {}", fmt::join(milestones, ","));
  }
  return "?";
}

}  // namespace engine::nn
