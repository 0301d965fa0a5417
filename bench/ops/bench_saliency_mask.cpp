// bench_saliency_mask.cpp - times the fused saliency-guided masking (ops/saliency_mask.h) as the
// trainer calls it, at the Tensor level, on a batch of 256 views of 3 x 224 x 224 on a 7 x 7 grid:
//   hp pos, hp neg   noise masking of the query / the hard negative (METHOD.md 5.2);
//   blur pos         the cells taken from the strongly blurred views (5.3), which are made once
//                    before timing, as the trainer has them already;
//   mean pos         the cells filled with the image's channel means (5.4).
// Each image has its own foreground map, a blob of 30 to 40 of the 49 cells (35 on average, about
// what a bell-shaped saliency map gives, METHOD.md 4.3) around a random centre; the maps come from a
// fixed integer hash, so bench/torch_ref/bench_saliency_mask.py builds the very same ones.
//
// Rates are GB/s of the least traffic a call needs: read x and write the masked views (and read
// the blurred views for blur), plus the foreground cells read and the cells/focal flags written
// (u8, a few KiB). mean counts the same bytes as hp although the op reads x twice (a reduction for
// the means, then the masking pass); its share of copy shows what that second read costs. Each
// rate is also given as a share of the device's copy bandwidth measured in the same run (a clone
// of a large tensor: read + write, as bench_resnet_ops measures it).
//
// Method as bench_ops: one warm-up call, then `repeats` calls between two synchronisations,
// median of 5 rounds. Every call draws fresh masks (the next Philox streams), as training does.
// --quick masks a batch of 8 instead of 256.
//
//   bench_saliency_mask [--device cpu|cuda|all] [--quick]
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "bench/ops/bench_timing.h"
#include "engine/random.h"
#include "ops/ops.h"

using namespace engine;
using bench::median_seconds_per_call;

namespace {

constexpr int64_t kGrid = 7, kSide = 224;

Tensor random_tensor(const Shape& shape, Device device, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::f32, device);
  Generator gen(seed);
  uniform_(t, gen, -2.0, 2.0);
  return t;
}

// splitmix64: a plain integer hash that Python reproduces exactly (the maps must be the same there).
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Image n's foreground cells (kGrid x kGrid, row-major): |FG| = 30 + h % 11 cells, those nearest a
// centre drawn in eighths of a cell over [1.5, 5.5] cells on each axis, the squared distance
// (in 1/64 cell^2) jittered by up to 255 so the blobs are not all discs; ties go to the lower index.
std::vector<uint8_t> foreground_maps(int64_t N) {
  constexpr int64_t cells = kGrid * kGrid;
  std::vector<uint8_t> fg(static_cast<size_t>(N * cells), 0);
  for (int64_t n = 0; n < N; ++n) {
    uint64_t state = 1000 + static_cast<uint64_t>(n);
    const int64_t count = 30 + static_cast<int64_t>(splitmix64(state) % 11);
    const int64_t cy = 12 + static_cast<int64_t>(splitmix64(state) % 33);
    const int64_t cx = 12 + static_cast<int64_t>(splitmix64(state) % 33);
    std::vector<std::pair<int64_t, int64_t>> ranked;  // (key, cell)
    for (int64_t p = 0; p < cells; ++p) {
      const int64_t dy = 8 * (p / kGrid) + 4 - cy, dx = 8 * (p % kGrid) + 4 - cx;
      ranked.emplace_back(dy * dy + dx * dx + static_cast<int64_t>(splitmix64(state) % 256), p);
    }
    std::sort(ranked.begin(), ranked.end());
    for (int64_t i = 0; i < count; ++i) fg[static_cast<size_t>(n * cells + ranked[static_cast<size_t>(i)].second)] = 1;
  }
  return fg;
}

struct Row {
  std::string op, shape;
  double seconds, gigabytes;
  std::string note;
};

