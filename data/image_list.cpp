// image_list.cpp - see image_list.h.
#include "data/image_list.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/image_folder.h"
#include "engine/check.h"

namespace engine::data {

namespace fs = std::filesystem;

namespace {

std::string trimmed(const std::string& line) {
  const size_t first = line.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  const size_t last = line.find_last_not_of(" \t\r");
  return line.substr(first, last - first + 1);
}

std::vector<std::string> read_path_list(const std::string& list) {
  std::ifstream in(list, std::ios::binary);
  ENGINE_CHECK(in.good(), "'{}': cannot be opened for reading", list);
  std::stringstream whole;
  whole << in.rdbuf();
  const std::string text = whole.str();
  ENGINE_CHECK(text.find('\0') == std::string::npos,
               "'{}' is not a text file of image paths (it holds a NUL byte); give a folder of images, one image, "
               "or a text file with one path per line",
               list);
  const fs::path base = fs::path(list).parent_path();
  std::vector<std::string> paths;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const std::string path = trimmed(line);
    if (path.empty() || path.front() == '#') continue;
    paths.push_back(fs::path(path).is_absolute() || base.empty() ? path : (base / path).string());
  }
  ENGINE_CHECK(!paths.empty(), "'{}' lists no image paths (one per line expected; blank lines and # comments are "
               "ignored)", list);
  return paths;
}

}  // namespace

std::vector<std::string> list_image_files(const std::string& source) {
  std::error_code ec;
  ENGINE_CHECK(fs::exists(source, ec), "'{}' does not exist; give a folder of images (walked recursively), one "
               "image, or a text file with one image path per line", source);
  if (fs::is_directory(source, ec)) {
    std::vector<std::string> paths = images_below(source);
    ENGINE_CHECK(!paths.empty(), "folder '{}' holds no images, searched recursively (extensions: .jpg .jpeg .png "
                 ".ppm .bmp .pgm .tif .tiff .webp)", source);
    return paths;
  }
  if (has_image_extension(fs::path(source).filename().string())) return {source};
  return read_path_list(source);
}

}  // namespace engine::data
