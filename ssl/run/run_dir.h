// run_dir.h - the folder a training command writes (`moco pretrain` and `moco lincls` alike):
//
//   SAVE_DIR/checkpoints/   last.safetensors and the command's own files (epoch checkpoints, best)
//   SAVE_DIR/metrics.jsonl  one JSON object per logged step or epoch (engine/metrics_log.h)
//   SAVE_DIR/logs/          TensorBoard event files
//   SAVE_DIR/args.json      the flags of the latest invocation
//
// Its rules, in the order a run meets them:
//   open      resolves --resume ("", "auto": last.safetensors when it exists, or a file, which
//             must exist) and refuses a fresh run in a folder that already holds one, so nothing
//             is overwritten. It writes nothing, and comes before any model is built.
//   start_logs  after the model is built and the checkpoint loaded (so a run refused for its
//             flags or data leaves no folder behind): creates the folders, removes the .tmp files
//             a crash in the middle of a checkpoint write leaves (the checkpoint it was replacing
//             is intact), writes args.json; a fresh run starts a fresh metrics.jsonl, a resumed
//             one drops what was logged after its checkpoint's step (that will be trained and
//             logged again) and any "final" line (the run goes on); then opens the metrics log and
//             the TensorBoard writer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "engine/collectives.h"
#include "engine/metrics_log.h"
#include "engine/tensorboard_writer.h"

namespace engine::ssl {

class RunDirectory {
 public:
  // `command` names the caller in messages ("pretrain", "lincls").
  static RunDirectory open(const std::string& save_dir, const std::string& resume, const std::string& command);

  // The checkpoint to continue from, or "" for a fresh run.
  const std::string& resume_path() const { return resume_path_; }
  // Many processes: every rank takes rank 0's resume path (a collective), so no rank starts afresh
  // while the others resume because it sees another folder; a rank that cannot read that file
  // then fails with its name instead of training something else.
  void share_resume_path(Collectives& world);
  bool resuming() const { return !resume_path_.empty(); }

  // `resumed_step`: the step (pretrain) or epoch (lincls) of the checkpoint this run continues,
  // nullopt for a fresh run.
  void start_logs(const std::string& args_json, std::optional<int64_t> resumed_step);
  MetricsLog& metrics() { return *metrics_; }
  TensorBoardWriter& tensorboard() { return *tensorboard_; }

  std::filesystem::path checkpoint(const std::string& name) const { return root_ / "checkpoints" / name; }
  std::filesystem::path last_checkpoint() const { return checkpoint("last.safetensors"); }
  // A subfolder of SAVE_DIR (created when absent), e.g. images/.
  std::filesystem::path subfolder(const std::string& name) const;
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
  std::string command_;
  std::string resume_path_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

}  // namespace engine::ssl
