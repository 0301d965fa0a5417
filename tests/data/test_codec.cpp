// test_codec.cpp - decoding against PIL (fixtures of tools/make_data_fixtures.py) and the clear
// refusal of files that are not images.
#include <gtest/gtest.h>

#include "data/augment.h"
#include "data/codec.h"
#include "data/sample_rng.h"
#include "pil_fixtures.h"
#include "temp_dataset.h"

namespace engine::data {
namespace {

using testing::data_fixture_path;
using testing::max_abs_diff;
using testing::reference_image;

// libjpeg-turbo is PIL's decoder too, with the same IDCT and upsampling: equal within 1 level
// (our bound); in practice the files below decode identically.
TEST(Decode, JpegsEqualPilWithinOneLevel) {
  for (const std::string name : {"baseline", "progressive", "q444", "gray", "cmyk", "big"}) {
    const Image ours = read_image(data_fixture_path(name + ".jpg"));
    const Image pil = reference_image("decoded_" + name);
    const int diff = max_abs_diff(ours, pil);
    EXPECT_GE(diff, 0) << name << ": size " << ours.width << "x" << ours.height << " vs PIL " << pil.width << "x"
                       << pil.height;
    EXPECT_LE(diff, 1) << name;
  }
}

TEST(Decode, PngWithAlphaDropsAlphaLikePil) {
  EXPECT_EQ(max_abs_diff(read_image(data_fixture_path("rgba.png")), reference_image("decoded_rgba_png")), 0);
}

TEST(Decode, HeaderGivesSizeWithoutDecoding) {
  const std::vector<uint8_t> bytes = read_file_bytes(data_fixture_path("big.jpg"));
  const ImageHeader header = read_image_header(bytes, "big.jpg");
  EXPECT_EQ(header.width, 320);
  EXPECT_EQ(header.height, 240);
  EXPECT_TRUE(header.is_jpeg);
}

TEST(Decode, ReducedJpegDecodeHasCeilSizeAndSimilarPixels) {
  const std::vector<uint8_t> bytes = read_file_bytes(data_fixture_path("big.jpg"));
  const Image full = decode_image(bytes, "big.jpg");
  for (int reduce : {2, 4, 8}) {
    const Image small = decode_image(bytes, "big.jpg", reduce);
    EXPECT_EQ(small.width, (320 + reduce - 1) / reduce);
    EXPECT_EQ(small.height, (240 + reduce - 1) / reduce);
    // The DCT-scaled image is close to a box-average of the full one, not equal to any resize.
    double err = 0;
    for (int y = 0; y < small.height - 1; ++y)
      for (int x = 0; x < small.width - 1; ++x) {
        double mean = 0;
        for (int dy = 0; dy < reduce; ++dy)
          for (int dx = 0; dx < reduce; ++dx) mean += full.at(x * reduce + dx, y * reduce + dy, 1);
        err += std::abs(mean / (reduce * reduce) - small.at(x, y, 1));
      }
    EXPECT_LT(err / ((small.width - 1) * (small.height - 1)), 4.0) << "reduce " << reduce;
    // PIL's Image.draft asks the same libjpeg-turbo for the same DCT scaling.
    EXPECT_LE(max_abs_diff(small, reference_image("decoded_big_reduce" + std::to_string(reduce))), 1) << reduce;
  }
}

void expect_refused(const std::vector<uint8_t>& bytes, const std::string& expected_words) {
  try {
    decode_image(bytes, "/data/x/bad.JPEG");
    FAIL() << "expected a DecodeError mentioning '" << expected_words << "'";
  } catch (const DecodeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("/data/x/bad.JPEG"), std::string::npos) << message;
    EXPECT_NE(message.find(expected_words), std::string::npos) << message;
  }
}

TEST(Decode, RefusesFilesThatAreNotImagesNamingThem) {
  const std::vector<uint8_t> jpeg = read_file_bytes(data_fixture_path("baseline.jpg"));
  const std::vector<uint8_t> png = read_file_bytes(data_fixture_path("rgba.png"));
  expect_refused({}, "empty");
  expect_refused(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + jpeg.size() / 2), "Premature end");
  expect_refused(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + 200), "JPEG");
  expect_refused(std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2), "PNG");
  std::vector<uint8_t> noise(5000);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  expect_refused(noise, "neither a JPEG nor a PNG");
  // A JPEG header followed by garbage.
  std::vector<uint8_t> garbled = jpeg;
  for (size_t i = 600; i < garbled.size(); ++i) garbled[i] = static_cast<uint8_t>(i * 7);
  EXPECT_THROW(decode_image(garbled, "garbled.jpg"), DecodeError);
}

TEST(Decode, ReadingRefusesWhatIsNotARegularFileNamingIt) {
  // A folder "opens" with an absurd size, a named pipe would block: both refused before reading.
  const std::string folder = data_fixture_path("");
  try {
    read_file_bytes(folder);
    ADD_FAILURE() << "a folder was read";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find(": not a regular file"), std::string::npos) << e.what();
  }
  try {
    read_file_bytes(folder + "/no_such_image.jpg");
    ADD_FAILURE() << "a missing file was read";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_image.jpg: no such file"), std::string::npos) << e.what();
  }
}

