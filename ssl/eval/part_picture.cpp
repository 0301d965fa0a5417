// part_picture.cpp - see part_picture.h. Tiles are painted straight into the picture; a tile pixel
// (X, Y) shows view pixel (X / f, Y / f), which lies in cell ((Y / f) / s, (X / f) / s) for the
// stage's stride s, as data::part_cell_shares counts it.
#include "ssl/eval/part_picture.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string_view>

#include "data/codec.h"
#include "data/image_folder.h"
#include "data/transforms.h"
#include "engine/check.h"
#include "engine/file_io.h"
#include "ssl/eval/bitmap_font.h"

namespace engine::ssl {

namespace {

using Colour = std::array<uint8_t, 3>;

// Distinct on dark and light views alike.
constexpr Colour kPalette[] = {{230, 25, 75},  {60, 180, 75},   {255, 225, 25}, {0, 130, 200},
                               {245, 130, 48}, {145, 30, 180},  {70, 240, 240}, {240, 50, 230},
                               {210, 245, 60}, {250, 190, 212}, {0, 128, 128},  {170, 110, 40}};
constexpr Colour kWhite = {255, 255, 255};
constexpr Colour kBlack = {0, 0, 0};
constexpr double kTintAlpha = 0.5;
constexpr int kOutlineWidth = 2;
constexpr int kOutlineInsets = 4;  // pooled parts k' and k' + 4 share an inset
constexpr int kHatchPeriod = 6, kHatchWidth = 2;
constexpr int kTextScale = 2;
constexpr int kSwatch = kGlyphHeight * kTextScale, kSwatchGap = 8;

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

void put(data::Image& picture, int x, int y, const Colour& colour) {
  std::copy(colour.begin(), colour.end(), &picture.at(x, y, 0));
}

void fill(data::Image& picture, int x0, int y0, int x1, int y1, const Colour& colour) {
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) put(picture, x, y, colour);
}

void check_image(const PartPictureImage& im, int S, size_t index) {
  const data::PartCellShares& sh = im.shares;
  const size_t parts = sh.ids.size(), g = static_cast<size_t>(sh.grid);
  ENGINE_CHECK(im.view.channels == 3 && im.view.width == S && im.view.height == S && im.mask_view.channels == 1 &&
                   im.mask_view.width == S && im.mask_view.height == S,
               "part picture: image {} should have an RGB view and a 1-channel mask view of {}x{} pixels like image "
               "0, found {}x{}x{} and {}x{}x{}",
               index, S, S, im.view.width, im.view.height, im.view.channels, im.mask_view.width, im.mask_view.height,
               im.mask_view.channels);
  ENGINE_CHECK(sh.stride >= 1 && sh.grid == (S + sh.stride - 1) / sh.stride && sh.shares.size() == parts * g * g &&
                   im.part_names.size() == parts,
               "part picture: image {} has {} part ids, {} shares for a {}x{} grid of stride {} and {} names; expected "
               "data::part_cell_shares of its {}-pixel mask view and one name per id",
               index, parts, sh.shares.size(), sh.grid, sh.grid, sh.stride, im.part_names.size(), S);
}

int legend_height(const PartPictureImage& im) {
  return 2 * kPartPictureLegendPad + static_cast<int>(1 + im.shares.ids.size()) * kPartPictureLegendLine;
}

// What one image's tiles need: the tile geometry and, per part, its colour and whether it pools.
struct RowPainter {
  data::Image& picture;
  const PartPictureImage& im;
  int f, T, S, g;
  std::vector<bool> pooled;

  float share(size_t k, int a, int b) const {
    return im.shares.shares[(k * static_cast<size_t>(g) + static_cast<size_t>(a)) * static_cast<size_t>(g) +
                            static_cast<size_t>(b)];
  }
  int cell_of(int tile_pixel) const { return im.shares.cell_of(tile_pixel / f); }
  int cell_start(int cell) const { return f * std::min(S, im.shares.cell_start(cell)); }  // in tile pixels

