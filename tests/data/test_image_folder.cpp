// test_image_folder.cpp - torchvision ImageFolder's class and file order, and clear errors.
#include <gtest/gtest.h>

#include "data/image_folder.h"
#include "temp_dataset.h"

namespace engine::data {
namespace {

using testing::TempDir;
using testing::write_bytes;

void expect_error_mentions(const std::function<void()>& f, const std::string& words) {
  try {
    f();
    FAIL() << "expected an error mentioning '" << words << "'";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

TEST(ImageFolder, ClassesSortedFilesInTorchvisionOrder) {
  TempDir dir("folder");
  const auto& r = dir.path();
  for (const std::string f : {"b/2.jpg", "b/10.JPG", "b/sub/1.png", "a/z.jpeg", "a/notes.txt", "C/x.webp"})
    write_bytes(r / f, {1, 2, 3});
  const ImageFolder folder(r.string());
  EXPECT_EQ(folder.classes(), (std::vector<std::string>{"C", "a", "b"}));  // byte order: upper case first
  ASSERT_EQ(folder.size(), 5);
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"C/x.webp", 0}, {"a/z.jpeg", 1}, {"b/10.JPG", 2}, {"b/2.jpg", 2}, {"b/sub/1.png", 2}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(folder[static_cast<int64_t>(i)].path, (r / expected[i].first).string());
    EXPECT_EQ(folder[static_cast<int64_t>(i)].label, expected[i].second);
  }
}

TEST(ImageFolder, ClearErrors) {
  TempDir dir("folder_errors");
  expect_error_mentions([&] { ImageFolder((dir.path() / "missing").string()); }, "does not exist");
  expect_error_mentions([&] { ImageFolder(dir.path().string()); }, "no class folders");
  write_bytes(dir.path() / "cats" / "1.jpg", {1});
  write_bytes(dir.path() / "dogs" / "readme.txt", {1});
  expect_error_mentions([&] { ImageFolder(dir.path().string()); }, "class folder 'dogs'");
}

// Links are followed as torchvision follows them, but a link back up the tree (or two links to one
// folder) would make the walk endless or exponential: each real folder is entered once, by the
// path that comes first in name order.
TEST(ImageFolder, LinkLoopsEndAndEachRealFolderIsListedOnce) {
  namespace fs = std::filesystem;
  TempDir dir("folder_links");
  const fs::path r = dir.path();
  write_bytes(r / "cats" / "1.jpg", {1});
  write_bytes(r / "cats" / "deep" / "2.jpg", {1});
  fs::create_directory_symlink("..", r / "cats" / "deep" / "up");        // a loop to cats/
  fs::create_directory_symlink(".", r / "cats" / "self");                // a loop to itself
  fs::create_directory_symlink("../elsewhere", r / "cats" / "a_link");  // a folder outside the class
  fs::create_directory_symlink("../elsewhere", r / "cats" / "b_link");  // ... reached twice
  fs::create_directory_symlink("nowhere", r / "cats" / "dangling");
  write_bytes(r / "elsewhere" / "3.jpg", {1});
  const ImageFolder folder(r.string());  // elsewhere/ is a class too
  ASSERT_EQ(folder.classes(), (std::vector<std::string>{"cats", "elsewhere"}));
  std::vector<std::string> paths;
  for (const Sample& s : folder.samples()) paths.push_back(fs::path(s.path).lexically_relative(r).string());
  EXPECT_EQ(paths, (std::vector<std::string>{"cats/1.jpg", "cats/a_link/3.jpg", "cats/deep/2.jpg", "elsewhere/3.jpg"}));
}

TEST(ImageFolder, ResolveSplitAcceptsADatasetRootOrAnImageFolder) {
  TempDir dir("split");
  write_bytes(dir.path() / "train" / "cats" / "1.jpg", {1});
  write_bytes(dir.path() / "val" / "cats" / "2.jpg", {1});
  EXPECT_EQ(resolve_split(dir.path().string(), "train"), (dir.path() / "train").string());
  EXPECT_EQ(resolve_split(dir.path().string(), "val"), (dir.path() / "val").string());
  const std::string folder = (dir.path() / "train").string();
  EXPECT_EQ(resolve_split(folder, "val"), folder);  // an image folder is used as it is
  std::filesystem::remove_all(dir.path() / "val");
  expect_error_mentions([&] { resolve_split(dir.path().string(), "val"); }, "has no val/");
}

}  // namespace
}  // namespace engine::data
