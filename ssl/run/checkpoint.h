// checkpoint.h - pretraining checkpoints: everything a run needs to continue bit for bit.
//
// One safetensors file (engine/serialize.h, written atomically: a crash at any moment leaves the
// previous file whole) holding
//   encoder_q.*, encoder_k.*   the two encoders, torchvision names below the prefix
//   queue (D, K), queue_ptr (1) i64
//   optimizer.momentum_buffer.encoder_q.*   SGD's momentum, by parameter name
// and metadata: "format", the position ("epoch", "batch", "step": the run continues at batch
// `batch` of epoch `epoch`, after `step` optimizer steps), "sgd_steps", "args" (the run's flags as
// JSON), and "rng", which says how the random state is restored: every random draw of a run is a
// function of (--seed, epoch, dataset index) for the data and of (--seed, step) for shuffle BN,
// so the seed and the position are the whole state.
//
// Files in SAVE_DIR/checkpoints/: checkpoint_EEEE.safetensors at the end of every epoch (EEEE is
// the number of epochs done), and last.safetensors, the newest checkpoint of any kind (a hard link
// to the epoch file, or a step checkpoint of its own).
#pragma once

#include <cstdint>
#include <string>

#include "engine/serialize.h"
#include "layers/optimizer.h"
#include "ssl/moco.h"

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
  std::string strategy = "none";  // the masking; "hp" also means the encoders saw high-passed images
};

// A pretraining checkpoint read for use outside training (`moco masks` and `moco batch`, the
// saliency report, evaluation): a MoCo built with the checkpoint's own model flags (arch, stem,
// embedding size, queue length, head; --bn-groups from its "args") holding its encoders, queue and
// pointer. The optimizer state is not read. Refuses, with a clear message, a missing file or one
// that is not a pretraining checkpoint.
struct PretrainedMoco {
  std::shared_ptr<MoCo> moco;
  Metadata metadata;  // epoch, step, seed, strategy, args, ...
  int64_t batch_size = 0;
  uint64_t seed = 0;
  std::string strategy;
};
PretrainedMoco load_pretrained_moco(const std::string& path, Device device);

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
};
CheckpointArgs checkpoint_args(const Metadata& m, const std::string& path);

// Refuses a file whose tensors could not hold the ResNet its metadata or shapes describe, before
// that model is allocated: `prefix`conv1.weight must be (width, 3, k, k) and
// `prefix`layer4.0.conv2.weight, the largest kind of weight, (8 width, 8 width, 3, 3). Every
// weight of a ResNet is at most a few times that one, so what a file makes us allocate stays within
// a small multiple of its own size, whatever its metadata claims.
void check_resnet_fits_file(const SafetensorsFile& file, const std::string& prefix, int64_t width,
                            const std::string& path);

// Writes the checkpoint atomically.
void save_checkpoint(const std::string& path, const MoCo& moco, const nn::Sgd& sgd, const TrainingPosition& position,
                     const RunIdentity& run);

// Restores `moco` and `sgd` from `path` and returns where the run stands. Refuses, with what differs, a file that is not a
// pretraining checkpoint, or one made with a different architecture, embedding size, queue length,
// head, batch size or masking strategy (`run`): such a run cannot be continued with these flags.
TrainingPosition load_checkpoint(const std::string& path, MoCo& moco, nn::Sgd& sgd, const RunIdentity& run);

// Makes `last` name the same file as `path` (a hard link, or a copy where links are not supported),
// replacing it atomically.
void publish_as_last(const std::string& path, const std::string& last);

// --resume: "" (none), "auto" (SAVE_DIR/checkpoints/last.safetensors when it exists, else none),
// or a file, which must exist. Returns the file to load or "".
std::string resolve_resume(const std::string& resume, const std::string& save_dir);

}  // namespace engine::ssl
