// temp_dir.cpp - see temp_dir.h.
#include "tests/common/temp_dir.h"

#include <random>
#include <system_error>

namespace engine::testing {

namespace fs = std::filesystem;

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  path_ = fs::temp_directory_path() / ("moco_test_" + tag + "_" + std::to_string(rd()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace engine::testing
