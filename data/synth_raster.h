// synth_raster.h - the synthetic dataset's drawing primitives: shapes, poses, textures and a canvas
// that rasterises them, with no knowledge of the classes (internal to synth*.cpp).
//
// Coordinates are pixels with y pointing down. A pose (mirror, rotation, scale, translation: a
// similarity, so discs stay discs) maps a shape from its own frame into the image. Shapes are drawn
// with 2 x 2 supersampled coverage, so edges are smooth; a pixel takes a part's label when at least
// half of its samples are inside the part.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "data/image.h"
#include "data/sample_rng.h"

namespace engine::data::synth_detail {

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

Shape polygon(std::initializer_list<Vec2> points);
Shape rect(float cx, float cy, float w, float h);
// A trapezoid symmetric about x = cx: `top_w` wide at cy - h/2, `bottom_w` wide at cy + h/2.
Shape trapezoid(float cx, float cy, float top_w, float bottom_w, float h);
Shape triangle(Vec2 a, Vec2 b, Vec2 c);
Shape ellipse(float cx, float cy, float rx, float ry, Shape::Kind kind = Shape::Kind::Ellipse);
Shape disc(float cx, float cy, float r);
Shape dome(float cx, float cy, float rx, float ry);
Shape ring(float cx, float cy, float r, float hole);

// Mirror (x -> -x), then rotate, scale and move: the map from an object frame into the image.
struct Pose {
  bool mirror = false;
  float angle = 0, scale = 1;
  Vec2 origin;  // the object-frame point that lands on `position`
  Vec2 position;

  Vec2 apply(Vec2 p) const;
  Shape apply(const Shape& shape) const;
};

struct Box {
  float x0, y0, x1, y1;
};

Box bounds(const Shape& s);

// ---------------------------------------------------------------------------------------------
// Textures and random draws

using Rgb = std::array<float, 3>;

// rng.uniform(low, high) as a float: the draw behind every random proportion, position and amount.
inline float jitter(SampleRng& rng, double low, double high) { return static_cast<float>(rng.uniform(low, high)); }

// The hash of grid cell (x, y) under `salt`, scaled to [0, 1].
float hash01(int32_t x, int32_t y, uint32_t salt);

// Smooth random values in [0, 1): bilinear between random values on a grid of `cell` pixels.
float value_noise(float x, float y, float cell, uint32_t salt);

Rgb mix(const Rgb& a, const Rgb& b, float t);

struct Texture {
  enum class Kind { Flat, Stripes, Checker, Noise, Gradient };
  Kind kind = Kind::Flat;
  Rgb first{}, second{};
  float cos = 1, sin = 0;  // direction of stripes, checks and gradient
  float period = 8;        // pixels: stripe period, check width, noise cell; a gradient repeats every 2 pi periods
  float offset = 0;        // phase, so two textures of one kind do not line up
  uint32_t salt = 0;

  Rgb at(float x, float y) const;
};

Rgb random_colour(SampleRng& rng);

// Any of the five kinds, colours drawn independently, period 3% to 15% of the image side.
Texture random_texture(SampleRng& rng, int size);

// ---------------------------------------------------------------------------------------------
// The canvas: colours as floats while composing, labels as they will be written.

struct Canvas {
  int size;
  std::vector<float> rgb;  // size * size * 3
  Image labels;

  explicit Canvas(int size_) : size(size_), rgb(static_cast<size_t>(size_) * size_ * 3, 0.f), labels(size_, size_, 1, 0) {}

  // Blends `texture` over the pixels the shape covers (by coverage of 2 x 2 samples); `label` > 0
  // marks the pixels at least half covered.
  void draw(const Shape& shape, const Texture& texture, uint8_t label);
};

}  // namespace engine::data::synth_detail
