// synth_raster.cpp - shapes, poses, textures and the supersampled canvas; see synth_raster.h.
#include "data/synth_raster.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace engine::data::synth_detail {

// ---------------------------------------------------------------------------------------------
// Shapes

Shape polygon(std::initializer_list<Vec2> points) {
  Shape s;
  for (const Vec2& p : points) s.vertices[static_cast<size_t>(s.vertex_count++)] = p;
  return s;
}
Shape rect(float cx, float cy, float w, float h) {
  return polygon({{cx - w / 2, cy - h / 2}, {cx + w / 2, cy - h / 2}, {cx + w / 2, cy + h / 2}, {cx - w / 2, cy + h / 2}});
}
Shape trapezoid(float cx, float cy, float top_w, float bottom_w, float h) {
  return polygon({{cx - top_w / 2, cy - h / 2}, {cx + top_w / 2, cy - h / 2}, {cx + bottom_w / 2, cy + h / 2},
                  {cx - bottom_w / 2, cy + h / 2}});
}
Shape triangle(Vec2 a, Vec2 b, Vec2 c) { return polygon({a, b, c}); }
Shape ellipse(float cx, float cy, float rx, float ry, Shape::Kind kind) {
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

Vec2 Pose::apply(Vec2 p) const {
  float x = p.x - origin.x, y = p.y - origin.y;
  if (mirror) x = -x;
  const float c = std::cos(angle), s = std::sin(angle);
  return {position.x + scale * (c * x - s * y), position.y + scale * (s * x + c * y)};
}

Shape Pose::apply(const Shape& shape) const {
  Shape out = shape;
  for (int i = 0; i < shape.vertex_count; ++i) out.vertices[static_cast<size_t>(i)] = apply(shape.vertices[static_cast<size_t>(i)]);
  out.center = apply(shape.center);
  out.rx = shape.rx * scale;
  out.ry = shape.ry * scale;
  out.angle = angle + (mirror ? -shape.angle : shape.angle);
  return out;
}

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

namespace {

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

}  // namespace

// ---------------------------------------------------------------------------------------------
// Textures

namespace {

uint32_t hash_cell(int32_t x, int32_t y, uint32_t salt) {
  uint32_t h = static_cast<uint32_t>(x) * 0x8da6b343u ^ static_cast<uint32_t>(y) * 0xd8163841u ^ salt * 0xcb1ab31fu;
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}

}  // namespace

float hash01(int32_t x, int32_t y, uint32_t salt) { return static_cast<float>(hash_cell(x, y, salt)) * 0x1p-32f; }

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

Rgb Texture::at(float x, float y) const {
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

Rgb random_colour(SampleRng& rng) {
  return {static_cast<float>(rng.uniform(0, 255)), static_cast<float>(rng.uniform(0, 255)),
          static_cast<float>(rng.uniform(0, 255))};
}

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
// The canvas

void Canvas::draw(const Shape& shape, const Texture& texture, uint8_t label) {
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

}  // namespace engine::data::synth_detail
