// fuzz_image_folder.cpp - the image-folder scanner (data/image_folder.h) and the split resolver on
// folder trees the input describes, one entry per line:
//   d PATH           a folder            f PATH           an empty file
//   l PATH TARGET    a symbolic link to TARGET (relative to the link's folder)
// PATHs are relative names inside a scratch folder (bytes other than '/' and NUL allowed, so odd
// names, spaces and non-UTF-8 occur); an entry that would leave the scratch folder is skipped.
// Links may point at folders above them, at each other or at nothing: loops must not hang the scan.
#include <fstream>
#include <sstream>
#include <system_error>

#include "data/image_folder.h"
#include "fuzz/fuzz_common.h"

namespace fs = std::filesystem;

namespace {

// `relative` made safe: inside the scratch folder, lexically, or empty when it would leave it.
fs::path inside(const fs::path& base, const std::string& relative) {
  if (relative.empty() || relative.front() == '/' || relative.find('\0') != std::string::npos) return {};
  const fs::path p = fs::path(relative).lexically_normal();
  if (p.empty() || *p.begin() == "..") return {};
  return base / p;
}

void build_tree(const fs::path& root, std::string_view text) {
  std::istringstream lines{std::string(text)};
  std::string line;
  for (int n = 0; n < 64 && std::getline(lines, line); ++n) {
    if (line.size() < 3 || line[1] != ' ') continue;
    std::string rest = line.substr(2), target;
    if (line[0] == 'l') {
      const size_t space = rest.find(' ');
      if (space == std::string::npos) continue;
      target = rest.substr(space + 1);
      rest = rest.substr(0, space);
    }
    const fs::path where = inside(root, rest);
    if (where.empty()) continue;
    std::error_code ec;
    fs::create_directories(where.parent_path(), ec);
    if (line[0] == 'd') {
      fs::create_directories(where, ec);
    } else if (line[0] == 'f') {
      std::ofstream(where.string()).put('x');
    } else if (line[0] == 'l') {
      // The target must stay inside the scratch folder too (seen from the link's folder).
      const fs::path resolved = inside(root, (where.parent_path().lexically_relative(root) / target).string());
      if (!resolved.empty()) fs::create_directory_symlink(target, where, ec);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path root = engine::fuzz::scratch_dir() / "tree";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root / "data");
  build_tree(root / "data", engine::fuzz::as_text(data, size));
  for (const char* split : {"train", "val"}) {
    engine::fuzz::expect_success_or_refusal([&] {
      const engine::data::ImageFolder folder(engine::data::resolve_split((root / "data").string(), split));
      FUZZ_REQUIRE(folder.size() > 0 && !folder.classes().empty(), "a scanned folder has images and classes");
      for (const engine::data::Sample& s : folder.samples())
        FUZZ_REQUIRE(s.label >= 0 && s.label < static_cast<int64_t>(folder.classes().size()), "labels name classes");
    });
  }
  return 0;
}
