// synth.cpp - the synthetic dataset of synth.h: shapes and textures, the class templates, one
// image's composition, and the threaded writer.
//
// Coordinates are pixels with y pointing down. A class template builds its parts in an object frame
// of about two units across; a pose (mirror, rotation, scale, translation: a similarity, so discs
// stay discs) maps them into the image. Shapes are drawn with 2 x 2 supersampled coverage, so edges
// are smooth; a pixel takes a part's label when at least half of its samples are inside the part.
#include "data/synth.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numbers>
#include <string_view>
#include <thread>

#include "data/codec.h"
#include "data/sample_rng.h"
#include "engine/check.h"
#include "engine/file_io.h"

namespace engine::data {

namespace {

// ---------------------------------------------------------------------------------------------
// Shapes

struct Vec2 {
  float x = 0, y = 0;
};

// A convex polygon, an ellipse, the upper half of an ellipse (a dome with its flat side down in its
// own frame) or a ring (an ellipse with an elliptic hole).
struct Shape {
  enum class Kind { Polygon, Ellipse, Dome, Ring };
  Kind kind = Kind::Polygon;
  std::array<Vec2, 4> vertices{};  // Polygon: the first `vertex_count`
  int vertex_count = 0;
  Vec2 center;        // Ellipse, Dome, Ring
  float rx = 0, ry = 0;
  float angle = 0;    // radians, the ellipse's own rotation
  float hole = 0;     // Ring: inner radius as a fraction of the outer one
};

Shape polygon(std::initializer_list<Vec2> points) {
  Shape s;
  for (const Vec2& p : points) s.vertices[static_cast<size_t>(s.vertex_count++)] = p;
  return s;
}
Shape rect(float cx, float cy, float w, float h) {
  return polygon({{cx - w / 2, cy - h / 2}, {cx + w / 2, cy - h / 2}, {cx + w / 2, cy + h / 2}, {cx - w / 2, cy + h / 2}});
}
// A trapezoid symmetric about x = cx: `top_w` wide at cy - h/2, `bottom_w` wide at cy + h/2.
Shape trapezoid(float cx, float cy, float top_w, float bottom_w, float h) {
  return polygon({{cx - top_w / 2, cy - h / 2}, {cx + top_w / 2, cy - h / 2}, {cx + bottom_w / 2, cy + h / 2},
                  {cx - bottom_w / 2, cy + h / 2}});
}
Shape triangle(Vec2 a, Vec2 b, Vec2 c) { return polygon({a, b, c}); }
Shape ellipse(float cx, float cy, float rx, float ry, Shape::Kind kind = Shape::Kind::Ellipse) {
  Shape s;
  s.kind = kind;
  s.center = {cx, cy};
  s.rx = rx;
  s.ry = ry;
  return s;
}
Shape disc(float cx, float cy, float r) { return ellipse(cx, cy, r, r); }
Shape dome(float cx, float cy, float rx, float ry) { return ellipse(cx, cy, rx, ry, Shape::Kind::Dome); }
Shape ring(float cx, float cy, float r, float hole) {
  Shape s = ellipse(cx, cy, r, r, Shape::Kind::Ring);
  s.hole = hole;
  return s;
}

// Mirror (x -> -x), then rotate, scale and move: the map from an object frame into the image.
struct Pose {
  bool mirror = false;
  float angle = 0, scale = 1;
  Vec2 origin;  // the object-frame point that lands on `position`
  Vec2 position;

