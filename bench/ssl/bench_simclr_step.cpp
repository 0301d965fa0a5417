// bench_simclr_step.cpp - one whole SimCLR training step on a fixed batch already on the device:
// the encoder's forward over both views (2N images), NT-Xent over the 2N rows, zero_grad, backward,
// LARS. Reports the median step time and images per second, for plain SimCLR and for the paper's
// step (hp masking with the encoder's own saliency, one hard negative per image).
// bench/torch_ref/bench_simclr_step.py times the same plain step written in PyTorch.
//
// The default is the GPU case: ResNet-50 with its 2048-2048-128 head at 224 pixels, batch 128,
// global BatchNorm, T = 0.2. --quick: ResNet-18 with the small stem at 32 pixels, batch 32.
//
//   bench_simclr_step [--device cpu|cuda|all] [--quick]
#include <fmt/format.h>

#include "bench/ops/bench_timing.h"
#include "engine/random.h"
#include "layers/optimizer.h"
#include "ssl/methods/simclr.h"

using namespace engine;

namespace {

struct StepCase {
  ssl::SimclrConfig simclr;
  int64_t batch = 128, size = 224;
  int repeats = 5;
};

StepCase step_case(bool quick, bool gpu) {
  StepCase c;
  c.simclr.arch = "resnet50";
  c.simclr.dim = 128;
  c.simclr.temperature = 0.2;
  if (quick) {
    c.simclr.arch = "resnet18";
    c.simclr.small_stem = true;
    c.batch = 32;
    c.size = 32;
  }
  c.repeats = gpu ? 10 : 1;
  return c;
}

void bench_step(Device device, Precision precision, const StepCase& c, const ssl::SaliencyGuidedMasking* masking) {
  ssl::SimCLR simclr(c.simclr, 0, device);
  simclr.encoder().set_activations(activation_format(precision, device));
  nn::Lars lars(simclr.encoder(), nn::LarsConfig{0.9, 1e-6, 0.001});
  Tensor view1 = Tensor::empty({c.batch, 3, c.size, c.size}), view2 = Tensor::empty({c.batch, 3, c.size, c.size});
  Generator gen(1);
  normal_(view1, gen);
  normal_(view2, gen);
  view1 = view1.to(device);
  view2 = view2.to(device);
  double loss = 0;
  int64_t step_index = 0;
  auto step = [&] {
    ssl::ContrastiveOutput out = simclr.train_forward({{view1, view2}, Tensor(), Tensor()}, masking, step_index++, nullptr);
    simclr.encoder().zero_grad();
    out.loss.backward();
    lars.step(0.3);
    loss = out.loss.item();
  };
  const double seconds = bench::median_seconds_per_call(device, c.repeats, step);
  fmt::print("{:<6} {:<9} {}mlp {:>4}px batch {:>3} ({} groups) {:<24}: {:8.1f} ms/step {:8.1f} img/s  (loss {:.3f})\n",
             device.str(), c.simclr.arch, c.simclr.small_stem ? "small-stem " : "", c.size, c.batch,
             c.simclr.bn_groups, masking ? "hp + 1 hard neg (online)" : "plain SimCLR + LARS", 1e3 * seconds,
             static_cast<double>(c.batch) / seconds, loss);
}

void bench_device(Device device, bool quick, Precision precision) {
  const StepCase c = step_case(quick, device.is_cuda());
  bench_step(device, precision, c, nullptr);
  ssl::MaskingConfig mc;
  mc.strategy = ssl::MaskStrategy::Hp;
  mc.saliency.kind = ssl::SaliencySourceKind::Online;
  mc.num_nonsem = 1;
  mc.bn_groups = c.simclr.bn_groups;
  const ssl::SaliencyGuidedMasking masking(mc, device);
  bench_step(device, precision, c, &masking);
}

}  // namespace

int main(int argc, char** argv) { return bench::run_benchmark(argc, argv, "bench_simclr_step", bench_device); }