  void view_tile(int left, int top) const {
    for (int Y = 0; Y < T; ++Y)
      for (int X = 0; X < T; ++X) std::copy_n(im.view.row(Y / f) + (X / f) * 3, 3, &picture.at(left + X, top + Y, 0));
  }

  void grid_lines(int left, int top) const {
    for (int a = 1; a < g; ++a) {
      fill(picture, left, top + cell_start(a), left + T, top + cell_start(a) + 1, kWhite);
      fill(picture, left + cell_start(a), top, left + cell_start(a) + 1, top + T, kWhite);
    }
  }

  void parts_tile(int left, int top) const {
    view_tile(left, top);
    std::array<int, 256> part_of;
    part_of.fill(-1);
    for (size_t k = 0; k < im.shares.ids.size(); ++k)
      part_of[static_cast<size_t>(im.shares.ids[k])] = static_cast<int>(k);
    for (int Y = 0; Y < T; ++Y)
      for (int X = 0; X < T; ++X) {
        const int k = part_of[im.mask_view.at(X / f, Y / f)];
        if (k < 0) continue;
        const Colour colour = part_picture_colour(static_cast<size_t>(k));
        uint8_t* px = &picture.at(left + X, top + Y, 0);
        for (int c = 0; c < 3; ++c) px[c] = to_byte((1.0 - kTintAlpha) * px[c] + kTintAlpha * colour[c]);
      }
    grid_lines(left, top);
  }

  void pooling_tile(int left, int top) const {
    const size_t parts = im.shares.ids.size();
    // Per cell: the flat colour, and the skipped parts that touch it (hatched in turn).
    std::vector<Colour> flat(static_cast<size_t>(g * g));
    std::vector<std::vector<size_t>> skipped(static_cast<size_t>(g * g));
    for (int a = 0; a < g; ++a)
      for (int b = 0; b < g; ++b) {
        double rgb[3], rest = 1.0;
        for (int c = 0; c < 3; ++c) rgb[c] = 0.0;
        for (size_t k = 0; k < parts; ++k) {
          const double s = share(k, a, b);
          if (s <= 0) continue;
          if (!pooled[k]) {
            skipped[static_cast<size_t>(a * g + b)].push_back(k);
            continue;
          }
          const Colour colour = part_picture_colour(k);
          for (int c = 0; c < 3; ++c) rgb[c] += s * colour[c];
          rest -= s;
        }
        Colour& out = flat[static_cast<size_t>(a * g + b)];
        for (int c = 0; c < 3; ++c) out[c] = to_byte(rgb[c] + std::max(0.0, rest) * kPartPictureBackdrop[c]);
      }
    for (int Y = 0; Y < T; ++Y)
      for (int X = 0; X < T; ++X) {
        const size_t cell = static_cast<size_t>(cell_of(Y) * g + cell_of(X));
        const std::vector<size_t>& hatch = skipped[cell];
        const bool stripe = !hatch.empty() && (X + Y) % kHatchPeriod < kHatchWidth;
        put(picture, left + X, top + Y,
            stripe ? part_picture_colour(hatch[static_cast<size_t>((X + Y) / kHatchPeriod) % hatch.size()])
                   : flat[cell]);
      }
    grid_lines(left, top);
    const int max_inset = std::max(0, f * (S / g) / 2 - kOutlineWidth);
    int rank = 0;
    for (size_t k = 0; k < parts; ++k)
      if (pooled[k]) outline(left, top, k, std::min(max_inset, rank++ % kOutlineInsets * kOutlineWidth));
  }

