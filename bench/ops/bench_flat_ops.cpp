// bench_flat_ops.cpp - times the ops MoCo runs once per step over whole models and batches:
//   momentum_update  over one flat buffer of ResNet-50 + MLP head (27,966,656 f32 parameters):
//                    GB/s of what it must move (read key and query, write key: 12 bytes/param);
//   sgd_step         over the same flat buffers (read params, grads, momentum; write params and
//                    momentum: 20 bytes/param), a step after the first (the buffer is read);
//   lars_step        SimCLR's LARS over a flat buffer laid out as ResNet-50's 159 trunk tensors
//                    (23,508,032 f32 parameters, 16-aligned as Module::flatten_parameters()), one
//                    plan made beforehand as nn::Lars makes it: the norms read params and grads,
//                    the update reads params, grads, momentum and writes params and momentum, so
//                    28 bytes per parameter of an adapted tensor, 20 of an excluded one (the
//                    one-dimensional: BatchNorm's);
//   index_select     of a batch of 128 (3, 224, 224) images by a permutation, as shuffle-BN
//                    permutes the key images (read + write the batch; on CUDA this includes the
//                    copy of the index to the host that checks it).
// bench/torch_ref/bench_flat_ops.py times PyTorch's way at the same sizes, in the same table
// format. Method as bench_ops: one warm-up call, then `repeats` calls between two
// synchronisations, median of 5 rounds.
//
//   bench_flat_ops [--device cpu|cuda|all] [--quick]
#include <fmt/format.h>

#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "bench/ops/bench_timing.h"
#include "engine/random.h"
#include "ops/ops.h"

using namespace engine;
using bench::median_seconds_per_call;

