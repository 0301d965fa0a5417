// temp_dir.h - a fresh directory under the system temp dir for one test, removed with the object.
#pragma once

#include <filesystem>
#include <string>

namespace engine::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace engine::testing
