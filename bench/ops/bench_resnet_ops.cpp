// bench_resnet_ops.cpp - times the ops ResNet spends its time in, at ResNet-50 shapes, and reports
// each against what bounds it:
//   conv2d       TFLOP/s: 2 N K P Q C R S / time for the forward; the backward (data and filter)
//                is twice that work, so forward+backward counts 3x;
//   batchnorm2d  GB/s of the least traffic the pass needs (forward: read x, write y; backward:
//                read dy and x, write dx), and that rate as a share of the device's copy bandwidth
//                measured in the same run (clone of a 256 MiB tensor: read + write);
//   batchnorm2d_relu, batchnorm2d_add_relu (training) at ResNet-50's BatchNorm shapes, each next
//                to the unfused ops it replaces (batchnorm2d then relu; batchnorm2d, add, relu),
//                both rows rated by the fused op's least traffic (forward: x[, residual], y;
//                backward: dy, y, x, dx[, d_residual]), the fused row with the time ratio.
// bench/torch_ref/bench_resnet_ops.py times the same ops and shapes in PyTorch (cudnn.benchmark
// on, TF32 off), so the two tables can be read side by side.
//
// Method as bench_ops: one warm-up call, then `repeats` calls between two synchronisations,
// median of 5 rounds.
//
//   bench_resnet_ops [--device cpu|cuda|all] [--quick]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/random.h"
#include "bench/ops/bench_timing.h"
#include "ops/ops.h"

using namespace engine;
using bench::median_seconds_per_call;

namespace {

Tensor random_tensor(const Shape& shape, Device device, DType dtype, MemoryFormat format, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::f32, device);
  Generator gen(seed);
  uniform_(t, gen, -1.0, 1.0);
  return t.to(dtype).contiguous(format);
}

struct ConvShape {
  const char* name;
  int64_t C, H, K, R, stride, pad;
};
// Where ResNet-50 spends its convolution time (input side H, square).
constexpr ConvShape kConvShapes[] = {
    {"stem 7x7/2", 3, 224, 64, 7, 2, 3},
    {"layer1 3x3", 64, 56, 64, 3, 1, 1},
    {"layer1 1x1 expand", 64, 56, 256, 1, 1, 0},
    {"layer3 3x3", 256, 14, 256, 3, 1, 1},
};

struct Row {
  std::string op, shape;
  double seconds, amount;
  const char* unit;
  std::string note;
};

void print_table(const std::string& title, const std::vector<Row>& table) {
  fmt::print("\n{}\n{:<46} {:<22} {:>11} {:>12}  {}\n", title, "op", "shape", "time (ms)", "rate", "");
  for (const Row& r : table)
    fmt::print("{:<46} {:<22} {:>11.3f} {:>8.2f} {:<7} {}\n", r.op, r.shape, r.seconds * 1e3, r.amount / r.seconds,
               r.unit, r.note);
}

