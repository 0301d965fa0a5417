// part_masks.h - the part labels of a dataset, for part-level probing (ssl/eval/part_probe.h).
//
// On disk, beside a dataset root's train/ and val/ (the layout `moco synth` writes, and the one a
// real part dataset is converted to):
//   ROOT/masks/parts.txt                                  the part types: one line per type,
//                                                         "<class> <id> <name>" (the name is the rest
//                                                         of the line; '#' starts a comment)
//   ROOT/masks/<split>/<class>/<sub/dirs/><stem>_parts.png  per image ROOT/<split>/<class>/<sub/dirs/><stem>.<ext>:
//                                                         an 8-bit gray PNG of the image's size whose
//                                                         value is the part id of each pixel
// Id 0 is background and 255 "not labelled"; neither is a part. Ids 1..254 mean what parts.txt
// says for the image's class: a part type is a (class, id) pair, and its label is its line's rank
// among the type lines (0, 1, ...). The same id may mean different parts in different classes
// (the synthetic house's 1 is its body, the lollipop's 1 its stem). The gray value is the id: a
// palette, colour or 16-bit PNG is refused (write the index array as mode "L", e.g. PIL's
// Image.fromarray(ids.astype('uint8'), 'L')). A class folder whose name holds spaces is listed
// with tabs between the three fields ("my house<TAB>1<TAB>wall"); a UTF-8 byte-order mark is
// ignored.
//
// Where a part pools from. The probe sees an image through the evaluation transform (Resize of the
// shorter side, CenterCrop; data/augment.h), so the mask goes through the same geometry with the
// nearest neighbour (ids never blend): part_mask_view. A stage of the network has a stride s (4
// after the ImageNet stem's conv and max-pool, 1 after the small stem, doubled by each of layer2 to
// layer4) and its map has g = ceil(S / s) cells per side: cell (a, b) covers view rows [a s, (a + 1) s)
// and the same columns (the last one partly outside the view when s does not divide S).
// part_cell_shares gives, per part present, the share of each cell's pixels (within the view) that
// are that part, which is how much that cell's feature counts in the part's average (ops/pooling.h,
// region_avgpool).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/image.h"

namespace engine::data {

inline constexpr int kPartUnlabelled = 255;  // and 0, background: neither is a part

struct PartType {
  std::string class_name;
  int id = 0;  // 1..254
  std::string name;
};

class PartTable {
 public:
  // Parses parts.txt; throws engine::Error naming the file and line of anything malformed (a
  // missing field, an id outside 1..254, the same (class, id) twice, an empty table).
  static PartTable parse(const std::string& text, const std::string& name);
  static PartTable read(const std::string& path);  // a missing file says what the file should hold
  std::string text() const;                        // parts.txt as `moco synth` writes it

  const std::vector<PartType>& types() const { return types_; }
  int64_t size() const { return static_cast<int64_t>(types_.size()); }
  // The label of part `id` of `class_name`, or -1 when the table has no such type.
  int64_t label(const std::string& class_name, int id) const;
  // "house/roof": the type of a label, for tables and pictures.
  std::string type_name(int64_t label) const;

  explicit PartTable(std::vector<PartType> types);

 private:
  std::vector<PartType> types_;
};

// ROOT/masks/parts.txt.
std::string part_table_path(const std::string& root);
// The part mask of `image_path`, an image below ROOT/<split>/ (throws when it is not below it).
std::string part_mask_path(const std::string& root, const std::string& split, const std::string& image_path);

// Reads a part mask and checks it: an 8-bit gray PNG (colour type gray, or gray with alpha, which is
// ignored; a palette, RGB or 16-bit PNG is refused, as is any other format) of exactly width x
// height. Returns 1 channel. Throws engine::Error naming the file and the image it belongs to:
// missing, not an 8-bit gray PNG, undecodable, or of another size.
Image read_part_mask(const std::string& mask_path, int width, int height, const std::string& image_path);

// The mask as the evaluation transform `eval` (Resize + CenterCrop, no random crop) shows its
// image: size x size ids, each the nearest source pixel's.
Image part_mask_view(const Image& mask, const AugmentConfig& eval);

// What each part present in a view's mask takes of each cell of a stage of stride `stride`.
struct PartCellShares {
  int stride = 1;
  int grid = 0;               // ceil(S / stride)
  std::vector<int> ids;       // the part ids present (1..254), ascending
  std::vector<float> shares;  // (ids.size(), grid, grid): the share of the cell's pixels, in [0, 1]
  // A part's area in cells: the sum of its shares (1 = as much as one whole cell).
  float cells(size_t part) const;
  int cell_of(int view_pixel) const { return view_pixel / stride; }
  int cell_start(int cell) const { return cell * stride; }  // its first view pixel
};
PartCellShares part_cell_shares(const Image& mask_view, int stride);

}  // namespace engine::data
