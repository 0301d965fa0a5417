// codec.cpp - JPEG (TurboJPEG) and PNG (libpng) decoding and encoding; see codec.h.
#include "data/codec.h"

#include <png.h>
#include <turbojpeg.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "engine/check.h"

namespace engine::data {

namespace {

bool looks_like_jpeg(std::span<const uint8_t> b) { return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }
bool looks_like_png(std::span<const uint8_t> b) { return b.size() >= 8 && png_sig_cmp(b.data(), 0, 8) == 0; }

std::string what_it_looks_like(std::span<const uint8_t> b) {
  if (b.empty()) return "the file is empty";
  if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') return "it looks like a BMP, which is not supported";
  if (b.size() >= 4 && std::memcmp(b.data(), "RIFF", 4) == 0) return "it looks like a WebP/RIFF, which is not supported";
  if (b.size() >= 4 && (std::memcmp(b.data(), "II*", 3) == 0 || std::memcmp(b.data(), "MM", 2) == 0))
    return "it looks like a TIFF, which is not supported";
  return "it is neither a JPEG nor a PNG (unknown signature)";
}

// One TurboJPEG handle per thread and direction: creating one costs more than decoding a thumbnail.
struct TjHandle {
  tjhandle handle;
  explicit TjHandle(bool compress) : handle(compress ? tjInitCompress() : tjInitDecompress()) {
    ENGINE_CHECK(handle != nullptr, "TurboJPEG: cannot create a {} handle", compress ? "compression" : "decompression");
  }
  ~TjHandle() { tjDestroy(handle); }
  TjHandle(const TjHandle&) = delete;
  TjHandle& operator=(const TjHandle&) = delete;
};
tjhandle decompressor() {
  thread_local TjHandle h(false);
  return h.handle;
}
tjhandle compressor() {
  thread_local TjHandle h(true);
  return h.handle;
}

struct JpegInfo {
  int width, height, colorspace;
};

JpegInfo jpeg_header(std::span<const uint8_t> bytes, const std::string& name) {
  JpegInfo info{};
  int subsamp = 0;
  if (tjDecompressHeader3(decompressor(), bytes.data(), bytes.size(), &info.width, &info.height, &subsamp,
                          &info.colorspace) != 0)
    throw DecodeError(fmt::format("{}: not a decodable JPEG: {}", name, tjGetErrorStr2(decompressor())));
  return info;
}

// TurboJPEG reports recoverable oddities (extraneous bytes before a marker) as warnings and still
// writes the pixels; PIL decodes such files too. A file that ends early is different: libjpeg pads
// it with gray and warns "Premature end of JPEG file", where PIL refuses it as truncated.
void check_decompress(int status, const std::string& name) {
  if (status == 0) return;
  tjhandle h = decompressor();
  const std::string message = tjGetErrorStr2(h);
  if (tjGetErrorCode(h) == TJERR_WARNING && message.find("Premature end") == std::string::npos) return;
  throw DecodeError(fmt::format("{}: not a decodable JPEG: {}", name, message));
}

int scaled(int size, int reduce) { return (size + reduce - 1) / reduce; }

// Pillow's CMYK -> RGB (Convert.c cmyk2rgb) after its "CMYK;I" unpacking inverted the stored values:
// each channel is  (255 - K) - C * (255 - K) / 255  with the product rounded as Pillow's MULDIV255.
uint8_t cmyk_channel(uint8_t stored_c, uint8_t stored_k) {
  const int c = 255 - stored_c, nk = stored_k;  // nk = 255 - (255 - stored_k)
  const int tmp = c * nk + 128;
  const int v = nk - (((tmp >> 8) + tmp) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

Image decode_jpeg(std::span<const uint8_t> bytes, const std::string& name, int reduce) {
  const JpegInfo info = jpeg_header(bytes, name);
  const int w = scaled(info.width, reduce), h = scaled(info.height, reduce);
  const bool cmyk = info.colorspace == TJCS_CMYK || info.colorspace == TJCS_YCCK;
  Image out(w, h, 3);
  if (!cmyk) {
    check_decompress(tjDecompress2(decompressor(), bytes.data(), bytes.size(), out.pixels.data(), w, 0, h, TJPF_RGB,
                                   TJFLAG_ACCURATEDCT),
                     name);
    return out;
  }
  std::vector<uint8_t> raw(static_cast<size_t>(w) * h * 4);
  check_decompress(tjDecompress2(decompressor(), bytes.data(), bytes.size(), raw.data(), w, 0, h, TJPF_CMYK,
                                 TJFLAG_ACCURATEDCT),
                   name);
  for (size_t p = 0; p < static_cast<size_t>(w) * h; ++p)
    for (int c = 0; c < 3; ++c) out.pixels[p * 3 + c] = cmyk_channel(raw[p * 4 + c], raw[p * 4 + 3]);
  return out;
}

struct PngReader {
  png_image image;
  PngReader() {
    std::memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
  }
  ~PngReader() { png_image_free(&image); }
};

ImageHeader png_header(std::span<const uint8_t> bytes, const std::string& name, PngReader& reader) {
  if (!png_image_begin_read_from_memory(&reader.image, bytes.data(), bytes.size()))
    throw DecodeError(fmt::format("{}: not a decodable PNG: {}", name, reader.image.message));
  return {static_cast<int>(reader.image.width), static_cast<int>(reader.image.height), false};
}

// libpng's simplified reader composites onto black when asked for RGB; PIL's convert("RGB") just
// drops the alpha channel, so read RGBA and drop it.
Image decode_png(std::span<const uint8_t> bytes, const std::string& name) {
  PngReader reader;
  const ImageHeader header = png_header(bytes, name, reader);
  reader.image.format = PNG_FORMAT_RGBA;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(reader.image));
  if (!png_image_finish_read(&reader.image, nullptr, rgba.data(), 0, nullptr))
    throw DecodeError(fmt::format("{}: not a decodable PNG: {}", name, reader.image.message));
  Image out(header.width, header.height, 3);
  for (size_t p = 0; p < static_cast<size_t>(header.width) * header.height; ++p)
    std::memcpy(&out.pixels[p * 3], &rgba[p * 4], 3);
  return out;
}

}  // namespace

ImageHeader read_image_header(std::span<const uint8_t> bytes, const std::string& name) {
  if (looks_like_jpeg(bytes)) {
    const JpegInfo info = jpeg_header(bytes, name);
    return {info.width, info.height, true};
  }
  if (looks_like_png(bytes)) {
    PngReader reader;
    return png_header(bytes, name, reader);
  }
  throw DecodeError(fmt::format("{}: not an image: {}", name, what_it_looks_like(bytes)));
}

Image decode_image(std::span<const uint8_t> bytes, const std::string& name, int reduce) {
  ENGINE_CHECK(reduce == 1 || reduce == 2 || reduce == 4 || reduce == 8,
               "decode_image: reduce must be 1, 2, 4 or 8, found {}", reduce);
  if (looks_like_jpeg(bytes)) return decode_jpeg(bytes, name, reduce);
  if (looks_like_png(bytes)) return decode_png(bytes, name);
  throw DecodeError(fmt::format("{}: not an image: {}", name, what_it_looks_like(bytes)));
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw DecodeError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  const std::streamsize size = in.tellg();
  std::vector<uint8_t> bytes(static_cast<size_t>(size < 0 ? 0 : size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw DecodeError(fmt::format("{}: read failed: {}", path, std::strerror(errno)));
  return bytes;
}

Image read_image(const std::string& path) { return decode_image(read_file_bytes(path), path); }

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  ENGINE_CHECK(image.channels == 3 || image.channels == 1, "encode_jpeg: expected 1 or 3 channels, found {}",
               image.channels);
  ENGINE_CHECK(quality >= 1 && quality <= 100, "encode_jpeg: quality must be 1-100, found {}", quality);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const bool gray = image.channels == 1;
  const int status = tjCompress2(compressor(), image.pixels.data(), image.width, 0, image.height,
                                 gray ? TJPF_GRAY : TJPF_RGB, &buffer, &size, gray ? TJSAMP_GRAY : TJSAMP_420,
                                 quality, TJFLAG_ACCURATEDCT);
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(buffer, tjFree);
  ENGINE_CHECK(status == 0, "encode_jpeg: {}", tjGetErrorStr2(compressor()));
  return std::vector<uint8_t>(buffer, buffer + size);
}

std::vector<uint8_t> encode_png(const Image& image) {
  ENGINE_CHECK(image.channels == 3 || image.channels == 1, "encode_png: expected 1 or 3 channels, found {}",
               image.channels);
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  ENGINE_CHECK(png_image_write_get_memory_size(png, size, 0, image.pixels.data(), 0, nullptr),
               "encode_png: {}", png.message);
  std::vector<uint8_t> out(size);
  ENGINE_CHECK(png_image_write_to_memory(&png, out.data(), &size, 0, image.pixels.data(), 0, nullptr),
               "encode_png: {}", png.message);
  out.resize(size);
  return out;
}

}  // namespace engine::data