// The fused BatchNorm epilogues against the unfused ops, training, at ResNet-50's BatchNorm shapes
// (batch 256 on a GPU): layer1's bottleneck 64 and 256 channels at 56x56, the last stage's 2048 at
// 7x7. On the CPU the batch is the other rows' (4).
void bench_fused_batchnorm(std::vector<Row>& table, Device device, bool quick, int repeats, DType dtype,
                           MemoryFormat format, const std::string& tag, double copy_gbps) {
  const bool gpu = device.is_cuda();
  const int64_t N = quick ? 2 : (gpu ? 256 : 4);
  struct BnShape {
    int64_t C, H;
  };
  for (const BnShape& s : {BnShape{64, 56}, BnShape{256, 56}, BnShape{2048, 7}}) {
    const int64_t H = quick ? std::min<int64_t>(s.H, 14) : s.H;
    Tensor x = random_tensor({N, s.C, H, H}, device, dtype, format, 7);
    Tensor residual = random_tensor({N, s.C, H, H}, device, dtype, format, 8);
    const DType param_dtype = dtype == DType::bf16 ? DType::f32 : dtype;
    Tensor gamma = Tensor::ones({s.C}, param_dtype, device), beta = Tensor::zeros({s.C}, param_dtype, device);
    Tensor running_mean = Tensor::zeros({s.C}, param_dtype, device);
    Tensor running_var = Tensor::ones({s.C}, param_dtype, device);
    const double act_gb = static_cast<double>(x.numel()) * dtype_size(dtype) / 1e9;
    const std::string shape = shape_str(x.shape());
    // Unfused first, then fused; both rated by the fused op's traffic `gb`.
    auto pair = [&](const std::string& op, double gb, const std::function<void()>& unfused,
                    const std::function<void()>& fused) {
      const double su = median_seconds_per_call(device, repeats, unfused);
      const double sf = median_seconds_per_call(device, repeats, fused);
      const std::string unfused_op = op == "relu" ? "batchnorm2d+relu" : "batchnorm2d+add+relu";
      const std::string fused_op = op == "relu" ? "batchnorm2d_relu" : "batchnorm2d_add_relu";
      const std::string pass = x.requires_grad() ? " fwd+bwd train " : " fwd train ";
      table.push_back({unfused_op + pass + tag, shape, su, gb, "GB/s",
                       fmt::format("{:.0f}% of copy", 100.0 * gb / su / copy_gbps)});
      table.push_back({fused_op + pass + tag, shape, sf, gb, "GB/s",
                       fmt::format("{:.0f}% of copy, {:.2f}x the unfused speed", 100.0 * gb / sf / copy_gbps, su / sf)});
    };
    {
      NoGradGuard no_grad;
      pair("relu", 2 * act_gb, [&] { relu(batchnorm2d(x, gamma, beta, running_mean, running_var)); },
           [&] { batchnorm2d_relu(x, gamma, beta, running_mean, running_var); });
      pair("add_relu", 3 * act_gb,
           [&] { relu(add(batchnorm2d(x, gamma, beta, running_mean, running_var), residual)); },
           [&] { batchnorm2d_add_relu(x, residual, gamma, beta, running_mean, running_var); });
    }
    x.requires_grad_(true);
    residual.requires_grad_(true);
    gamma.requires_grad_(true);
    beta.requires_grad_(true);
    const Tensor seed = random_tensor(x.shape(), device, dtype, format, 9);
    pair("relu", 6 * act_gb,
         [&] { relu(batchnorm2d(x, gamma, beta, running_mean, running_var)).backward(seed); },
         [&] { batchnorm2d_relu(x, gamma, beta, running_mean, running_var).backward(seed); });
    pair("add_relu", 8 * act_gb,
         [&] { relu(add(batchnorm2d(x, gamma, beta, running_mean, running_var), residual)).backward(seed); },
         [&] { batchnorm2d_add_relu(x, residual, gamma, beta, running_mean, running_var).backward(seed); });
  }
}

