// file_io.h - whole-file reads and crash-safe writes, shared by checkpoints, datasets and logs.
#pragma once

#include <string>
#include <string_view>

namespace engine {

// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the new one,
// never a mix: the bytes go to `path.tmp`, are flushed to the disk (fsync), and the temporary file
// is renamed over `path`. Throws engine::Error naming the file when any step fails.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace engine