  Vec2 apply(Vec2 p) const {
    float x = p.x - origin.x, y = p.y - origin.y;
    if (mirror) x = -x;
    const float c = std::cos(angle), s = std::sin(angle);
    return {position.x + scale * (c * x - s * y), position.y + scale * (s * x + c * y)};
  }
  Shape apply(const Shape& shape) const {
    Shape out = shape;
    for (int i = 0; i < shape.vertex_count; ++i) out.vertices[static_cast<size_t>(i)] = apply(shape.vertices[static_cast<size_t>(i)]);
    out.center = apply(shape.center);
    out.rx = shape.rx * scale;
    out.ry = shape.ry * scale;
    out.angle = angle + (mirror ? -shape.angle : shape.angle);
    return out;
  }
};

struct Box {
  float x0, y0, x1, y1;
};

Box bounds(const Shape& s) {
  if (s.kind != Shape::Kind::Polygon) {
    const float r = std::max(s.rx, s.ry);
    return {s.center.x - r, s.center.y - r, s.center.x + r, s.center.y + r};
  }
  Box b{s.vertices[0].x, s.vertices[0].y, s.vertices[0].x, s.vertices[0].y};
  for (int i = 1; i < s.vertex_count; ++i) {
    const Vec2 v = s.vertices[static_cast<size_t>(i)];
    b = {std::min(b.x0, v.x), std::min(b.y0, v.y), std::max(b.x1, v.x), std::max(b.y1, v.y)};
  }
  return b;
}

// The inside test, prepared once per shape: a pixel costs a few multiplications.
class InsideTest {
 public:
  explicit InsideTest(const Shape& s) : s_(s), cos_(std::cos(s.angle)), sin_(std::sin(s.angle)) {}

  bool operator()(float x, float y) const {
    if (s_.kind == Shape::Kind::Polygon) {
      // Convex: inside when the point is on the same side of every edge, whatever the winding (a
      // mirrored pose reverses it).
      bool any_positive = false, any_negative = false;
      for (int i = 0; i < s_.vertex_count; ++i) {
        const Vec2 a = s_.vertices[static_cast<size_t>(i)];
        const Vec2 b = s_.vertices[static_cast<size_t>((i + 1) % s_.vertex_count)];
        const float cross = (b.x - a.x) * (y - a.y) - (b.y - a.y) * (x - a.x);
        any_positive |= cross > 0;
        any_negative |= cross < 0;
      }
      return !(any_positive && any_negative);
    }
    const float dx = x - s_.center.x, dy = y - s_.center.y;
    const float u = (cos_ * dx + sin_ * dy) / s_.rx;   // along the ellipse's own x axis
    const float v = (-sin_ * dx + cos_ * dy) / s_.ry;  // along its own y axis (down)
    const float q = u * u + v * v;
    if (q > 1) return false;
    if (s_.kind == Shape::Kind::Dome) return v <= 0;
    if (s_.kind == Shape::Kind::Ring) return q >= s_.hole * s_.hole;
    return true;
  }

 private:
  const Shape& s_;
  float cos_, sin_;
};

// ---------------------------------------------------------------------------------------------
// Textures

using Rgb = std::array<float, 3>;

uint32_t hash_cell(int32_t x, int32_t y, uint32_t salt) {
  uint32_t h = static_cast<uint32_t>(x) * 0x8da6b343u ^ static_cast<uint32_t>(y) * 0xd8163841u ^ salt * 0xcb1ab31fu;
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}
float hash01(int32_t x, int32_t y, uint32_t salt) { return static_cast<float>(hash_cell(x, y, salt)) * 0x1p-32f; }

// Smooth random values in [0, 1): bilinear between random values on a grid of `cell` pixels.
float value_noise(float x, float y, float cell, uint32_t salt) {
  const float gx = x / cell, gy = y / cell;
  const float fx0 = std::floor(gx), fy0 = std::floor(gy);
  const auto ix = static_cast<int32_t>(fx0), iy = static_cast<int32_t>(fy0);
  float fx = gx - fx0, fy = gy - fy0;
  fx = fx * fx * (3 - 2 * fx);  // smoothstep hides the grid
  fy = fy * fy * (3 - 2 * fy);
  const float top = hash01(ix, iy, salt) + fx * (hash01(ix + 1, iy, salt) - hash01(ix, iy, salt));
  const float bottom = hash01(ix, iy + 1, salt) + fx * (hash01(ix + 1, iy + 1, salt) - hash01(ix, iy + 1, salt));
  return top + fy * (bottom - top);
}

Rgb mix(const Rgb& a, const Rgb& b, float t) { return {a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])}; }

