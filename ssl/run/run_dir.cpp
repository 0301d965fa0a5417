// run_dir.cpp - see run_dir.h.
#include "ssl/run/run_dir.h"

#include <fstream>
#include <system_error>

#include "engine/check.h"
#include "engine/file_io.h"

namespace engine::ssl {

namespace fs = std::filesystem;

namespace {

// --resume: "" (none), "auto" (last.safetensors when it exists, else none), or a file, which must
// exist. Returns the file to load or "".
std::string resolve_resume(const std::string& resume, const fs::path& last) {
  if (resume.empty()) return "";
  if (resume == "auto") return fs::exists(last) ? last.string() : "";
  ENGINE_CHECK(fs::is_regular_file(resume),
               "--resume {}: no such checkpoint file; give a file such as SAVE_DIR/checkpoints/last.safetensors, "
               "or 'auto'",
               resume);
  return resume;
}

// Keeps the lines of metrics.jsonl up to `step` and drops a "final" line, which a run that goes on
// makes untrue.
void forget_after_step(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return;
  MetricsLog::truncate_after_step(path, step);  // also cuts a half-written last line
  std::ifstream in(path);
  std::string kept, line;
  bool dropped = false;
  while (std::getline(in, line)) {
    // Compared as JSON, so a "kind" that is not a string (a damaged log) is kept, not an exception.
    const nlohmann::json entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (entry.is_object() && entry.contains("kind") && entry.at("kind") == "final")
      dropped = true;
    else
      kept += line + "\n";
  }
  in.close();
  if (dropped) write_file_atomic(path, kept);
}

}  // namespace

void RunDirectory::share_resume_path(Collectives& world) { resume_path_ = broadcast_text(world, resume_path_); }

RunDirectory RunDirectory::open(const std::string& save_dir, const std::string& resume, const std::string& command) {
  ENGINE_CHECK(!save_dir.empty(), "{}: give --save-dir, where checkpoints and logs go", command);
  RunDirectory dir;
  dir.root_ = save_dir;
  dir.command_ = command;
  dir.resume_path_ = resolve_resume(resume, dir.last_checkpoint());
  ENGINE_CHECK(dir.resuming() || !fs::exists(dir.last_checkpoint()),
               "{}: {} already holds a run ({}); continue it with --resume auto, or choose another --save-dir", command,
               save_dir, dir.last_checkpoint().string());
  return dir;
}

void RunDirectory::start_logs(const std::string& args_json, std::optional<int64_t> resumed_step) {
  const fs::path checkpoints = root_ / "checkpoints";
  std::error_code ec;
  fs::create_directories(checkpoints, ec);
  ENGINE_CHECK(!ec, "{}: cannot create {}: {}", command_, checkpoints.string(), ec.message());
  for (const auto& entry : fs::directory_iterator(checkpoints))
    if (entry.path().extension() == ".tmp") fs::remove(entry.path(), ec);
  const std::string metrics_path = (root_ / "metrics.jsonl").string();
  if (resumed_step)
    forget_after_step(metrics_path, *resumed_step);
  else if (fs::exists(metrics_path))
    fs::remove(metrics_path);  // a fresh run starts a fresh log
  write_file_atomic((root_ / "args.json").string(), args_json + "\n");
  metrics_ = std::make_unique<MetricsLog>(metrics_path);
  tensorboard_ = std::make_unique<TensorBoardWriter>((root_ / "logs").string());
}

fs::path RunDirectory::subfolder(const std::string& name) const {
  const fs::path dir = root_ / name;
  std::error_code ec;
  fs::create_directories(dir, ec);
  ENGINE_CHECK(!ec, "{}: cannot create {}: {}", command_, dir.string(), ec.message());
  return dir;
}

}  // namespace engine::ssl
