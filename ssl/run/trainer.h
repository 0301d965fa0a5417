// trainer.h - MoCo pretraining: the loop of the reference's main_moco.py, with its flags.
//
// Per epoch: the learning rate of the schedule; per batch: the MoCo forward (ssl/moco.h; with a
// masking --strategy, the masked forward of ssl/masking.h), the loss, zero_grad, backward, one
// SGD step (layers/optimizer.h). Around it: a progress line, SAVE_DIR/images/ (the first batch of
// every epoch as a picture of views, saliency and masks, when masking),
// SAVE_DIR/metrics.jsonl (one JSON object per logged step, per epoch and per kNN monitor run,
// --knn-every), TensorBoard scalars
// under SAVE_DIR/logs/, SAVE_DIR/args.json, and checkpoints (ssl/checkpoint.h) at every epoch's
// end, every --save-freq-steps steps and at --max-steps.
//
// The step never waits for the device: the loss, the contrast accuracy and the foreground share
// stay there, summed over the steps since the last read, and the host reads them once per print
// interval and before every checkpoint (engine/tensor.h counts such reads; a test checks that
// steady-state steps make none). A loss that is not finite stops the run with an error at that
// read, before any checkpoint after it is written, so the last checkpoint stays the last good one.
//
// Determinism: the data is a function of (seed, epoch, index), shuffle BN of (seed, step), and the
// CPU kernels reduce in a fixed order, so on the CPU a run resumed from a checkpoint continues
// exactly as the uninterrupted run (the tests check the next loss bit for bit).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"
#include "ssl/checkpoint.h"
#include "ssl/moco.h"

namespace engine::ssl {

struct PretrainConfig {
  std::string data;      // a root with train/, or an image folder
  std::string save_dir;  // checkpoints/, logs/, metrics.jsonl, args.json
  MocoConfig moco;
  int64_t batch_size = 256;  // -b: the global batch (all virtual GPUs)
  double lr = 0.03;
  int64_t epochs = 200;
  std::vector<int64_t> schedule = {120, 160};  // step milestones when not cosine
  bool cos = false;           // cosine per epoch (the reference)
  bool cos_per_step = false;  // cosine per step
  double momentum = 0.9;
  double weight_decay = 1e-4;
  bool aug_plus = false;      // MoCo v2's augmentation (else MoCo v1's)
  // aug-plus's Gaussian blur sigma range in output pixels: the reference's 0.1-2 is meant for 224
  // pixels; smaller images want it scaled by size / 224 (at 32 pixels, 2 would wipe out the view).
  std::vector<double> blur_sigma = {0.1, 2.0};
  int64_t image_size = 224;
  int64_t num_nonsem = 0;     // hard negatives per image (masked copies of the key view)
  std::string strategy = "none";       // masking: none, hp, blur, mean (ssl/masking.h)
  std::string saliency = "momentum";   // momentum, pretrained:FILE, none
  std::string resume;         // "", a checkpoint file, or "auto"
  uint64_t seed = 0;
  int workers = 4;            // -j: decoding threads
  bool fast_decode = false;
  int64_t print_freq = 10;
  int64_t max_steps = 0;         // stop after this many optimizer steps in all (0: no limit)
  int64_t save_freq_steps = 0;   // a checkpoint every this many steps (0: at epoch ends only)
  Device device = Device::cpu();
  std::string args_json;  // the flags as given, for args.json and the checkpoints
  // The kNN monitor (ssl/knn.h): every this many epochs (0: never), encoder_q's features of
  // knn_data's train/ (the memory bank) and val/ (the queries), logged as knn_top1.
  int64_t knn_every = 0;
  std::string knn_data;  // "": the pretraining data's root
  int64_t knn_k = 200;
  double knn_t = 0.07;
};

struct PretrainResult {
  TrainingPosition position;  // where the run stopped
  double last_loss = 0;       // the loss of the last step
  double first_loss = 0;      // the loss of the first step this invocation ran
  std::string last_checkpoint;
  double last_knn_top1 = -1;  // the last kNN monitor's top-1 (%), -1 when it did not run
};

// Runs (or resumes) pretraining; throws engine::Error with a clear message on bad input.
PretrainResult pretrain(const PretrainConfig& config);

// The shuffle-BN stream of a step: randomness that is a function of (seed, step) only.
inline constexpr uint64_t kShuffleBnStreamBase = 0x5342'0000'0000'0000ull;  // "SB"

}  // namespace engine::ssl
