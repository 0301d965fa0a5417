// test_embedding.cpp - ssl/eval/embedding.h: what `moco embed` and the installed library compute.
#include "ssl/eval/embedding.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>

#include "data/codec.h"
#include "data/image_list.h"
#include "data/sample_rng.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/log.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"
#include "tests/data/temp_dataset.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using data::testing::patterned_image;
using data::testing::write_bytes;
using testing::TempDir;
using testing::all_close;
using testing::error_of;

void expect_error_contains(const std::function<void()>& f, const std::string& part) {
  const std::string message = error_of(f);
  EXPECT_NE(message.find(part), std::string::npos) << message;
}

// The rows of an (N, D) host tensor.
std::vector<std::vector<float>> rows_of(const Tensor& t) {
  const std::vector<float> v = t.to_vector<float>();
  std::vector<std::vector<float>> rows;
  for (int64_t i = 0; i < t.size(0); ++i) rows.emplace_back(v.begin() + i * t.size(1), v.begin() + (i + 1) * t.size(1));
  return rows;
}

// Five JPEGs of different sizes in two folders, a truncated JPEG, an empty file and a PNG named .jpg.
class EmbeddingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("embedding");
    const fs::path root = dir_->path() / "images";
    for (int i = 0; i < 5; ++i)
      write_bytes(root / (i < 3 ? "a" : "b/c") / ("img" + std::to_string(i) + ".jpg"),
                  data::encode_jpeg(patterned_image(24 + 5 * i, 20 + 3 * i, i)));
    std::vector<uint8_t> whole = data::encode_jpeg(patterned_image(30, 30, 9));
    whole.resize(whole.size() / 2);
    write_bytes(root / "a" / "corrupt.jpg", whole);
    write_bytes(root / "b" / "empty.jpg", {});
    write_bytes(root / "b" / "png_named.jpg", data::encode_png(patterned_image(19, 23, 4)));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string images() { return (dir_->path() / "images").string(); }

  static EmbedderOptions options() {
    EmbedderOptions o;
    o.backbone.pretrained = kRandomBackbone;
    o.backbone.random_config.arch = "resnet18";
    o.backbone.random_config.stem = nn::ResNetStem::SmallImage;
    o.backbone.random_config.width = 8;
    o.backbone.random_seed = 5;
    o.image_size = 16;
    o.batch_size = 2;
    o.workers = 2;
    return o;
  }
  static TempDir* dir_;
};
TempDir* EmbeddingTest::dir_ = nullptr;

TEST_F(EmbeddingTest, FilesGiveTheNetworksFeaturesOfTheEvaluationViewAndSkipWhatCannotBeDecoded) {
  const Embedder embedder(options());
  const std::vector<std::string> paths = data::list_image_files(images());
  ASSERT_EQ(paths.size(), 8u);
  std::vector<std::string> warnings;
  const LogSink previous = set_log_sink([&](LogLevel level, std::string_view m) {
    if (level == LogLevel::Warning) warnings.emplace_back(m);
  });
  std::vector<int64_t> progress;
  const FileEmbeddings e = embedder.embed_files(paths, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 8);
    progress.push_back(done);
  });
  set_log_sink(previous);
  EXPECT_EQ(progress, (std::vector<int64_t>{2, 4, 6, 8}));

  // The truncated JPEG and the empty file are named and skipped; the PNG decodes by its content.
  ASSERT_EQ(e.skipped.size(), 2u);
  EXPECT_EQ(fs::path(e.skipped[0].path).filename(), "corrupt.jpg");
  EXPECT_NE(e.skipped[0].reason.find("corrupt.jpg: not a decodable JPEG"), std::string::npos) << e.skipped[0].reason;
  EXPECT_EQ(fs::path(e.skipped[1].path).filename(), "empty.jpg");
  EXPECT_NE(e.skipped[1].reason.find("empty.jpg"), std::string::npos) << e.skipped[1].reason;
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("embed: skipped "), std::string::npos);
  ASSERT_EQ(e.paths.size(), 6u);
  EXPECT_EQ(e.embeddings.shape(), (Shape{6, 64}));  // ResNet-18 of width 8: 8 x 8 features
  EXPECT_EQ(fs::path(e.paths.back()).filename(), "img4.jpg");
  EXPECT_EQ(fs::path(e.paths[3]).filename(), "png_named.jpg");  // b/ before b/c/

  // Each row is the backbone's pooled features of the evaluation view, all six in one batch here.
  const Backbone reference = load_backbone(options().backbone, Device::cpu());
  const data::AugmentConfig t = data::eval_transform(16);
  Tensor views = Tensor::empty({6, 3, 16, 16});
  for (int64_t i = 0; i < 6; ++i) {
    const data::Image image = data::read_image(e.paths[static_cast<size_t>(i)]);
    data::SampleRng rng(0, 0, 0);
    data::render_view(image, data::sample_view(t, image.width, image.height, rng), t, 1,
                      views.data<float>() + i * 3 * 16 * 16);
  }
  NoGradGuard no_grad;
  const Tensor expected = reference.net->features(views);
  EXPECT_TRUE(all_close(e.embeddings, expected, 1e-5, 1e-5));
  double largest = 0;
  for (float v : expected.to_vector<float>()) largest = std::max(largest, std::abs(static_cast<double>(v)));
  EXPECT_GT(largest, 1e-3);  // not trivially zero
}

