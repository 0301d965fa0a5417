// codec.cpp - JPEG (TurboJPEG) and PNG (libpng) decoding and encoding; see codec.h.
#include "data/codec.h"

#include <png.h>
#include <turbojpeg.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
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
// A call that stops on an error or warning can leave the decompressor mid-file, and the next file
// on the thread would then fail ("two SOI markers"): such a handle is dropped and made afresh.
std::unique_ptr<TjHandle>& decompressor_slot() {
  thread_local std::unique_ptr<TjHandle> h;
  return h;
}
tjhandle decompressor() {
  std::unique_ptr<TjHandle>& h = decompressor_slot();
  if (!h) h = std::make_unique<TjHandle>(false);
  return h->handle;
}
tjhandle compressor() {
  thread_local TjHandle h(true);
  return h.handle;
}

struct JpegInfo {
  int width, height, colorspace;
};

// TurboJPEG reports recoverable oddities (extraneous bytes before a marker) as warnings and still
// does its work; PIL decodes such files too. A file that ends early is different: libjpeg pads it
// with gray and warns "Premature end of JPEG file", where PIL refuses it as truncated.
void check_turbojpeg(int status, const std::string& name) {
  if (status == 0) return;
  tjhandle h = decompressor();
  const std::string message = tjGetErrorStr2(h);
  const bool warning = tjGetErrorCode(h) == TJERR_WARNING;
  decompressor_slot().reset();
  if (warning && message.find("Premature end") == std::string::npos) return;
  throw DecodeError(fmt::format("{}: not a decodable JPEG: {}", name, message));
}

// PIL's decompression-bomb limit (twice Image.MAX_IMAGE_PIXELS, where it stops warning and refuses):
// a damaged size field must not make a worker allocate gigabytes.
constexpr int64_t kMaxPixels = 2 * (int64_t{1024} * 1024 * 1024 / 4 / 3);

void check_dimensions(int64_t width, int64_t height, const std::string& name) {
  if (width <= 0 || height <= 0)
    throw DecodeError(fmt::format("{}: the header gives an empty image ({}x{})", name, width, height));
  if (width * height > kMaxPixels)
    throw DecodeError(fmt::format("{}: {}x{} pixels exceeds the limit of {} (PIL's decompression-bomb limit); "
                                  "the header is damaged or the image is too large to train on", name, width,
                                  height, kMaxPixels));
}

JpegInfo jpeg_header(std::span<const uint8_t> bytes, const std::string& name) {
  JpegInfo info{};
  int subsamp = 0;
  check_turbojpeg(tjDecompressHeader3(decompressor(), bytes.data(), bytes.size(), &info.width, &info.height, &subsamp,
                                      &info.colorspace),
                  name);
  check_dimensions(info.width, info.height, name);
  return info;
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
    check_turbojpeg(tjDecompress2(decompressor(), bytes.data(), bytes.size(), out.pixels.data(), w, 0, h, TJPF_RGB,
                                   TJFLAG_ACCURATEDCT),
                     name);
    return out;
  }
  std::vector<uint8_t> raw(static_cast<size_t>(w) * h * 4);
  check_turbojpeg(tjDecompress2(decompressor(), bytes.data(), bytes.size(), raw.data(), w, 0, h, TJPF_CMYK,
                                 TJFLAG_ACCURATEDCT),
                   name);
  for (size_t p = 0; p < static_cast<size_t>(w) * h; ++p)
    for (int c = 0; c < 3; ++c) out.pixels[p * 3 + c] = cmyk_channel(raw[p * 4 + c], raw[p * 4 + 3]);
  return out;
}

