// image_folder.h - torchvision's ImageFolder: root/<class>/**/<image>, classes sorted by name.
//
// Class indices follow the sorted class-folder names (byte order, as Python's sorted()); files are
// found recursively (following symlinks, but entering each real folder once, so a link loop cannot
// make the scan endless) and ordered as torchvision's sorted(os.walk()): by directory path, then by
// file name. An image is a file whose lower-cased name ends with one of
// torchvision's extensions (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp); JPEG and PNG decode,
// the rest are reported and skipped by the loader like any undecodable file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace engine::data {

struct Sample {
  std::string path;
  int64_t label = 0;
};

class ImageFolder {
 public:
  // Scans `root`. Throws engine::Error for a missing or empty root, or a class folder without images
  // (naming it).
  explicit ImageFolder(std::string root);

  const std::string& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<Sample>& samples() const { return samples_; }
  int64_t size() const { return static_cast<int64_t>(samples_.size()); }
  const Sample& operator[](int64_t i) const { return samples_[static_cast<size_t>(i)]; }

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<Sample> samples_;
};

bool has_image_extension(const std::string& filename);

// The image files below `folder` (recursively, links followed, each real folder entered once) in
// torchvision's order: by directory path, then by file name. Throws engine::Error when a folder
// cannot be listed.
std::vector<std::string> images_below(const std::string& folder);

// DATA as every command takes it: a dataset root with train/ (and val/) subfolders, as the
// reference's scripts take ImageNet, or an image folder itself. Returns DATA/<split> when DATA has
// a <split> folder, DATA itself when it has neither train/ nor val/, and throws when it is a
// dataset root without the split asked for.
std::string resolve_split(const std::string& data, const std::string& split);

}  // namespace engine::data
