// image_folder.cpp - see image_folder.h.
#include "data/image_folder.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <set>

#include <sys/stat.h>

#include "engine/check.h"

namespace engine::data {

namespace fs = std::filesystem;

namespace {

constexpr std::array<const char*, 9> kImageExtensions = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                                         ".pgm", ".tif",  ".tiff", ".webp"};

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// A folder's identity on its file system, so that a folder reached twice (through links) is known.
struct FolderId {
  dev_t device;
  ino_t inode;
  auto operator<=>(const FolderId&) const = default;
};

// Collects the image files below `dir` into `by_dir` (folder path -> file names), following links
// to folders as torchvision does, but entering each real folder once: a link to a folder above it,
// or two links to one folder, would otherwise make the walk endless or exponential. Entries are
// visited in name order, so which path reaches a shared folder first is always the same.
void collect_images(const fs::path& dir, std::set<FolderId>& visited,
                    std::map<std::string, std::vector<std::string>>& by_dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !visited.insert({st.st_dev, st.st_ino}).second) return;
  std::error_code ec;
  std::vector<fs::directory_entry> entries;
  for (fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end; !ec && it != end;
       it.increment(ec))
    entries.push_back(*it);
  ENGINE_CHECK(!ec, "cannot list the folder '{}': {}", dir.string(), ec.message());
  std::sort(entries.begin(), entries.end());
  for (const fs::directory_entry& entry : entries) {
    std::error_code type_ec;
    if (entry.is_directory(type_ec)) {  // follows links
      collect_images(entry.path(), visited, by_dir);
    } else if (entry.is_regular_file(type_ec)) {
      const std::string name = entry.path().filename().string();
      if (has_image_extension(name)) by_dir[dir.string()].push_back(name);
    }
  }
}

}  // namespace

std::vector<std::string> images_below(const std::string& folder) {
  std::map<std::string, std::vector<std::string>> by_dir;  // std::map: sorted by directory path
  std::set<FolderId> visited;
  collect_images(fs::path(folder), visited, by_dir);
  std::vector<std::string> paths;
  for (auto& [dir, names] : by_dir) {
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) paths.push_back((fs::path(dir) / name).string());
  }
  return paths;
}

bool has_image_extension(const std::string& filename) {
  std::string lower = filename;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::any_of(kImageExtensions.begin(), kImageExtensions.end(),
                     [&](const char* ext) { return lower.ends_with(ext); });
}

ImageFolder::ImageFolder(std::string root) : root_(std::move(root)) {
  ENGINE_CHECK(fs::exists(root_), "ImageFolder: '{}' does not exist; expected a folder of class folders "
               "(root/<class>/<image>), or a dataset root with train/ and val/", root_);
  ENGINE_CHECK(is_dir(root_), "ImageFolder: '{}' is a file, expected a folder of class folders", root_);
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(root_, ec))
    if (is_dir(entry.path())) classes_.push_back(entry.path().filename().string());
  ENGINE_CHECK(!ec, "ImageFolder: cannot list '{}': {}", root_, ec.message());
  std::sort(classes_.begin(), classes_.end());
  ENGINE_CHECK(!classes_.empty(), "ImageFolder: '{}' has no class folders; expected root/<class>/<image> "
               "(for example {}/dog/1.jpg)", root_, root_);
  for (size_t label = 0; label < classes_.size(); ++label) {
    const std::vector<std::string> paths = images_below((fs::path(root_) / classes_[label]).string());
    ENGINE_CHECK(!paths.empty(), "ImageFolder: class folder '{}' in '{}' holds no images (extensions: .jpg .jpeg "
                 ".png .ppm .bmp .pgm .tif .tiff .webp); add images or remove the folder", classes_[label], root_);
    for (const std::string& path : paths) samples_.push_back({path, static_cast<int64_t>(label)});
  }
}

std::string resolve_split(const std::string& data, const std::string& split) {
  ENGINE_CHECK(fs::exists(data), "'{}' does not exist; expected a dataset root with train/ and val/ or an image "
               "folder root/<class>/<image>", data);
  const fs::path root(data);
  if (is_dir(root / split)) return (root / split).string();
  const bool dataset_root = is_dir(root / "train") || is_dir(root / "val");
  ENGINE_CHECK(!dataset_root, "'{}' is a dataset root (it has {}/) but has no {}/ folder, which this command needs",
               data, is_dir(root / "train") ? "train" : "val", split);
  return data;
}

}  // namespace engine::data
