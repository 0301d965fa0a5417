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
