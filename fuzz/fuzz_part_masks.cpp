// fuzz_part_masks.cpp - the part masks of part-level probing (data/part_masks.h): the first byte
// chooses what the rest is. Odd: a parts.txt, parsed. Even: a mask PNG, decoded (its first channel
// taken as the ids), carried through the evaluation view's geometry at a side of 8 to 64 pixels and
// measured in cells of a stride of 1 to 8 pixels. Malformed input throws engine::Error or
// DecodeError; every cell's shares of the parts present add up to at most 1.
#include <span>

#include "data/codec.h"
#include "data/part_masks.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::span<const uint8_t> rest(data + 1, size - 1);
  try {
    if (mode & 1) {
      const engine::data::PartTable table =
          engine::data::PartTable::parse(std::string(engine::fuzz::as_text(rest.data(), rest.size())), "fuzz");
      FUZZ_REQUIRE(table.size() > 0, "a parsed table has a part type");
      return 0;
    }
    const engine::data::ImageHeader header = engine::data::read_image_header(rest, "fuzz");
    if (int64_t{header.width} * header.height > 1'000'000) return 0;
    const engine::data::Image decoded = engine::data::decode_image(rest, "fuzz");
    engine::data::Image mask(decoded.width, decoded.height, 1);
    for (size_t i = 0; i < mask.pixels.size(); ++i) mask.pixels[i] = decoded.pixels[3 * i];
    const int side = 8 + (mode >> 1) % 57, stride = 1 + (mode >> 2) % 8;
    const engine::data::AugmentConfig eval = engine::data::eval_transform(side);
    engine::data::check_view_fits(eval, mask.width, mask.height, "fuzz");
    const engine::data::PartCellShares shares =
        engine::data::part_cell_shares(engine::data::part_mask_view(mask, eval), stride);
    const size_t cells = static_cast<size_t>(shares.grid) * static_cast<size_t>(shares.grid);
    FUZZ_REQUIRE(shares.grid == (side + stride - 1) / stride, "ceil(side / stride) cells per side");
    FUZZ_REQUIRE(shares.shares.size() == shares.ids.size() * cells, "one share per part and cell");
    for (size_t cell = 0; cell < cells; ++cell) {
      float total = 0.f;
      for (size_t k = 0; k < shares.ids.size(); ++k) total += shares.shares[k * cells + cell];
      FUZZ_REQUIRE(total <= 1.0001f, "a cell's shares add up to at most 1");
    }
  } catch (const engine::data::DecodeError&) {
  } catch (const engine::Error&) {
  }
  return 0;
}