  // The border of the cells part k touches, kOutlineWidth wide, `inset` pixels inside it.
  void outline(int left, int top, size_t k, int inset) const {
    auto touched = [&](int a, int b) { return a >= 0 && a < g && b >= 0 && b < g && share(k, a, b) > 0; };
    const Colour colour = part_picture_colour(k);
    const int w = kOutlineWidth, d = inset;
    for (int a = 0; a < g; ++a)
      for (int b = 0; b < g; ++b) {
        if (!touched(a, b)) continue;
        const int y0 = top + cell_start(a), y1 = top + cell_start(a + 1);
        const int x0 = left + cell_start(b), x1 = left + cell_start(b + 1);
        const bool up = !touched(a - 1, b), down = !touched(a + 1, b);
        const bool west = !touched(a, b - 1), east = !touched(a, b + 1);
        const int xl = west ? x0 + d : x0, xr = east ? x1 - d : x1;
        const int yt = up ? y0 + d : y0, yb = down ? y1 - d : y1;
        if (up) fill(picture, xl, y0 + d, xr, y0 + d + w, colour);
        if (down) fill(picture, xl, y1 - d - w, xr, y1 - d, colour);
        if (west) fill(picture, x0 + d, yt, x0 + d + w, yb, colour);
        if (east) fill(picture, x1 - d - w, yt, x1 - d, yb, colour);
      }
  }

  void legend(int left, int top) const {
    const int x = left + kPartPictureLegendPad, text_x = x + kSwatch + kSwatchGap;
    int y = top + kPartPictureLegendPad;
    const std::string header = fmt::format("{}x{} grid, min {:g} cells", g, g, im.min_cells);
    draw_text(picture, x, y, std::string_view(header).substr(0, kPartPictureLegendChars), kTextScale, kBlack);
    for (size_t k = 0; k < im.shares.ids.size(); ++k) {
      y += kPartPictureLegendLine;
      fill(picture, x, y, x + kSwatch, y + kSwatch, part_picture_colour(k));
      if (!pooled[k])
        for (int t = 0; t < kSwatch; ++t)
          for (int dt : {0, 1}) {
            const int u = std::min(kSwatch - 1, t + dt);
            put(picture, x + u, y + t, kBlack);
            put(picture, x + kSwatch - 1 - u, y + t, kBlack);
          }
      const std::string suffix = fmt::format(" {:.2f}{}", im.shares.cells(k), pooled[k] ? "" : " too small");
      const size_t room = kPartPictureLegendChars - std::min<size_t>(suffix.size(), kPartPictureLegendChars - 2);
      std::string name = im.part_names[k];
      if (name.size() > room) name = name.substr(0, room - 1) + "~";
      draw_text(picture, text_x, y, name + suffix, kTextScale, kBlack);
    }
  }
};

}  // namespace

std::array<uint8_t, 3> part_picture_colour(size_t k) { return kPalette[k % std::size(kPalette)]; }

namespace {

// The first `n` images of `folder`, taking each class's next image in turn.
std::vector<data::Sample> first_of_each_class(const data::ImageFolder& folder, int n) {
  std::vector<std::vector<data::Sample>> by_class(folder.classes().size());
  for (const data::Sample& s : folder.samples()) by_class[static_cast<size_t>(s.label)].push_back(s);
  std::vector<data::Sample> picked;
  for (size_t rank = 0; picked.size() < static_cast<size_t>(n) && picked.size() < folder.samples().size(); ++rank)
    for (const std::vector<data::Sample>& samples : by_class)
      if (rank < samples.size() && picked.size() < static_cast<size_t>(n)) picked.push_back(samples[rank]);
  return picked;
}

}  // namespace

SplitPartPictures part_pictures_of_split(const std::string& root, const std::string& split, int n,
                                         const data::AugmentConfig& eval, int stride, float min_cells) {
  const data::PartTable table = data::PartTable::read(data::part_table_path(root));
  const data::ImageFolder folder(data::resolve_split(root, split));
  SplitPartPictures out;
  for (const data::Sample& sample : first_of_each_class(folder, n)) {
    const data::Image image = data::read_image(sample.path);
    data::check_view_fits(eval, image.width, image.height, sample.path);
    const data::Image mask =
        data::read_part_mask(data::part_mask_path(root, split, sample.path), image.width, image.height, sample.path);
    out.images.push_back(make_part_picture_image(image, mask, table, folder.classes()[static_cast<size_t>(sample.label)],
                                                 eval, stride, min_cells));
    const PartPictureImage& im = out.images.back();
    out.parts += im.shares.ids.size();
    for (size_t k = 0; k < im.shares.ids.size(); ++k) out.skipped += im.shares.cells(k) < min_cells ? 1 : 0;
  }
  return out;
}