TEST_F(EmbeddingTest, PixelsInMemoryGiveTheRowsOfTheirFiles) {
  const Embedder embedder(options());
  const FileEmbeddings files = embedder.embed_files(data::list_image_files(images()));
  std::vector<data::Image> decoded;
  for (const std::string& p : files.paths) decoded.push_back(data::read_image(p));
  const Tensor rows = embedder.embed_images(decoded);
  // Batches differ (a skipped file leaves a batch of one), and with them the order of some sums.
  EXPECT_TRUE(all_close(rows, files.embeddings, 1e-5, 1e-5));
  data::Image gray(5, 5, 1);
  EXPECT_THROW(embedder.embed_images(std::vector<data::Image>{gray}), Error);
}

TEST_F(EmbeddingTest, NormalizeAndHighPassChangeWhatTheyShould) {
  EmbedderOptions o = options();
  const Tensor raw = Embedder(o).embed_files(data::list_image_files(images())).embeddings;
  o.normalize = true;
  const Tensor unit = Embedder(o).embed_files(data::list_image_files(images())).embeddings;
  const auto unit_rows = rows_of(unit), raw_rows = rows_of(raw);
  for (size_t r = 0; r < unit_rows.size(); ++r) {
    double norm = 0, raw_norm = 0;
    for (float v : unit_rows[r]) norm += v * v;
    for (float v : raw_rows[r]) raw_norm += v * v;
    EXPECT_NEAR(norm, 1.0, 1e-5);
    for (size_t c = 0; c < raw_rows[r].size(); ++c)  // the same direction
      EXPECT_NEAR(unit_rows[r][c] * std::sqrt(raw_norm), raw_rows[r][c], 1e-4 * (1 + std::sqrt(raw_norm)));
  }
  o.normalize = false;
  o.high_pass = HighPass::On;
  const Embedder high(o);
  EXPECT_TRUE(high.high_pass());
  EXPECT_NE(high.preprocessing_text().find("HighPass"), std::string::npos);
  EXPECT_FALSE(all_close(high.embed_files(data::list_image_files(images())).embeddings, raw, 1e-3, 1e-3));
  EXPECT_EQ(Embedder(options()).preprocessing_text(),
            "Resize(18) CenterCrop(16) ToTensor Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])");
}

// The same files on CUDA and on the CPU: ResNet-18 (width 8) everywhere, ResNet-50 at 224 pixels
// on a GPU only. Tolerance: cuDNN sums the convolutions in another order than the CPU's GEMMs.
TEST_F(EmbeddingTest, CudaMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  EmbedderOptions o = options();
  const FileEmbeddings cpu = Embedder(o).embed_files(data::list_image_files(images()));
  o.device = Device::cuda();
  const FileEmbeddings cuda = Embedder(o).embed_files(data::list_image_files(images()));
  EXPECT_EQ(cuda.paths, cpu.paths);
  EXPECT_TRUE(all_close(cuda.embeddings, cpu.embeddings, 1e-4, 1e-4));
}

TEST_F(EmbeddingTest, CudaRealSizeResnet50At224MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  EmbedderOptions o = options();
  o.backbone.random_config = nn::ResNetConfig{};  // ResNet-50, torchvision's stem and width
  o.image_size = 224;
  o.batch_size = 4;
  const FileEmbeddings cpu = Embedder(o).embed_files(data::list_image_files(images()));
  o.device = Device::cuda();
  const FileEmbeddings cuda = Embedder(o).embed_files(data::list_image_files(images()));
  ASSERT_EQ(cuda.embeddings.shape(), (Shape{6, 2048}));
  double largest = 0;
  for (float v : cpu.embeddings.to_vector<float>()) largest = std::max(largest, std::abs(static_cast<double>(v)));
  EXPECT_TRUE(all_close(cuda.embeddings, cpu.embeddings, 1e-4 * largest, 1e-3));
}

