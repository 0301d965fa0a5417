// bench_resnet_step.cpp - one supervised-style training step of a bare ResNet on a fixed batch
// already on the device: forward, loss = mean of the logits, zero_grad, backward, SGD (momentum
// 0.9, weight decay 1e-4). Reports the median step time and images per second; this isolates the
// convolutional trunk that dominates a MoCo step. bench/torch_ref/bench_resnet_step.py times the
// same step with torchvision's model on the same shapes.
//
// Cases (the CPU comparison points of bench/results):
//   r18-64   ResNet-18, small stem, 64 px, batch 32       (--quick runs only this one)
//   r18-32   ResNet-18, small stem, 32 px, batch 32
//   r50-224  ResNet-50, ImageNet stem, 224 px, batch 32   (about 10 s a step on 2 CPU cores)
//
//   bench_resnet_step [--device cpu|cuda|all] [--quick] [--case r18-64|r18-32|r50-224|all] [--batch N]
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bench/ops/bench_timing.h"
#include "engine/random.h"
#include "layers/optimizer.h"
#include "layers/resnet.h"
#include "ops/ops.h"

using namespace engine;

namespace {

struct StepCase {
  std::string name, arch;
  bool small_stem = true;
  int64_t size = 64, batch = 32;
};

const std::vector<StepCase>& all_cases() {
  static const std::vector<StepCase> cases = {
      {"r18-64", "resnet18", true, 64, 32}, {"r18-32", "resnet18", true, 32, 32}, {"r50-224", "resnet50", false, 224, 32}};
  return cases;
}

void bench_step(Device device, Precision precision, const StepCase& c) {
  nn::ResNetConfig rc;
  rc.arch = c.arch;
  rc.stem = c.small_stem ? nn::ResNetStem::SmallImage : nn::ResNetStem::ImageNet;
  auto model = nn::make_resnet(rc, 0);
  model->flatten_parameters();
  model->to(device);
  model->set_activations(activation_format(precision, device));
  nn::Sgd sgd(*model, {});
  Tensor images = Tensor::empty({c.batch, 3, c.size, c.size});
  Generator gen(1);
  normal_(images, gen);
  images = images.to(device);
  double loss = 0;
  auto step = [&] {
    const Tensor out = mean((*model)(images));
    model->zero_grad();
    out.backward();
    sgd.step(0.1);
    loss = out.item();
  };
  // A GPU step takes milliseconds, a CPU step seconds: one call per round on the CPU.
  const double seconds = bench::median_seconds_per_call(device, device.is_cuda() ? 10 : 1, step);
  fmt::print("{:<6} {:<9} {:<11} {:>4}px batch {:>3}: {:8.1f} ms/step {:8.1f} img/s  (loss {:.4f})\n", device.str(),
             c.arch, c.small_stem ? "small-stem" : "", c.size, c.batch, 1e3 * seconds,
             static_cast<double>(c.batch) / seconds, loss);
}

}  // namespace

int main(int argc, char** argv) {
  // The shared command line plus --case and --batch, so the slow ResNet-50 case runs only when asked.
  std::string which_case = "all";
  int64_t batch = 0;
  std::vector<char*> shared_args = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--case" && i + 1 < argc) {
      which_case = argv[++i];
    } else if (arg == "--batch" && i + 1 < argc) {
      batch = std::stoll(argv[++i]);
    } else {
      shared_args.push_back(argv[i]);
    }
  }
  const bool quick = std::find_if(shared_args.begin(), shared_args.end(),
                                  [](const char* a) { return std::string(a) == "--quick"; }) != shared_args.end();
  if (quick && which_case == "all") which_case = "r18-64";
  std::vector<StepCase> cases;
  for (StepCase c : all_cases()) {
    if (which_case != "all" && which_case != c.name) continue;
    if (batch > 0) c.batch = batch;
    cases.push_back(c);
  }
  if (cases.empty()) {
    fmt::print(stderr, "bench_resnet_step: unknown --case '{}'; expected r18-64, r18-32, r50-224 or all\n", which_case);
    return 2;
  }
  // use_passive_openmp_wait re-executes with the full argv, so it must see the original one.
  use_passive_openmp_wait(argv);
  shared_args.push_back(nullptr);
  return bench::run_benchmark(static_cast<int>(shared_args.size()) - 1, shared_args.data(), "bench_resnet_step",
                              bench::BenchDevice([&](Device device, bool, Precision precision) {
                                for (const StepCase& c : cases) bench_step(device, precision, c);
                              }));
}