struct Texture {
  enum class Kind { Flat, Stripes, Checker, Noise, Gradient };
  Kind kind = Kind::Flat;
  Rgb first{}, second{};
  float cos = 1, sin = 0;  // direction of stripes, checks and gradient
  float period = 8;        // pixels: stripe period, check width, noise cell; a gradient repeats every 2 pi periods
  float offset = 0;        // phase, so two textures of one kind do not line up
  uint32_t salt = 0;

  Rgb at(float x, float y) const {
    const float u = (cos * x + sin * y + offset) / period;
    switch (kind) {
      case Kind::Flat:
        return first;
      case Kind::Stripes:
        return u - std::floor(u) < 0.5f ? first : second;
      case Kind::Checker: {
        const float v = (-sin * x + cos * y + offset) / period;
        return (static_cast<int64_t>(std::floor(u)) + static_cast<int64_t>(std::floor(v))) % 2 == 0 ? first : second;
      }
      case Kind::Noise:
        return mix(first, second, value_noise(x, y, period, salt));
      case Kind::Gradient:  // a smooth wave, so it never shows a hard edge inside the shape
        return mix(first, second, 0.5f + 0.5f * std::sin(u));
    }
    return first;
  }
};

Rgb random_colour(SampleRng& rng) {
  return {static_cast<float>(rng.uniform(0, 255)), static_cast<float>(rng.uniform(0, 255)),
          static_cast<float>(rng.uniform(0, 255))};
}

// Any of the five kinds, colours drawn independently, period 3% to 15% of the image side.
Texture random_texture(SampleRng& rng, int size) {
  Texture t;
  t.kind = static_cast<Texture::Kind>(rng.randint(0, 4));
  t.first = random_colour(rng);
  t.second = random_colour(rng);
  const double direction = rng.uniform(0, 2 * std::numbers::pi);
  t.cos = static_cast<float>(std::cos(direction));
  t.sin = static_cast<float>(std::sin(direction));
  t.period = static_cast<float>(rng.uniform(0.03, 0.15) * size);
  t.offset = static_cast<float>(rng.uniform(0, 100));
  t.salt = static_cast<uint32_t>(rng.next_word());
  return t;
}

// ---------------------------------------------------------------------------------------------
// The canvas: colours as floats while composing, labels as they will be written.

struct Canvas {
  int size;
  std::vector<float> rgb;  // size * size * 3
  Image labels;

  explicit Canvas(int size_) : size(size_), rgb(static_cast<size_t>(size_) * size_ * 3, 0.f), labels(size_, size_, 1, 0) {}

