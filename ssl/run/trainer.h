// trainer.h - training: the loop of the reference's main_moco.py, with its flags, for any method
// behind ssl/methods/method.h (MoCo v2 and SimCLR pretraining, and the supervised baseline).
//
// Per epoch: the learning rate of the schedule; per batch: the method's training forward (with a
// masking --strategy, the paper's masked step, ssl/masking/masking.h), the loss, zero_grad,
// backward, one optimizer step (SGD or LARS, layers/optimizer.h). The loader makes the method's
// views_per_image() views of each image: the contrastive methods' two views of MoCo's augmentation
// (--aug-plus: v2's, else v1's), or supervised's one view of torchvision's standard training
// augmentation (data::lincls_train_augment) with the labels. Around it: a progress line,
// the run directory (ssl/run/run_dir.h): SAVE_DIR/images/ (the first batch of every epoch as a
// picture of views, saliency and masks, when masking), SAVE_DIR/metrics.jsonl (one JSON object per
// logged step, per epoch and per kNN monitor run, --knn-every), TensorBoard scalars under
// SAVE_DIR/logs/, SAVE_DIR/args.json, and checkpoints (ssl/run/checkpoint.h) at every epoch's end,
// every --save-freq-steps steps and at --max-steps. A supervised run ends by measuring its classifier
// on DATA/val when there is one (ssl/eval/classifier_accuracy.h): the validation top-1 and top-5,
// logged and written to metrics.jsonl as a "final" entry.
//
// The step never waits for the device: the loss, the contrast accuracy and the foreground share
// stay there, summed over the steps since the last read, and the host reads them once per print
// interval and before every checkpoint (engine/tensor.h counts such reads; a test checks that
// steady-state steps make none). A loss that is not finite stops the run with an error at that
// read, before any checkpoint after it is written, so the last checkpoint stays the last good one.
//
// Many processes (engine/collectives.h): with `world` set, each of its W ranks runs this loop on
// its share of every batch (-b stays the global batch, as in main_moco.py; each rank takes b / W,
// the rank-th slice of each global batch of one shared epoch order). The method gathers what it
// needs across ranks (ssl/methods/moco.h, simclr.h), the gradients are averaged in buckets during
// the backward (layers/data_parallel.h), and the logged values are averaged over the ranks at each
// read, so a loss that is not finite on any rank stops every rank at the same step. Rank 0 alone
// writes the run directory (checkpoints, metrics, TensorBoard, pictures) and draws the progress
// line; every rank reads the checkpoint it resumes from. A run of W ranks with --bn-groups G is the
// one-process run with W G groups (a test checks it), and either resumes the other.
//
// Determinism: the data is a function of (seed, epoch, index), shuffle BN and the masks of (seed,
// step), and the CPU kernels reduce in a fixed order, so on the CPU a run resumed from a checkpoint
// continues exactly as the uninterrupted run (the tests check the next loss bit for bit).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "engine/collectives.h"
#include "engine/device.h"
#include "engine/precision.h"
#include "ssl/run/step_graph.h"
#include "ssl/masking/masking.h"
#include "ssl/methods/moco.h"
#include "ssl/methods/simclr.h"
#include "ssl/methods/supervised.h"
#include "ssl/run/checkpoint.h"

namespace engine::ssl {

enum class OptimizerKind { Sgd, Lars };
const char* optimizer_name(OptimizerKind kind);  // "sgd", "lars"

struct PretrainConfig {
  std::string data;      // a root with train/, or an image folder
  std::string save_dir;  // checkpoints/, logs/, metrics.jsonl, args.json
  Method method = Method::MocoV2;
  MocoConfig moco;       // --method mocov2; its reference_quirks also switch the masking's quirks
  SimclrConfig simclr;   // --method simclr
  // Method::Supervised (`moco supervised`); its num_classes is set from the training folder.
  SupervisedConfig supervised;
  int64_t batch_size = 256;  // -b: the global batch (all ranks and virtual GPUs)
  double lr = 0.03;
  int64_t epochs = 200;
  std::vector<int64_t> schedule = {120, 160};  // step milestones when not cosine
  bool cos = false;           // cosine per epoch (the reference)
  bool cos_per_step = false;  // cosine per step
  OptimizerKind optimizer = OptimizerKind::Sgd;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  double lars_eta = 0.001;    // LARS's trust coefficient
  bool aug_plus = false;      // MoCo v2's augmentation (else MoCo v1's); contrastive methods only
  // aug-plus's Gaussian blur sigma range in output pixels: the reference's 0.1-2 is meant for 224
  // pixels; smaller images want it scaled by size / 224 (at 32 pixels, 2 would wipe out the view).
  std::vector<double> blur_sigma = {0.1, 2.0};
  int64_t image_size = 224;
  int64_t num_nonsem = 0;     // hard negatives per image (masked copies of the key view)
  MaskStrategy strategy = MaskStrategy::None;  // masking (ssl/masking/masking.h)
  // Where the maps come from: by default (Own) the method's own encoder (momentum for MoCo, online
  // for SimCLR); or pretrained:FILE, or none.
  SaliencySource saliency;
  std::string resume;         // "", a checkpoint file, or "auto"
  uint64_t seed = 0;
  int workers = 4;            // -j: decoding threads
  bool fast_decode = false;
  int64_t print_freq = 10;
  int64_t max_steps = 0;         // stop after this many optimizer steps in all (0: no limit)
  int64_t save_freq_steps = 0;   // a checkpoint every this many steps (0: at epoch ends only)
  Device device = Device::cpu();
  // --precision: bf16 gives the encoders bf16 activations (engine/precision.h); the math mode of
  // the GEMMs is set on the device by the command (use_precision).
  Precision precision = Precision::fp32;
  // --cuda-graphs (ssl/run/step_graph.h): capture the step once and replay it, where it can be.
  CudaGraphs cuda_graphs = CudaGraphs::Auto;
  std::string args_json;  // the flags as given, for args.json and the checkpoints
  // The kNN monitor (ssl/eval/knn.h): every this many epochs (0: never), the online encoder's features of
  // knn_data's train/ (the memory bank) and val/ (the queries), logged as knn_top1.
  int64_t knn_every = 0;
  std::string knn_data;  // "": the pretraining data's root
  int64_t knn_k = 200;
  double knn_t = 0.07;
  // The ranks of a distributed run (must outlive the run); null: this process alone.
  Collectives* world = nullptr;
  // Called with each batch just before its step, on every rank: the command line's fault injection
  // for the distributed fault tests (tools/cmd_pretrain.cpp) uses it to poison a batch or fail.
  std::function<void(int64_t step, data::Batch& batch)> before_step;
};

struct PretrainResult {
  TrainingPosition position;  // where the run stopped
  double last_loss = 0;       // the loss of the last step
  double first_loss = 0;      // the loss of the first step this invocation ran
  std::string last_checkpoint;
  double last_knn_top1 = -1;  // the last kNN monitor's top-1 (%), -1 when it did not run
  // Supervised: the classifier's accuracy (%) on DATA/val at the end of the run; -1 when not measured
  // (another method, no val/, or nothing left to train).
  double val_top1 = -1, val_top5 = -1;
  int64_t graph_replays = 0;  // steps run as a replay of the captured step (--cuda-graphs)
};

// Runs (or resumes) training; throws engine::Error with a clear message on bad input.
PretrainResult pretrain(const PretrainConfig& config);

}  // namespace engine::ssl