void bench_device(Device device, bool quick) {
  const bool gpu = device.is_cuda();
  const int64_t N = quick ? 2 : (gpu ? 64 : 4);
  const int repeats = gpu ? 10 : 1;
  std::vector<Row> table;

  // The copy bandwidth the BatchNorm rates are compared with.
  const int64_t copy_elems = quick ? (1 << 20) : (gpu ? (1 << 26) : (1 << 24));
  const Tensor big = random_tensor({copy_elems}, device, DType::f32, MemoryFormat::NCHW, 1);
  const double copy_s = median_seconds_per_call(device, repeats, [&] { big.clone(); });
  const double copy_gbps = 2.0 * copy_elems * 4 / copy_s / 1e9;
  table.push_back({"copy (clone)", fmt::format("({},)", copy_elems), copy_s, 2.0 * copy_elems * 4 / 1e9, "GB/s", ""});

  struct Variant {
    DType dtype;
    MemoryFormat format;
  };
  std::vector<Variant> variants = {{DType::f32, MemoryFormat::NCHW}};
  if (gpu) variants.insert(variants.end(), {{DType::f32, MemoryFormat::NHWC}, {DType::bf16, MemoryFormat::NHWC}});

  for (const Variant& v : variants) {
    const std::string tag = fmt::format("{} {}", dtype_name(v.dtype), v.format == MemoryFormat::NHWC ? "NHWC" : "NCHW");
    for (const ConvShape& s : kConvShapes) {
      const int64_t H = quick ? std::min<int64_t>(s.H, 28) : s.H;
      Tensor x = random_tensor({N, s.C, H, H}, device, v.dtype, v.format, 2);
      Tensor w = random_tensor({s.K, s.C, s.R, s.R}, device, v.dtype, v.format, 3);
      const Conv2dOptions opt = Conv2dOptions::square(s.stride, s.pad);
      const Conv2dGeometry g = Conv2dGeometry::make(x.shape(), w.shape(), opt);
      const double tflop = 2.0 * N * s.K * g.P * g.Q * s.C * s.R * s.R / 1e12;
      const std::string shape = fmt::format("N{} C{} {}x{} K{}", N, s.C, H, H, s.K);
      {
        NoGradGuard no_grad;
        table.push_back({fmt::format("conv2d fwd {} {}", s.name, tag), shape,
                         median_seconds_per_call(device, repeats, [&] { conv2d(x, w, Tensor(), opt); }), tflop,
                         "TFLOP/s", ""});
      }
      x.requires_grad_(true);
      w.requires_grad_(true);
      const Tensor seed = random_tensor({N, s.K, g.P, g.Q}, device, v.dtype, v.format, 4);
      table.push_back({fmt::format("conv2d fwd+bwd {} {}", s.name, tag), shape,
                       median_seconds_per_call(device, repeats, [&] { conv2d(x, w, Tensor(), opt).backward(seed); }),
                       3 * tflop, "TFLOP/s", ""});
    }

    // BatchNorm at the largest ResNet-50 activation: layer1's (N, 256, 56, 56).
    const int64_t C = 256, H = quick ? 14 : 56;
    Tensor x = random_tensor({N, C, H, H}, device, v.dtype, v.format, 5);
    const DType param_dtype = gpu ? DType::f32 : v.dtype;
    Tensor gamma = Tensor::ones({C}, param_dtype, device), beta = Tensor::zeros({C}, param_dtype, device);
    Tensor running_mean = Tensor::zeros({C}, param_dtype, device), running_var = Tensor::ones({C}, param_dtype, device);
    const double act_gb = static_cast<double>(x.numel()) * dtype_size(v.dtype) / 1e9;
    const std::string shape = shape_str(x.shape());
    auto bn_row = [&](const std::string& op, double gb, const std::function<void()>& fn) {
      const double s = median_seconds_per_call(device, repeats, fn);
      table.push_back({op + " " + tag, shape, s, gb, "GB/s", fmt::format("{:.0f}% of copy", 100.0 * gb / s / copy_gbps)});
    };
    {
      NoGradGuard no_grad;
      bn_row("batchnorm2d fwd train", 2 * act_gb, [&] { batchnorm2d(x, gamma, beta, running_mean, running_var); });
      BatchNormOptions eval;
      eval.training = false;
      bn_row("batchnorm2d fwd eval", 2 * act_gb,
             [&] { batchnorm2d(x, gamma, beta, running_mean, running_var, eval); });
    }
    x.requires_grad_(true);
    gamma.requires_grad_(true);
    const Tensor seed = random_tensor(x.shape(), device, v.dtype, v.format, 6);
    bn_row("batchnorm2d fwd+bwd train", 5 * act_gb,
           [&] { batchnorm2d(x, gamma, beta, running_mean, running_var).backward(seed); });

    bench_fused_batchnorm(table, device, quick, repeats, v.dtype, v.format, tag, copy_gbps);
  }
  print_table(fmt::format("{} ({})", device.str(), gpu ? "TF32 off, cuDNN algorithms measured once per shape"
                                                          : "OpenBLAS GEMM, OpenMP loops"),
              table);
}

}  // namespace

int main(int argc, char** argv) { return bench::run_benchmark(argc, argv, "bench_resnet_ops", bench_device); }