  // Blends `texture` over the pixels the shape covers (by coverage of 2 x 2 samples); `label` > 0
  // marks the pixels at least half covered.
  void draw(const Shape& shape, const Texture& texture, uint8_t label) {
    const Box b = bounds(shape);
    const int x0 = std::max(0, static_cast<int>(std::floor(b.x0))), x1 = std::min(size - 1, static_cast<int>(std::ceil(b.x1)));
    const int y0 = std::max(0, static_cast<int>(std::floor(b.y0))), y1 = std::min(size - 1, static_cast<int>(std::ceil(b.y1)));
    const InsideTest inside(shape);
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) {
        const int covered = inside(x + 0.25f, y + 0.25f) + inside(x + 0.75f, y + 0.25f) + inside(x + 0.25f, y + 0.75f) +
                            inside(x + 0.75f, y + 0.75f);
        if (covered == 0) continue;
        const Rgb colour = texture.at(x + 0.5f, y + 0.5f);
        const float coverage = covered * 0.25f;
        float* p = &rgb[(static_cast<size_t>(y) * size + x) * 3];
        for (int c = 0; c < 3; ++c) p[c] += coverage * (colour[static_cast<size_t>(c)] - p[c]);
        if (label > 0 && covered >= 2) labels.at(x, y) = label;
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Class templates. Parts are listed in drawing order; part k (1-based) gets label k. Every
// proportion is jittered per image, so the class is the arrangement, not one exact outline. Object
// frames are about two units across, y down.

struct ClassTemplate {
  const char* name;
  const char* description;
  std::vector<const char*> part_names;
  std::vector<Shape> (*build)(SampleRng& rng);
};

float jitter(SampleRng& rng, double low, double high) { return static_cast<float>(rng.uniform(low, high)); }

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

// ---------------------------------------------------------------------------------------------
// One image

// A smooth gradient between two random colours, coloured low-frequency noise, and half the time a
// faint full-image texture: no two backgrounds share a colour statistic the object could hide behind.
void draw_background(Canvas& canvas, SampleRng& rng) {
  const int size = canvas.size;
  const Rgb from = random_colour(rng), to = random_colour(rng);
  const double direction = rng.uniform(0, 2 * std::numbers::pi);
  const float gx = static_cast<float>(std::cos(direction)) / size, gy = static_cast<float>(std::sin(direction)) / size;
  const Rgb noise_amplitude = {jitter(rng, 0, 80), jitter(rng, 0, 80), jitter(rng, 0, 80)};
  const float noise_cell = jitter(rng, 0.08, 0.3) * size;
  const auto noise_salt = static_cast<uint32_t>(rng.next_word());
  const bool textured = rng.bernoulli(0.5);
  const Texture overlay = random_texture(rng, size);
  const float overlay_alpha = jitter(rng, 0.15, 0.4);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const float t = std::clamp(0.5f + gx * (x - size / 2.f) + gy * (y - size / 2.f), 0.f, 1.f);
      Rgb colour = mix(from, to, t);
      const float n = value_noise(static_cast<float>(x), static_cast<float>(y), noise_cell, noise_salt) - 0.5f;
      for (size_t c = 0; c < 3; ++c) colour[c] += 2 * n * noise_amplitude[c];
      if (textured) colour = mix(colour, overlay.at(x + 0.5f, y + 0.5f), overlay_alpha);
      float* p = &canvas.rgb[(static_cast<size_t>(y) * size + x) * 3];
      for (size_t c = 0; c < 3; ++c) p[c] = colour[c];
    }
  }
}

// Three to eight shapes of the kinds the parts are made of, 8% to 40% of the image side: so that a
// disc or a ring alone does not tell a lollipop or a cart.
void draw_clutter(Canvas& canvas, SampleRng& rng) {
  const auto size = static_cast<float>(canvas.size);
  const int64_t count = rng.randint(3, 8);
  for (int64_t i = 0; i < count; ++i) {
    const float extent = jitter(rng, 0.08, 0.4) * size / 2, aspect = jitter(rng, 0.25, 1.0);
    Shape shape;
    switch (rng.randint(0, 4)) {
      case 0: shape = rect(0, 0, 2 * extent, 2 * extent * aspect); break;
      case 1: shape = ellipse(0, 0, extent, extent * aspect); break;
      case 2: shape = triangle({-extent, extent * aspect}, {extent, extent * aspect}, {jitter(rng, -1, 1) * extent, -extent}); break;
      case 3: shape = ring(0, 0, extent, jitter(rng, 0.4, 0.7)); break;
      default: shape = dome(0, 0, extent, extent * aspect); break;
    }
    Pose pose;
    pose.angle = jitter(rng, 0, 2 * std::numbers::pi);
    pose.position = {jitter(rng, 0, 1) * size, jitter(rng, 0, 1) * size};
    canvas.draw(pose.apply(shape), random_texture(rng, canvas.size), 0);
  }
}

