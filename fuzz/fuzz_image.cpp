// fuzz_image.cpp - JPEG and PNG decoding as the data path does it (data/codec.h): the header
// reader, then the decoder at the DCT scale the input's length picks (1, 2, 4 or 8). Truncated,
// mislabelled or malformed images throw DecodeError.
//
// Images whose header claims more than 4 million pixels are decoded only to the header: the
// decoder refuses over PIL's limit (358 million) and would allocate up to 1 GiB below it, which is
// what the pixel limit allows but would make every such input a slow one for the fuzzer.
#include <span>

#include "data/codec.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  try {
    const engine::data::ImageHeader header = engine::data::read_image_header(bytes, "fuzz");
    if (int64_t{header.width} * header.height > 4'000'000) return 0;
    const int reduce = 1 << (size % 4);
    const engine::data::Image image = engine::data::decode_image(bytes, "fuzz", reduce);
    FUZZ_REQUIRE(image.width > 0 && image.height > 0 &&
                     image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3,
                 "a decoded image is RGB of a positive size");
  } catch (const engine::data::DecodeError&) {
  } catch (const engine::Error&) {
  }
  return 0;
}