// PNG through libpng's low-level reader, configured to give what PIL's convert("RGB") gives:
// palette and low-bit gray expanded, 16-bit samples reduced to their high byte, gray replicated,
// alpha (and tRNS transparency) dropped without compositing, and the gAMA chunk ignored. (libpng's
// simplified reader would composite, and would gamma-convert 16-bit and gAMA files where PIL does
// not.) A 16-bit gray PNG is where we part from PIL on purpose: PIL opens it as mode "I" and its
// convert clamps values above 255, turning most such images white; we keep the high byte.
//
// libpng reports errors by longjmp, so the two calls that can fail run in small functions holding
// no C++ object with a destructor, and PngDecoder::Libpng frees libpng's state.
struct PngSource {
  const uint8_t* data;
  size_t size, pos;
  char message[200];
};

void png_read_from_memory(png_structp png, png_bytep out, size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) png_error(png, "the file ends early (truncated)");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

[[noreturn]] void png_fail(png_structp png, png_const_charp message) {
  auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(src->message, sizeof(src->message), "%s", message);
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

bool png_read_header(png_structp png, png_infop info, png_uint_32* width, png_uint_32* height) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  *width = png_get_image_width(png, info);
  *height = png_get_image_height(png, info);
  return true;
}

bool png_read_rgb(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_expand(png);
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != 3 * png_get_image_width(png, info)) png_error(png, "unexpected row layout");
  png_read_image(png, rows);
  return true;
}

class PngDecoder {
 public:
  PngDecoder(std::span<const uint8_t> bytes, const std::string& name) : name_(name) {
    source_ = {bytes.data(), bytes.size(), 0, "libpng could not start"};
    libpng_.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source_, png_fail, png_ignore_warning);
    if (libpng_.png) libpng_.info = png_create_info_struct(libpng_.png);
    if (!libpng_.png || !libpng_.info) fail();
    png_set_read_fn(libpng_.png, &source_, png_read_from_memory);
    png_uint_32 w = 0, h = 0;
    if (!png_read_header(libpng_.png, libpng_.info, &w, &h)) fail();
    check_dimensions(w, h, name_);
    header_ = {static_cast<int>(w), static_cast<int>(h), false};
  }

  const ImageHeader& header() const { return header_; }
  Image decode() {
    Image out(header_.width, header_.height, 3);
    std::vector<png_bytep> rows(static_cast<size_t>(header_.height));
    for (int y = 0; y < header_.height; ++y) rows[y] = out.row(y);
    if (!png_read_rgb(libpng_.png, libpng_.info, rows.data())) fail();
    return out;
  }

 private:
  [[noreturn]] void fail() const { throw DecodeError(fmt::format("{}: not a decodable PNG: {}", name_, source_.message)); }

  // libpng's state, freed even when the constructor throws (members are destroyed then).
  struct Libpng {
    png_structp png = nullptr;
    png_infop info = nullptr;
    Libpng() = default;
    Libpng(const Libpng&) = delete;
    Libpng& operator=(const Libpng&) = delete;
    ~Libpng() { png_destroy_read_struct(&png, &info, nullptr); }
  };

  std::string name_;
  PngSource source_;
  Libpng libpng_;
  ImageHeader header_;
};

}  // namespace

ImageHeader read_image_header(std::span<const uint8_t> bytes, const std::string& name) {
  if (looks_like_jpeg(bytes)) {
    const JpegInfo info = jpeg_header(bytes, name);
    return {info.width, info.height, true};
  }
  if (looks_like_png(bytes)) return PngDecoder(bytes, name).header();
  throw DecodeError(fmt::format("{}: not an image: {}", name, what_it_looks_like(bytes)));
}

Image decode_image(std::span<const uint8_t> bytes, const std::string& name, int reduce) {
  ENGINE_CHECK(reduce == 1 || reduce == 2 || reduce == 4 || reduce == 8,
               "decode_image: reduce must be 1, 2, 4 or 8, found {}", reduce);
  if (looks_like_jpeg(bytes)) return decode_jpeg(bytes, name, reduce);
  if (looks_like_png(bytes)) return PngDecoder(bytes, name).decode();
  throw DecodeError(fmt::format("{}: not an image: {}", name, what_it_looks_like(bytes)));
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  // A folder would "open" and report an absurd size; a named pipe would block the reader forever.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw DecodeError(fmt::format("{}: {}", path, std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
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