// Rotation within +-30 degrees, a mirror half the time, the object's longer side 35% to 80% of the
// image side, and a position that keeps at least 85% of its extent inside the image.
Pose random_pose(SampleRng& rng, const Box& object, int size) {
  Pose pose;
  pose.mirror = rng.bernoulli(0.5);
  pose.angle = jitter(rng, -std::numbers::pi / 6, std::numbers::pi / 6);
  const float extent = std::max(object.x1 - object.x0, object.y1 - object.y0);
  const float fraction = jitter(rng, 0.35, 0.8);
  pose.scale = fraction * size / extent;
  pose.origin = {(object.x0 + object.x1) / 2, (object.y0 + object.y1) / 2};
  const float slack = (1 - fraction) * size / 2 + 0.15f * fraction * size / 2;
  pose.position = {size / 2.f + jitter(rng, -slack, slack), size / 2.f + jitter(rng, -slack, slack)};
  return pose;
}

// The pose used when eight random ones each hid a part (out of the image, or under another part):
// centred, upright, 70% of the image.
Pose fallback_pose(const Box& object, int size) {
  Pose pose;
  pose.scale = 0.7f * size / std::max(object.x1 - object.x0, object.y1 - object.y0);
  pose.origin = {(object.x0 + object.x1) / 2, (object.y0 + object.y1) / 2};
  pose.position = {size / 2.f, size / 2.f};
  return pose;
}

bool every_part_visible(const Image& labels, int part_count) {
  std::array<int64_t, 256> counts{};
  for (uint8_t v : labels.pixels) ++counts[v];
  const int64_t needed = std::max<int64_t>(3, static_cast<int64_t>(labels.width) * labels.height / 1000);
  for (int k = 1; k <= part_count; ++k)
    if (counts[static_cast<size_t>(k)] < needed) return false;
  return true;
}

uint8_t to_byte(float v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

}  // namespace

std::vector<std::string> synth_class_names() {
  std::vector<std::string> names;
  for (const ClassTemplate& t : templates()) names.emplace_back(t.name);
  return names;
}

int synth_class_part_count(int class_index) { return static_cast<int>(template_of(class_index).part_names.size()); }

SynthSample render_synth_sample(const SynthOptions& options, int class_index, int split, int64_t index) {
  const ClassTemplate& object_template = template_of(class_index);
  ENGINE_CHECK(split == kSynthTrain || split == kSynthVal, "synth: split must be {} (train) or {} (val), found {}", kSynthTrain,
               kSynthVal, split);
  ENGINE_CHECK(options.size >= 16, "synth: image size must be at least 16 pixels, found {}", options.size);
  SampleRng rng(options.seed, (static_cast<uint64_t>(split) << 16) | static_cast<uint64_t>(class_index), static_cast<uint64_t>(index));

  Canvas background(options.size);
  draw_background(background, rng);
  draw_clutter(background, rng);

  const std::vector<Shape> parts = object_template.build(rng);
  Box object = bounds(parts[0]);
  for (const Shape& part : parts) {
    const Box b = bounds(part);
    object = {std::min(object.x0, b.x0), std::min(object.y0, b.y0), std::max(object.x1, b.x1), std::max(object.y1, b.y1)};
  }
  std::vector<Texture> textures;
  for (size_t k = 0; k < parts.size(); ++k) textures.push_back(random_texture(rng, options.size));

  constexpr int kPoseAttempts = 8;
  Canvas canvas = background;
  for (int attempt = 0; attempt <= kPoseAttempts; ++attempt) {
    const Pose pose = attempt < kPoseAttempts ? random_pose(rng, object, options.size) : fallback_pose(object, options.size);
    canvas = background;
    for (size_t k = 0; k < parts.size(); ++k) canvas.draw(pose.apply(parts[k]), textures[k], static_cast<uint8_t>(k + 1));
    if (every_part_visible(canvas.labels, static_cast<int>(parts.size()))) break;
  }

  // Sensor noise, so flat regions are never exactly flat.
  const float noise = jitter(rng, 0, 8);
  const auto noise_salt = static_cast<uint32_t>(rng.next_word());
  SynthSample sample{Image(options.size, options.size, 3), std::move(canvas.labels)};
  for (size_t i = 0; i < canvas.rgb.size(); ++i) {
    const float n = hash01(static_cast<int32_t>(i), 0, noise_salt) - 0.5f;
    sample.image.pixels[i] = to_byte(canvas.rgb[i] + 2 * n * noise);
  }
  return sample;
}