PartPictureImage make_part_picture_image(const data::Image& image, const data::Image& mask,
                                         const data::PartTable& table, const std::string& class_name,
                                         const data::AugmentConfig& eval, int stride, float min_cells) {
  ENGINE_CHECK(image.channels == 3 && mask.channels == 1 && mask.width == image.width && mask.height == image.height,
               "make_part_picture_image: expected an RGB image and a 1-channel mask of its size, found {}x{}x{} and "
               "{}x{}x{}",
               image.width, image.height, image.channels, mask.width, mask.height, mask.channels);
  ENGINE_CHECK(!eval.random_crop,
               "make_part_picture_image: expected the evaluation transform (Resize + CenterCrop), "
               "found a random crop");
  PartPictureImage out;
  const data::Image resized = data::resize_shorter_side(image, eval.resize_size);
  out.view = data::crop(resized, data::center_crop_box(resized.width, resized.height, eval.size));
  out.mask_view = data::part_mask_view(mask, eval);
  out.shares = data::part_cell_shares(out.mask_view, stride);
  for (int id : out.shares.ids) {
    const int64_t label = table.label(class_name, id);
    out.part_names.push_back(label >= 0 ? table.type_name(label) : fmt::format("{}/id {}", class_name, id));
  }
  out.min_cells = min_cells;
  return out;
}

PartPictureLayout part_picture_layout(const std::vector<PartPictureImage>& images) {
  ENGINE_CHECK(!images.empty(), "part picture: no image to draw");
  const int S = images[0].view.width;
  ENGINE_CHECK(S >= 1, "part picture: image 0 has an empty view");
  PartPictureLayout layout;
  layout.scale = (kPartPictureMinTile + S - 1) / S;
  layout.tile = S * layout.scale;
  for (size_t i = 0; i < images.size(); ++i) {
    check_image(images[i], S, i);
    layout.row_top.push_back(i == 0 ? 0 : layout.row_top.back() + layout.row_height.back() + kPartPictureSeparator);
    layout.row_height.push_back(std::max(layout.tile, legend_height(images[i])));
  }
  layout.width = layout.tile_left(3) + kPartPictureLegendWidth;
  layout.height = layout.row_top.back() + layout.row_height.back();
  return layout;
}

data::Image render_part_picture(const std::vector<PartPictureImage>& images) {
  const PartPictureLayout layout = part_picture_layout(images);
  data::Image picture(layout.width, layout.height, 3, 255);
  for (size_t i = 0; i < images.size(); ++i) {
    const PartPictureImage& im = images[i];
    RowPainter painter{picture, im, layout.scale, layout.tile, im.view.width, im.shares.grid, {}};
    for (size_t k = 0; k < im.shares.ids.size(); ++k) painter.pooled.push_back(im.shares.cells(k) >= im.min_cells);
    const int top = layout.row_top[i];
    painter.view_tile(layout.tile_left(0), top);
    painter.parts_tile(layout.tile_left(1), top);
    painter.pooling_tile(layout.tile_left(2), top);
    painter.legend(layout.tile_left(3), top);
  }
  return picture;
}

void write_part_picture(const std::string& path, const std::vector<PartPictureImage>& images, int quality) {
  const std::vector<uint8_t> jpeg = data::encode_jpeg(render_part_picture(images), quality);
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(jpeg.data()), jpeg.size()));
}

}  // namespace engine::ssl