TEST(Decode, TheEvaluationViewRefusesAnImageItsResizeCouldNotHold) {
  // 100000 x 1 pixels: a small file, but Resize(256) of its shorter side would be 25.6 M x 256.
  const std::vector<uint8_t> png = encode_png(Image(100000, 1, 3, 90));
  std::vector<float> view(3 * 224 * 224);
  float* const out[1] = {view.data()};
  SampleRng rng(0, 0, 0);
  try {
    make_views(png, "thin.png", eval_transform(224), 1, false, rng, out);
    ADD_FAILURE() << "the elongated image was rendered";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("thin.png: 100000x1 is too elongated: Resize(256)"), std::string::npos)
        << e.what();
  }
  // The random crop cuts before it resizes: the same file renders.
  EXPECT_NO_THROW(make_views(png, "thin.png", mocov2_augment(32), 1, false, rng, out));
  // A 16:1 panorama passes the evaluation resize.
  EXPECT_NO_THROW(check_view_fits(eval_transform(224), 4096, 256, "panorama.jpg"));
}

TEST(Decode, SixteenBitPngWithGammaGivesPilsHighBytes) {
  // libpng's simplified reader would gamma-convert this file (gAMA 1.0); PIL ignores gamma.
  EXPECT_EQ(max_abs_diff(read_image(data_fixture_path("rgb16_gamma.png")), reference_image("decoded_rgb16_gamma_png")),
            0);
}

// Offset of the first occurrence of marker 0xFF `code` in a JPEG.
size_t marker_offset(const std::vector<uint8_t>& jpeg, uint8_t code) {
  for (size_t i = 2; i + 1 < jpeg.size(); ++i)
    if (jpeg[i] == 0xFF && jpeg[i + 1] == code) return i;
  return 0;
}

TEST(Decode, AHugeSizeInADamagedHeaderIsRefusedBeforeAllocating) {
  std::vector<uint8_t> jpeg = read_file_bytes(data_fixture_path("baseline.jpg"));
  const size_t sof = marker_offset(jpeg, 0xC0);
  ASSERT_GT(sof, 0u);
  for (size_t i : {sof + 5, sof + 7}) jpeg[i] = 0x9C, jpeg[i + 1] = 0x40;  // height and width 40000
  expect_refused(jpeg, "exceeds the limit");
}

TEST(Decode, ExtraneousBytesBeforeAMarkerAreToleratedAsByPil) {
  const std::vector<uint8_t> jpeg = read_file_bytes(data_fixture_path("baseline.jpg"));
  std::vector<uint8_t> odd = jpeg;
  const size_t dht = marker_offset(odd, 0xC4);
  ASSERT_GT(dht, 0u);
  odd.insert(odd.begin() + static_cast<ptrdiff_t>(dht), {0x00, 0x11, 0x22});  // libjpeg warns, PIL decodes
  EXPECT_EQ(max_abs_diff(decode_image(odd, "odd.jpg"), decode_image(jpeg, "baseline.jpg")), 0);
  // The warning must not leave the thread's decoder in a state that fails the next file.
  EXPECT_EQ(read_image_header(jpeg, "baseline.jpg").width, 61);
}

TEST(Decode, APngNamedJpegDecodesByContentAsPilDoes) {
  const std::vector<uint8_t> png = read_file_bytes(data_fixture_path("rgba.png"));
  EXPECT_EQ(max_abs_diff(decode_image(png, "photo.JPEG"), reference_image("decoded_rgba_png")), 0);
}

TEST(Encode, JpegAndPngRoundTrip) {
  // Gray content, so 4:2:0 chroma subsampling loses nothing and only quantisation remains.
  Image image = testing::patterned_image(40, 30, 3);
  for (size_t p = 0; p < image.pixels.size(); p += 3) image.pixels[p + 1] = image.pixels[p + 2] = image.pixels[p];
  const Image jpeg = decode_image(encode_jpeg(image, 95), "mem.jpg");
  ASSERT_EQ(jpeg.pixels.size(), image.pixels.size());
  double mean_error = 0;  // lossy, but the same picture
  for (size_t i = 0; i < image.pixels.size(); ++i) mean_error += std::abs(jpeg.pixels[i] - image.pixels[i]);
  EXPECT_LT(mean_error / image.pixels.size(), 3.0);
  Image gray(17, 9, 1);
  for (size_t i = 0; i < gray.pixels.size(); ++i) gray.pixels[i] = static_cast<uint8_t>(i * 13);
  const Image back = decode_image(encode_png(gray), "mask.png");  // decoded as RGB
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 17; ++x) ASSERT_EQ(back.at(x, y, 2), gray.at(x, y)) << x << "," << y;
}

}  // namespace
}  // namespace engine::data