Image synth_foreground_mask(const Image& parts) {
  Image fg(parts.width, parts.height, 1, 0);
  for (size_t i = 0; i < parts.pixels.size(); ++i) fg.pixels[i] = parts.pixels[i] > 0 ? 255 : 0;
  return fg;
}

// ---------------------------------------------------------------------------------------------
// Writing the dataset

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kReadmeFirstLine = "This folder was written by `moco synth` (moco-engine, data/synth.h).";
constexpr std::array<const char*, 2> kSplitNames = {"train", "val"};

void check_options(const SynthOptions& o) {
  const int available = static_cast<int>(templates().size());
  ENGINE_CHECK(o.classes >= 2 && o.classes <= available, "synth: --classes must be between 2 and {} (the class templates there are), found {}",
               available, o.classes);
  ENGINE_CHECK(o.train_per_class >= 1, "synth: --train-per-class must be at least 1, found {}", o.train_per_class);
  ENGINE_CHECK(o.val_per_class >= 0, "synth: --val-per-class must be 0 or more, found {}", o.val_per_class);
  ENGINE_CHECK(o.train_per_class <= 99999 && o.val_per_class <= 99999,
               "synth: at most 99999 images per class and split (file names have five digits), found {} train and {} val",
               o.train_per_class, o.val_per_class);
  ENGINE_CHECK(o.size >= 16 && o.size <= 4096, "synth: --size must be between 16 and 4096 pixels, found {}", o.size);
  ENGINE_CHECK(o.threads >= 0, "synth: --threads must be 0 (all cores) or more, found {}", o.threads);
}

bool is_earlier_synth_output(const fs::path& out) {
  std::ifstream readme(out / "README.txt");
  std::string first_line;
  return readme && std::getline(readme, first_line) && first_line == kReadmeFirstLine;
}

// Writes only into a new or empty folder, so a dataset is never mixed into other files (say, into
// the train/ folder of another dataset); with `force`, clears an earlier synth output first.
void prepare_output_folder(const fs::path& out, bool force) {
  if (fs::exists(out) && !fs::is_empty(out)) {
    ENGINE_CHECK(force, "synth: '{}' exists and is not empty; choose a new folder, or pass --force to replace an earlier "
                 "`moco synth` output there", out.string());
    ENGINE_CHECK(is_earlier_synth_output(out),
                 "synth: '{}' is not empty and has no README.txt written by `moco synth`, so --force will not touch it; "
                 "choose a new folder, or empty this one yourself", out.string());
    for (const char* sub : {"train", "val", "masks"}) fs::remove_all(out / sub);
  }
  fs::create_directories(out);
}

std::string readme_text(const SynthOptions& o) {
  std::string text = fmt::format("{}\n\n", kReadmeFirstLine);
  text += fmt::format("Regenerate: moco synth OUT --classes {} --train-per-class {} --val-per-class {} --size {} --seed {}\n",
                      o.classes, o.train_per_class, o.val_per_class, o.size, o.seed);
  text += "(the same arguments give the same pixels, whatever the thread count)\n\n";
  text += fmt::format("{} classes, {} train and {} val images each, {} x {} RGB JPEG (quality 90), seed {}.\n\n", o.classes,
                      o.train_per_class, o.val_per_class, o.size, o.size, o.seed);
  text += "Layout:\n"
          "  train/<class>/<class>_<index:05>.jpg, val/<class>/<class>_<index:05>.jpg\n"
          "  masks/<split>/<class>/<class>_<index:05>_fg.png     8-bit gray: 255 object, 0 background\n"
          "  masks/<split>/<class>/<class>_<index:05>_parts.png  8-bit gray: 0 background, k = part k of the object\n"
          "The masks are outside train/ and val/ so that an image folder does not read them as images.\n"
          "Clutter in the background is never labelled; a part's label covers the pixels it hides of other parts.\n\n"
          "Classes (a class is the arrangement of its parts; colours and textures are random per image):\n";
  for (int c = 0; c < o.classes; ++c) {
    const ClassTemplate& t = templates()[static_cast<size_t>(c)];
    std::string parts;
    for (size_t k = 0; k < t.part_names.size(); ++k) parts += fmt::format("{}{} = {}", k ? ", " : "", k + 1, t.part_names[k]);
    text += fmt::format("  {}: {} (parts: {})\n", t.name, t.description, parts);
  }
  return text;
}

