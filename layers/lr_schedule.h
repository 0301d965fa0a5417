// lr_schedule.h - the learning rate of an epoch or step, as the reference's adjust_learning_rate.
//
//   cosine (per epoch, the reference's --cos):  lr(e) = lr0 * 0.5 * (1 + cos(pi * e / E)), constant
//                                               within epoch e (METHOD.md 6.7, oddity O15);
//   cosine per step (our --cos-per-step):      the same with e = epoch + step / steps_per_epoch;
//   step (the reference's default):            lr(e) = lr0 * gamma^(number of milestones <= e),
//                                               gamma 0.1 (MoCo's --schedule 120 160; lincls' 60 80).
// No warm-up, as the reference.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace engine::nn {

enum class LrScheduleKind { Cosine, CosinePerStep, Steps };

struct LrSchedule {
  double base_lr = 0.03;
  int64_t epochs = 200;
  LrScheduleKind kind = LrScheduleKind::Steps;
  std::vector<int64_t> milestones = {120, 160};
  double gamma = 0.1;

  // The rate for step `step_in_epoch` of `epoch` (of `steps_per_epoch` steps).
  double at(int64_t epoch, int64_t step_in_epoch = 0, int64_t steps_per_epoch = 1) const;
  // "cosine", "cosine-per-step" or "step 120,160": for logs and checkpoints.
  std::string describe() const;
};

}  // namespace engine::nn