void bench_device(Device device, bool quick) {
  const bool gpu = device.is_cuda();
  const int64_t N = quick ? 8 : 256;
  const int repeats = gpu ? 10 : 1;
  std::vector<Row> table;

  // The copy bandwidth the rates are compared with (bench_resnet_ops' sizes).
  const int64_t copy_elems = quick ? (1 << 20) : (gpu ? (1 << 26) : (1 << 24));
  const Tensor big = random_tensor({copy_elems}, device, 1);
  const double copy_gb = 2.0 * static_cast<double>(copy_elems) * sizeof(float) / 1e9;
  const double copy_s = median_seconds_per_call(device, repeats, [&] { big.clone(); });
  const double copy_gbps = copy_gb / copy_s;
  table.push_back({"copy (clone)", fmt::format("({},)", copy_elems), copy_s, copy_gb, ""});

  const Tensor x = random_tensor({N, 3, kSide, kSide}, device, 2);
  const Tensor blurred = random_tensor({N, 3, kSide, kSide}, device, 3);  // the values do not change the work
  const std::vector<uint8_t> fg_host = foreground_maps(N);
  const Tensor foreground = Tensor::from_vector(fg_host, {N, kGrid, kGrid}, device);
  int64_t fg_total = 0, fg_min = kGrid * kGrid, fg_max = 0;
  for (int64_t n = 0; n < N; ++n) {
    int64_t count = 0;
    for (int64_t p = 0; p < kGrid * kGrid; ++p) count += fg_host[static_cast<size_t>(n * kGrid * kGrid + p)];
    fg_total += count;
    fg_min = std::min(fg_min, count);
    fg_max = std::max(fg_max, count);
  }

  const double image_bytes = static_cast<double>(x.numel()) * sizeof(float);
  const double flag_bytes = static_cast<double>(N * kGrid * kGrid + N * 3 * kGrid * kGrid + N);  // fg in, cells + focal out
  const std::string shape = fmt::format("{} G{}", shape_str(x.shape()), kGrid);
  struct Case {
    const char* name;
    MaskFill fill;
    MaskMode mode;
    double image_passes;  // views read or written: x, out (and blurred)
  };
  const Case cases[] = {{"saliency_mask hp pos", MaskFill::Noise, MaskMode::Positive, 2},
                        {"saliency_mask hp neg", MaskFill::Noise, MaskMode::Negative, 2},
                        {"saliency_mask blur pos", MaskFill::Blur, MaskMode::Positive, 3},
                        {"saliency_mask mean pos", MaskFill::Mean, MaskMode::Positive, 2}};
  for (const Case& c : cases) {
    SaliencyMaskOptions options;
    options.fill = c.fill;
    options.mode = c.mode;
    options.seed = 7;
    const Tensor fill_views = c.fill == MaskFill::Blur ? blurred : Tensor();
    const double gb = (c.image_passes * image_bytes + flag_bytes) / 1e9;
    const double s = median_seconds_per_call(device, repeats, [&] {
      saliency_mask(x, foreground, fill_views, options);
      options.stream += kSaliencyMaskStreams;
    });
    table.push_back({c.name, shape, s, gb, fmt::format("{:.0f}% of copy", 100.0 * gb / s / copy_gbps)});
  }

  fmt::print("\n{} (f32; foreground cells per image: {:.1f} on average, {} to {})\n", device.str(),
             static_cast<double>(fg_total) / static_cast<double>(N), fg_min, fg_max);
  fmt::print("{:<36} {:<28} {:>11} {:>12}  {}\n", "op", "shape", "time (ms)", "rate", "");
  for (const Row& r : table)
    fmt::print("{:<36} {:<28} {:>11.3f} {:>8.2f} GB/s {}\n", r.op, r.shape, r.seconds * 1e3, r.gigabytes / r.seconds,
               r.note);
}

}  // namespace

int main(int argc, char** argv) { return bench::run_benchmark(argc, argv, "bench_saliency_mask", bench_device); }
