// synth_classes.cpp - the class templates of synth_classes.h, and synth.h's queries about them.
#include "data/synth_classes.h"

#include "data/synth.h"
#include "engine/check.h"

namespace engine::data {

namespace synth_detail {

namespace {

std::vector<Shape> build_house(SampleRng& rng) {
  const float w = jitter(rng, 1.4, 2.0), h = jitter(rng, 0.9, 1.3);
  const float roof_w = w * jitter(rng, 1.05, 1.3), roof_h = jitter(rng, 0.6, 1.0), apex = jitter(rng, -0.15, 0.15);
  const float door_w = w * jitter(rng, 0.2, 0.3), door_h = h * jitter(rng, 0.45, 0.65), door_x = w * jitter(rng, -0.25, 0.25);
  return {rect(0, 0, w, h), triangle({-roof_w / 2, -h / 2}, {roof_w / 2, -h / 2}, {apex, -h / 2 - roof_h}),
          rect(door_x, h / 2 - door_h / 2, door_w, door_h)};
}

std::vector<Shape> build_lollipop(SampleRng& rng) {
  const float r = jitter(rng, 0.45, 0.65), stem_w = jitter(rng, 0.12, 0.2), stem_l = jitter(rng, 1.0, 1.6);
  return {rect(0, stem_l / 2, stem_w, stem_l), disc(0, 0, r)};
}

std::vector<Shape> build_cart(SampleRng& rng) {
  const float w = jitter(rng, 1.6, 2.2), h = jitter(rng, 0.7, 1.0), r = jitter(rng, 0.28, 0.38);
  const float hole = jitter(rng, 0.4, 0.6), spread = w / 2 * jitter(rng, 0.5, 0.75), drop = h / 2 + r * jitter(rng, 0.3, 0.8);
  return {rect(0, 0, w, h), ring(-spread, drop, r, hole), ring(spread, drop, r * jitter(rng, 0.9, 1.1), hole)};
}

std::vector<Shape> build_snowman(SampleRng& rng) {
  const float r1 = jitter(rng, 0.55, 0.7), r2 = r1 * jitter(rng, 0.65, 0.8), r3 = r2 * jitter(rng, 0.6, 0.8);
  const float y2 = -(r1 + r2 * jitter(rng, 0.5, 0.8)), y3 = y2 - (r2 + r3 * jitter(rng, 0.5, 0.8));
  return {disc(0, 0, r1), disc(jitter(rng, -0.08, 0.08), y2, r2), disc(jitter(rng, -0.1, 0.1), y3, r3)};
}

std::vector<Shape> build_mushroom(SampleRng& rng) {
  const float stem_w = jitter(rng, 0.35, 0.55), stem_h = jitter(rng, 0.7, 1.1);
  return {rect(0, stem_h / 2, stem_w, stem_h), dome(0, jitter(rng, 0.05, 0.15), jitter(rng, 0.8, 1.1), jitter(rng, 0.5, 0.8))};
}

std::vector<Shape> build_dumbbell(SampleRng& rng) {
  const float l = jitter(rng, 1.3, 1.9), t = jitter(rng, 0.15, 0.25), r = jitter(rng, 0.35, 0.5);
  return {rect(0, 0, l, t), ellipse(-l / 2, 0, r * jitter(rng, 0.7, 1.0), r), ellipse(l / 2, 0, r * jitter(rng, 0.7, 1.0), r)};
}

std::vector<Shape> build_lamp(SampleRng& rng) {
  const float shade_h = jitter(rng, 0.6, 0.9), stem_l = jitter(rng, 0.7, 1.1), base_h = jitter(rng, 0.15, 0.25);
  const float shade_y = -stem_l / 2 - shade_h / 2, base_y = stem_l / 2 + base_h / 2;
  return {trapezoid(0, shade_y, jitter(rng, 0.5, 0.8), jitter(rng, 1.1, 1.5), shade_h),
          rect(0, 0, jitter(rng, 0.1, 0.18), stem_l + 0.1f), rect(0, base_y, jitter(rng, 0.8, 1.2), base_h)};
}

std::vector<Shape> build_key(SampleRng& rng) {
  const float r = jitter(rng, 0.4, 0.55), t = jitter(rng, 0.16, 0.24), end = jitter(rng, 0.9, 1.2);
  const float tooth_w = jitter(rng, 0.18, 0.3), tooth_h = jitter(rng, 0.3, 0.45);
  const float shaft_start = -0.8f + r * 0.8f;
  return {rect((shaft_start + end) / 2, 0, end - shaft_start, t), ring(-0.8f, 0, r, jitter(rng, 0.35, 0.55)),
          rect(end - tooth_w / 2 - jitter(rng, 0.0, 0.2), t / 2 + tooth_h / 2 - 0.02f, tooth_w, tooth_h)};
}

std::vector<Shape> build_rocket(SampleRng& rng) {
  const float w = jitter(rng, 0.45, 0.65), h = jitter(rng, 1.3, 1.8), nose = jitter(rng, 0.4, 0.7);
  const float fin_w = jitter(rng, 0.3, 0.5), fin_h = jitter(rng, 0.45, 0.7), fin_drop = jitter(rng, 0.1, 0.3);
  const float bottom = h / 2;
  return {rect(0, 0, w, h), triangle({-w / 2, -h / 2}, {w / 2, -h / 2}, {0, -h / 2 - nose}),
          triangle({-w / 2, bottom - fin_h}, {-w / 2, bottom}, {-w / 2 - fin_w, bottom + fin_drop}),
          triangle({w / 2, bottom - fin_h}, {w / 2, bottom}, {w / 2 + fin_w, bottom + fin_drop})};
}

std::vector<Shape> build_sailboat(SampleRng& rng) {
  const float hull_h = jitter(rng, 0.3, 0.45), hull_top = 0.6f, mast_h = jitter(rng, 1.4, 1.8), mast_x = jitter(rng, -0.3, 0.1);
  const float mast_w = jitter(rng, 0.08, 0.14), sail_w = jitter(rng, 0.7, 1.0);
  const float top = hull_top - mast_h;
  return {trapezoid(0, hull_top + hull_h / 2, jitter(rng, 1.6, 2.1), jitter(rng, 1.0, 1.4), hull_h),
          rect(mast_x, (top + hull_top) / 2, mast_w, mast_h),
          triangle({mast_x + mast_w, top + 0.1f}, {mast_x + mast_w, hull_top - 0.12f}, {mast_x + mast_w + sail_w, hull_top - 0.12f})};
}

std::vector<Shape> build_arrow(SampleRng& rng) {
  const float l = jitter(rng, 1.2, 1.7), t = jitter(rng, 0.15, 0.3), head_w = jitter(rng, 0.6, 0.9), head_l = jitter(rng, 0.5, 0.8);
  return {rect(-head_l / 2, 0, l, t), triangle({l / 2 - head_l / 2 - 0.05f, -head_w / 2}, {l / 2 - head_l / 2 - 0.05f, head_w / 2},
                                               {l / 2 + head_l / 2, 0})};
}

std::vector<Shape> build_mug(SampleRng& rng) {
  const float w = jitter(rng, 0.9, 1.2), h = jitter(rng, 1.1, 1.5), r = jitter(rng, 0.32, 0.45);
  return {ring(w / 2, jitter(rng, -0.15, 0.1), r, jitter(rng, 0.5, 0.65)), rect(0, 0, w, h)};
}

std::vector<Shape> build_table(SampleRng& rng) {
  const float w = jitter(rng, 1.8, 2.3), top_h = jitter(rng, 0.15, 0.3), leg_t = jitter(rng, 0.12, 0.22), leg_l = jitter(rng, 0.8, 1.2);
  const float leg_x = w / 2 - jitter(rng, 0.1, 0.3), leg_y = top_h / 2 + leg_l / 2 - 0.05f;
  return {rect(0, 0, w, top_h), rect(-leg_x, leg_y, leg_t, leg_l), rect(leg_x, leg_y, leg_t, leg_l)};
}

std::vector<Shape> build_hammer(SampleRng& rng) {
  const float l = jitter(rng, 1.5, 2.0), t = jitter(rng, 0.15, 0.25), head_w = jitter(rng, 0.9, 1.3), head_h = jitter(rng, 0.3, 0.45);
  return {rect(0, 0, t, l), rect(jitter(rng, -0.2, 0.2), -l / 2, head_w, head_h)};
}

std::vector<Shape> build_pine(SampleRng& rng) {
  const float trunk_w = jitter(rng, 0.18, 0.3), trunk_h = jitter(rng, 0.4, 0.6);
  const float low_w = jitter(rng, 1.3, 1.7), low_h = jitter(rng, 0.7, 0.9), up_w = low_w * jitter(rng, 0.6, 0.8), up_h = jitter(rng, 0.6, 0.8);
  const float low_base = 0, up_base = -low_h * jitter(rng, 0.45, 0.6);
  return {rect(0, trunk_h / 2, trunk_w, trunk_h), triangle({-low_w / 2, low_base}, {low_w / 2, low_base}, {0, low_base - low_h}),
          triangle({-up_w / 2, up_base}, {up_w / 2, up_base}, {0, up_base - up_h})};
}

std::vector<Shape> build_ice_cream(SampleRng& rng) {
  const float cone_w = jitter(rng, 0.6, 0.85), cone_h = jitter(rng, 1.1, 1.5), r = cone_w / 2 * jitter(rng, 1.05, 1.3);
  return {triangle({-cone_w / 2, 0}, {cone_w / 2, 0}, {0, cone_h}), disc(0, -r * jitter(rng, 0.3, 0.6), r)};
}

}  // namespace

// The first ten are the default dataset: chosen so no two differ only in a detail.
const std::vector<ClassTemplate>& templates() {
  static const std::vector<ClassTemplate> all = {
      {"house", "a box under a triangular roof, with a door", {"body", "roof", "door"}, build_house},
      {"lollipop", "a disc on a thin stem", {"stem", "disc"}, build_lollipop},
      {"cart", "a box over two wheels (rings)", {"box", "left wheel", "right wheel"}, build_cart},
      {"snowman", "three discs stacked, shrinking upwards", {"bottom", "middle", "head"}, build_snowman},
      {"mushroom", "a dome cap on a thick stem", {"stem", "cap"}, build_mushroom},
      {"dumbbell", "two ellipses joined by a bar", {"bar", "left weight", "right weight"}, build_dumbbell},
      {"lamp", "a trapezoid shade on a stem on a flat base", {"shade", "stem", "base"}, build_lamp},
      {"key", "a ring with a shaft and a tooth under its end", {"shaft", "bow", "tooth"}, build_key},
      {"rocket", "a tall body, a triangular nose and two fins", {"body", "nose", "left fin", "right fin"}, build_rocket},
      {"sailboat", "a trapezoid hull, a mast and a triangular sail", {"hull", "mast", "sail"}, build_sailboat},
      {"arrow", "a bar ending in a triangular head", {"shaft", "head"}, build_arrow},
      {"mug", "a box with a ring handle on one side", {"handle", "body"}, build_mug},
      {"table", "a flat top on two legs", {"top", "left leg", "right leg"}, build_table},
      {"hammer", "a handle with a crosswise head on top", {"handle", "head"}, build_hammer},
      {"pine", "two stacked triangles on a trunk", {"trunk", "lower crown", "upper crown"}, build_pine},
      {"ice_cream", "a disc on a downward-pointing cone", {"cone", "scoop"}, build_ice_cream},
  };
  return all;
}

const ClassTemplate& template_of(int class_index) {
  const int n = static_cast<int>(templates().size());
  ENGINE_CHECK(class_index >= 0 && class_index < n, "synth: class index {} is out of range; there are {} classes (0 to {})",
               class_index, n, n - 1);
  return templates()[static_cast<size_t>(class_index)];
}

}  // namespace synth_detail

std::vector<std::string> synth_class_names() {
  std::vector<std::string> names;
  for (const synth_detail::ClassTemplate& t : synth_detail::templates()) names.emplace_back(t.name);
  return names;
}

PartTable synth_part_table(int classes) {
  std::vector<PartType> types;
  for (int c = 0; c < classes; ++c) {
    const auto& t = synth_detail::template_of(c);
    for (size_t k = 0; k < t.part_names.size(); ++k) types.push_back({t.name, static_cast<int>(k + 1), t.part_names[k]});
  }
  return PartTable(std::move(types));
}

int synth_class_part_count(int class_index) { return static_cast<int>(synth_detail::template_of(class_index).part_names.size()); }

}  // namespace engine::data