TEST_F(EmbeddingTest, FoldersMissingFilesAndElongatedImagesAreNamedNotFatal) {
  const fs::path root = dir_->path();
  // A list naming a folder and a file that is not there, between two images.
  std::ofstream(root / "odd_list.txt") << "images/a/img0.jpg\nimages/b\nnowhere.jpg\nimages/a/img1.jpg\n";
  const Embedder embedder(options());
  const FileEmbeddings e = embedder.embed_files(data::list_image_files((root / "odd_list.txt").string()));
  ASSERT_EQ(e.paths.size(), 2u);
  ASSERT_EQ(e.skipped.size(), 2u);
  EXPECT_NE(e.skipped[0].reason.find("images/b: not a regular file"), std::string::npos) << e.skipped[0].reason;
  EXPECT_NE(e.skipped[1].reason.find("nowhere.jpg: no such file"), std::string::npos) << e.skipped[1].reason;
  // 1 x 4,000,000 pixels: Resize(18) of the shorter side would hold 72 million x 18 pixels.
  const std::vector<data::Image> thin{data::Image(4000000, 1, 3, 128)};
  expect_error_contains([&] { embedder.embed_images(thin); }, "image 0: 4000000x1 is too elongated");
}

TEST_F(EmbeddingTest, RefusesWhatItCannotDo) {
  EmbedderOptions o = options();
  o.output = EmbeddingOutput::Projection;
  expect_error_contains([&] { Embedder e(o); }, "only a `moco pretrain` checkpoint holds");
  o = options();
  o.batch_size = 0;
  expect_error_contains([&] { Embedder e(o); }, "-b/--batch-size: expected at least 1");
  o = options();
  o.workers = 0;
  expect_error_contains([&] { Embedder e(o); }, "-j/--workers: expected at least 1");
  o = options();
  o.image_size = 4;
  expect_error_contains([&] { Embedder e(o); }, "--image-size: expected a crop side of 8 to 4096");
  o = options();
  o.backbone.pretrained = (dir_->path() / "no_such.safetensors").string();
  expect_error_contains([&] { Embedder e(o); }, "no_such.safetensors: no such file");
  expect_error_contains([] { parse_embedding_output("logits"); }, "--output: expected features");
}

TEST_F(EmbeddingTest, ImageListsNameFoldersFilesAndListsOfPaths) {
  const fs::path root = dir_->path();
  // A folder: recursive, sorted by directory then name.
  const std::vector<std::string> all = data::list_image_files(images());
  std::vector<std::string> names;
  for (const std::string& p : all) names.push_back(fs::relative(p, images()).string());
  EXPECT_EQ(names, (std::vector<std::string>{"a/corrupt.jpg", "a/img0.jpg", "a/img1.jpg", "a/img2.jpg",
                                              "b/empty.jpg", "b/png_named.jpg", "b/c/img3.jpg", "b/c/img4.jpg"}));
  // One image.
  EXPECT_EQ(data::list_image_files(all[1]), std::vector<std::string>{all[1]});
  // A list: comments and blank lines ignored, spaces and \r trimmed, relative to the list's folder.
  std::ofstream(root / "list.txt") << "# my images\n\n  images/a/img2.jpg \r\n" << all[6] << "\nmissing.jpg\n";
  EXPECT_EQ(data::list_image_files((root / "list.txt").string()),
            (std::vector<std::string>{(root / "images/a/img2.jpg").string(), all[6], (root / "missing.jpg").string()}));
  // Refusals.
  expect_error_contains([&] { data::list_image_files((root / "nothing").string()); }, "nothing' does not exist");
  fs::create_directories(root / "no_images");
  std::ofstream(root / "no_images" / "readme.txt") << "text";
  expect_error_contains([&] { data::list_image_files((root / "no_images").string()); }, "holds no images");
  std::ofstream(root / "empty_list.txt") << "# nothing\n\n";
  expect_error_contains([&] { data::list_image_files((root / "empty_list.txt").string()); }, "lists no image paths");
  std::ofstream(root / "binary.bin", std::ios::binary).write("ab\0cd", 5);
  expect_error_contains([&] { data::list_image_files((root / "binary.bin").string()); }, "holds a NUL byte");
}

}  // namespace
}  // namespace engine::ssl
