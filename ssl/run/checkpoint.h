// checkpoint.h - training checkpoints: everything a run needs to continue bit for bit, for any
// method behind the seam (ssl/methods/method.h): MoCo v2, SimCLR, and the supervised baseline.
//
// One safetensors file (engine/serialize.h, written atomically: a crash at any moment leaves the
// previous file whole) holding
//   the method's state_dict()     MoCo v2: encoder_q.*, encoder_k.*, queue (D, K), queue_ptr (1) i64;
//                                 SimCLR and supervised: encoder.*  (torchvision names below the
//                                 prefix; supervised's fc is its classifier)
//   optimizer.momentum_buffer.<online prefix>*   the optimizer's momentum (SGD or LARS), by
//                                 parameter name
// and metadata: "format", the method's model_metadata() ("method", "arch", "width", ...), the
// position ("epoch", "batch", "step": the run continues at batch `batch` of epoch `epoch`, after
// `step` optimizer steps), "optimizer", "sgd_steps" (the optimizer's step count, whatever the
// optimizer), "args" (the run's flags as JSON), and "rng", which says how the random state is
// restored: every random draw of a run is a function of (--seed, epoch, dataset index) for the data
// and of (--seed, step) for shuffle BN and the masks, so the seed and the position are the whole
// state.
//
// Files written before SimCLR existed have no "method" and no "optimizer": they are MoCo v2 with
// SGD, and load as such.
//
// Files in SAVE_DIR/checkpoints/: checkpoint_EEEE.safetensors at the end of every epoch (EEEE is
// the number of epochs done), and last.safetensors, the newest checkpoint of any kind (a hard link
// to the epoch file, or a step checkpoint of its own).
#pragma once

#include <cstdint>
#include <string>

#include "engine/serialize.h"
#include "layers/optimizer.h"
#include "ssl/masking/masking.h"
#include "ssl/methods/method.h"

namespace engine::ssl {

struct TrainingPosition {
  int64_t epoch = 0;  // the epoch to continue
  int64_t batch = 0;  // the first batch of that epoch not yet trained on
  int64_t step = 0;   // optimizer steps done since the start of the run
};

inline constexpr const char* kCheckpointFormat = "moco-pretrain-checkpoint/1";

// What a checkpoint records about the run besides the tensors and the position.
struct RunIdentity {
  int64_t batch_size = 0;
  uint64_t seed = 0;
  std::string args_json;  // the run's flags
  MaskStrategy strategy = MaskStrategy::None;  // hp also means the encoders saw high-passed images
  std::string optimizer = "sgd";               // "sgd" or "lars"
  // The BatchNorm groups of the global batch: processes x --bn-groups. A run resumes another with
  // the same count whatever its process count (the same math); with another count it is refused.
  int64_t bn_groups_total = 1;
  int64_t world_size = 1;                      // recorded, not compared
};

// A training checkpoint read for use outside training (`moco masks` and `moco batch`, the
// saliency report, evaluation): the method built with the checkpoint's own model flags (MoCo v2:
// arch, stem, embedding size, queue length, head; SimCLR: arch, stem, embedding size; supervised:
// arch, stem, classes; --bn-groups from its "args") holding its state. The optimizer state is not
// read. Refuses, with a clear message, a missing file or one that is not a training checkpoint.
struct PretrainedRun {
  std::shared_ptr<ContrastiveMethod> method;
  Metadata metadata;  // epoch, step, seed, strategy, args, ...
  int64_t batch_size = 0;
  uint64_t seed = 0;
  MaskStrategy strategy = MaskStrategy::None;
};
PretrainedRun load_pretrained(const std::string& path, Device device);

// The masking strategy a checkpoint's metadata names ("strategy"; none when absent); refuses, naming
// the file, a value that is not one.
MaskStrategy checkpoint_strategy(const Metadata& m, const std::string& path);

// The method a checkpoint's metadata names ("method"; MoCo v2 for files written before it existed).
Method checkpoint_method(const Metadata& m, const std::string& path);

// A checkpoint's metadata value, with a message naming the file and key when it is absent or not
// of the kind asked for.
std::string metadata_text(const Metadata& m, const std::string& key, const std::string& path);
int64_t metadata_count(const Metadata& m, const std::string& key, const std::string& path);  // >= 0
double metadata_real(const Metadata& m, const std::string& key, const std::string& path);

// The flags in a checkpoint's "args" (the run's flags as JSON) that a reader of the checkpoint
// needs: --bn-groups (how the encoders' BatchNorm was grouped) and --image-size (the crop that
// evaluation uses). 0 where the args do not say (files written before the flag existed); refused,
// naming the file, when the args are not a JSON object or a value is not a count in range.
struct CheckpointArgs {
  int64_t bn_groups = 0;
  int64_t image_size = 0;
  std::string precision = "fp32";  // --precision (runs from before the flag: fp32)
};
CheckpointArgs checkpoint_args(const Metadata& m, const std::string& path);


// Writes the checkpoint atomically.
void save_checkpoint(const std::string& path, const ContrastiveMethod& method, const nn::Optimizer& optimizer,
                     const TrainingPosition& position, const RunIdentity& run);

// Restores `method` and `optimizer` from `path` and returns where the run stands. Refuses, with
// what differs, a file that is not a training checkpoint, or one made with another method (naming
// the command that continues it), architecture, embedding size, class count, queue length, head,
// batch size, masking strategy or optimizer (`run`): such a run cannot be continued with these flags.
TrainingPosition load_checkpoint(const std::string& path, ContrastiveMethod& method, nn::Optimizer& optimizer,
                                 const RunIdentity& run);

// Makes `last` name the same file as `path` (a hard link, or a copy where links are not supported),
// replacing it atomically.
void publish_as_last(const std::string& path, const std::string& last);

}  // namespace engine::ssl