std::string_view as_bytes(const std::vector<uint8_t>& v) { return {reinterpret_cast<const char*>(v.data()), v.size()}; }

struct Job {
  int split, class_index;
  int64_t index;
};

Job job_at(const SynthOptions& o, int64_t i) {
  const int64_t train_total = static_cast<int64_t>(o.classes) * o.train_per_class;
  if (i < train_total) return {kSynthTrain, static_cast<int>(i / o.train_per_class), i % o.train_per_class};
  i -= train_total;
  return {kSynthVal, static_cast<int>(i / o.val_per_class), i % o.val_per_class};
}

void write_sample(const fs::path& out, const SynthOptions& o, const Job& job, const std::string& name) {
  const char* split = kSplitNames[static_cast<size_t>(job.split)];
  const std::string stem = fmt::format("{}_{:05d}", name, job.index);
  const SynthSample sample = render_synth_sample(o, job.class_index, job.split, job.index);
  const fs::path masks = out / "masks" / split / name;
  write_file_atomic((out / split / name / (stem + ".jpg")).string(), as_bytes(encode_jpeg(sample.image, 90)));
  write_file_atomic((masks / (stem + "_fg.png")).string(), as_bytes(encode_png(synth_foreground_mask(sample.parts))));
  write_file_atomic((masks / (stem + "_parts.png")).string(), as_bytes(encode_png(sample.parts)));
}

}  // namespace

void write_synth_dataset(const std::string& out_path, const SynthOptions& options) {
  check_options(options);
  const auto start = std::chrono::steady_clock::now();
  const fs::path out(out_path);
  prepare_output_folder(out, options.force);
  const std::vector<std::string> names = synth_class_names();
  for (int split : {kSynthTrain, kSynthVal}) {
    if (split == kSynthVal && options.val_per_class == 0) continue;
    for (int c = 0; c < options.classes; ++c) {
      fs::create_directories(out / kSplitNames[static_cast<size_t>(split)] / names[static_cast<size_t>(c)]);
      fs::create_directories(out / "masks" / kSplitNames[static_cast<size_t>(split)] / names[static_cast<size_t>(c)]);
    }
  }
  // The README first, so that an interrupted run is still recognised (and replaced) by --force.
  write_file_atomic((out / "README.txt").string(), readme_text(options));

  const int64_t total = static_cast<int64_t>(options.classes) * (options.train_per_class + options.val_per_class);
  const int threads = options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int64_t i = next++; i < total && !failed; i = next++) {
      try {
        const Job job = job_at(options, i);
        write_sample(out, options, job, names[static_cast<size_t>(job.class_index)]);
      } catch (...) {
        const std::lock_guard lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) workers.emplace_back(work);
  for (std::thread& w : workers) w.join();
  if (first_error) std::rethrow_exception(first_error);

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("synth: wrote {} images ({} classes x {} train + {} val, {} px) with their masks to {} in {:.1f} s ({} threads)\n",
             total, options.classes, options.train_per_class, options.val_per_class, options.size, out_path, seconds, threads);
}

}  // namespace engine::data