namespace {

// torchvision's resnet50 with MoCo v2's 2048-2048-128 head: sum of its parameters' numel.
constexpr int64_t kResNet50MlpParameters = 27966656;

// torchvision's ResNet-50 without its classifier, in named_parameters() order, with the stem's and
// layer1's width `width` (64: 159 tensors, 23,508,032 values; --quick takes 16).
// bench/torch_ref/bench_flat_ops.py builds the same list and checks it against torchvision's.
std::vector<Shape> resnet50_trunk_shapes(int64_t width) {
  std::vector<Shape> shapes = {{width, 3, 7, 7}, {width}, {width}};
  auto conv_bn = [&](int64_t out, int64_t in, int64_t k) {
    shapes.push_back({out, in, k, k});
    shapes.push_back({out});
    shapes.push_back({out});
  };
  const int64_t blocks_of[] = {3, 4, 6, 3};
  int64_t inplanes = width;
  for (int layer = 0; layer < 4; ++layer) {
    const int64_t planes = width << layer;
    for (int64_t block = 0; block < blocks_of[layer]; ++block) {
      conv_bn(planes, inplanes, 1);
      conv_bn(planes, planes, 3);
      conv_bn(planes * 4, planes, 1);
      if (block == 0) conv_bn(planes * 4, inplanes, 1);  // downsample
      inplanes = planes * 4;
    }
  }
  return shapes;
}

// LARS segments for `shapes` in a flat buffer, each starting at a multiple of 16 elements as
// Module::flatten_parameters() places them; one-dimensional tensors excluded, as nn::Lars does.
// Returns the buffer's length; `bytes` gets what one step must move at least (see the header).
int64_t lars_layout(const std::vector<Shape>& shapes, std::vector<LarsSegment>& segments, double& bytes) {
  int64_t n = 0;
  bytes = 0.0;
  for (const Shape& shape : shapes) {
    const int64_t numel = shape_numel(shape);
    const bool adapted = shape.size() > 1;
    segments.push_back({n, numel, adapted});
    bytes += static_cast<double>(numel) * sizeof(float) * (adapted ? 7 : 5);
    n = (n + numel + 15) / 16 * 16;
  }
  return n;
}

Tensor random_tensor(const Shape& shape, Device device, uint64_t seed, double low, double high) {
  Tensor t = Tensor::empty(shape, DType::f32, device);
  Generator gen(seed);
  uniform_(t, gen, low, high);
  return t;
}

// A fixed shuffle of 0..n-1 (a multiplicative step coprime with n), the same on every run.
std::vector<int64_t> permutation(int64_t n) {
  std::vector<int64_t> p(n);
  int64_t step = 37;
  while (std::gcd(step, n) != 1) ++step;
  for (int64_t i = 0; i < n; ++i) p[i] = (i * step + 11) % n;
  return p;
}

void bench_device(Device device, bool quick) {
  const bool gpu = device.is_cuda();
  const int64_t n = quick ? (1 << 20) : kResNet50MlpParameters;
  const int64_t batch = quick ? 16 : 128;
  const int repeats = gpu ? 20 : 3;
  const double param_bytes = static_cast<double>(n) * sizeof(float);

  Tensor key = random_tensor({n}, device, 1, -0.1, 0.1), query = random_tensor({n}, device, 2, -0.1, 0.1);
  Tensor params = random_tensor({n}, device, 3, -0.1, 0.1), grads = random_tensor({n}, device, 4, -0.01, 0.01);
  Tensor momentum = random_tensor({n}, device, 5, -0.01, 0.01);
  const Tensor images = random_tensor({batch, 3, 224, 224}, device, 6, -2.0, 2.0);
  const std::vector<int64_t> perm = permutation(batch);
  const Tensor index = Tensor::from_vector(perm, {batch}, device);

  struct Row {
    std::string op, shape;
    double seconds, gigabytes;
  };
  std::vector<Row> table;
  auto gbps = [&](const std::string& op, const std::string& shape, double bytes, const std::function<void()>& fn) {
    table.push_back({op, shape, median_seconds_per_call(device, repeats, fn), bytes / 1e9});
  };
  const std::string flat = fmt::format("({},)", n);
  gbps("momentum_update", flat, 3 * param_bytes, [&] { momentum_update(key, query, 0.999); });
  SgdStepOptions opt;  // MoCo v2's: momentum 0.9, weight decay 1e-4, and its lr 0.015
  const Tensor sgd_lr = Tensor::full({1}, 0.015, DType::f64, device);
  gbps("sgd_step", flat, 5 * param_bytes, [&] { sgd_step(params, grads, momentum, opt, sgd_lr, false); });
  {
    const std::vector<Shape> shapes = resnet50_trunk_shapes(quick ? 16 : 64);
    std::vector<LarsSegment> segments;
    double bytes = 0.0;
    const int64_t lars_n = lars_layout(shapes, segments, bytes);
    int64_t values = 0;
    for (const LarsSegment& seg : segments) values += seg.length;
    Tensor lars_params = random_tensor({lars_n}, device, 7, -0.1, 0.1);
    const Tensor lars_grads = random_tensor({lars_n}, device, 8, -0.01, 0.01);
    Tensor lars_momentum = random_tensor({lars_n}, device, 9, -0.01, 0.01);
    const LarsPlan plan(segments, lars_n, device);
    const LarsStepOptions lars_opt;  // SimCLR's: momentum 0.9, weight decay 1e-6, eta 0.001
    // 0.3 x 4096 / 256, its learning rate at batch 4096
    const Tensor lars_lr = Tensor::full({1}, 4.8, DType::f64, device);
    gbps("lars_step", fmt::format("resnet50: {} in {}", values, segments.size()), bytes,
         [&] { lars_step(lars_params, lars_grads, lars_momentum, plan, lars_opt, lars_lr); });
  }
  gbps("index_select", shape_str(images.shape()), 2.0 * static_cast<double>(images.numel()) * sizeof(float),
       [&] { index_select(images, index); });

  fmt::print("\n{} (f32)\n", device.str());
  fmt::print("{:<28} {:<28} {:>12} {:>12}\n", "op", "shape", "time (ms)", "rate");
  for (const Row& r : table)
    fmt::print("{:<28} {:<28} {:>12.3f} {:>8.2f} GB/s\n", r.op, r.shape, r.seconds * 1e3, r.gigabytes / r.seconds);
}

}  // namespace

int main(int argc, char** argv) { return bench::run_benchmark(argc, argv, "bench_flat_ops", bench_device); }
