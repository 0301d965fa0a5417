// codec.h - reading and writing image files: JPEG through TurboJPEG (libjpeg-turbo), PNG through
// libpng. Decoding gives what PIL's Image.open(path).convert("RGB") gives (METHOD.md Appendix B):
//   - libjpeg's accurate integer IDCT and "fancy" chroma upsampling, PIL's defaults;
//   - grayscale files replicated to three channels;
//   - CMYK/YCCK files read as Adobe-inverted CMYK (PIL's "CMYK;I") and converted with Pillow's
//     formula  R = 255 - K' - C'(255 - K')/255  (with C' = 255 - stored C, and so on);
//   - PNG: palette and gray expanded, alpha dropped without compositing, gamma ignored, 16-bit
//     samples reduced to their high byte, as PIL does for RGB. (PIL opens a 16-bit gray PNG as mode
//     "I" and its convert("RGB") clamps at 255, so such images come out nearly white there; we keep
//     the high byte instead.)
//   - images over PIL's decompression-bomb limit (about 358 million pixels) are refused, so a
//     damaged size field cannot make a worker allocate gigabytes.
// A file that cannot be decoded throws DecodeError naming the file and the reason; the loader
// catches it, reports the file once and skips it.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/image.h"

namespace engine::data {

class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ImageHeader {
  int width = 0, height = 0;
  bool is_jpeg = false;
};

// Reads the dimensions without decoding the pixels. Throws DecodeError.
ImageHeader read_image_header(std::span<const uint8_t> bytes, const std::string& name);

// Decodes to RGB. `reduce` (1, 2, 4 or 8) asks a JPEG for libjpeg's DCT-domain downscaling
// (output ceil(W / reduce) x ceil(H / reduce)): much faster, slightly different pixels, used only
// under --fast-decode. PNGs ignore it. Throws DecodeError.
Image decode_image(std::span<const uint8_t> bytes, const std::string& name, int reduce = 1);

// The whole file, or DecodeError when it cannot be read or is not a regular file (a folder, a pipe).
std::vector<uint8_t> read_file_bytes(const std::string& path);
Image read_image(const std::string& path);

// Writers (throw engine::Error on failure). Quality 1-100, 4:2:0 chroma as PIL's default.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 90);
std::vector<uint8_t> encode_png(const Image& image);  // 1 (gray) or 3 (RGB) channels


}  // namespace engine::data
