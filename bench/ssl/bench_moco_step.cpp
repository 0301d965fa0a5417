// bench_moco_step.cpp - one whole MoCo v2 training step on a fixed batch already on the device:
// f_q forward, momentum update, f_k forward with shuffle BN, InfoNCE against the queue, enqueue,
// zero_grad, backward, SGD. Reports the median step time and images per second, for plain MoCo v2
// and for the paper's step (hp masking with the key encoder's saliency, one hard negative).
// bench/torch_ref/bench_moco_step.py times the reference's model code on the same batch shape.
//
// The default is the GPU case scripts/gpu-check.sh times: ResNet-50 with the MLP head at 224 pixels, batch 128 in 4
// virtual GPUs of 32, K = 65536, T = 0.2. --quick: ResNet-18 with the small stem at 32 pixels,
// batch 32, K = 4096 (minutes on a small CPU instead of hours).
//
//   bench_moco_step [--device cpu|cuda|all] [--quick] [--precision fp32|tf32|bf16] [--batch N]
//                   [--cuda-graphs auto|on|off]
// On a GPU each line ends with the peak of allocated memory during the timed steps. Both steps run
// as a CUDA graph on a GPU unless --cuda-graphs off (ssl/run/step_graph.h: as the trainer runs
// them).
#include <fmt/format.h>

#include "bench/ops/bench_timing.h"
#include "engine/allocator.h"
#include "engine/random.h"
#include "layers/optimizer.h"
#include "ssl/methods/moco.h"
#include "ssl/run/step_graph.h"

using namespace engine;

namespace {

struct StepCase {
  ssl::MocoConfig moco;
  int64_t batch = 128, size = 224;
  int repeats = 5;
};

// --batch N: the global batch instead of the case's (the bf16 goal is stated at 256).
int64_t g_batch_override = 0;
ssl::CudaGraphs g_cuda_graphs = ssl::CudaGraphs::Auto;

StepCase step_case(bool quick, bool gpu) {
  StepCase c;
  c.moco.arch = "resnet50";
  c.moco.mlp = true;
  c.moco.dim = 128;
  c.moco.queue_size = 65536;
  c.moco.temperature = 0.2;
  c.moco.bn_groups = 4;
  if (quick) {
    c.moco.arch = "resnet18";
    c.moco.small_stem = true;
    c.moco.queue_size = 4096;
    c.batch = 32;
    c.size = 32;
  }
  if (g_batch_override > 0) c.batch = g_batch_override;
  c.repeats = gpu ? 10 : 1;
  return c;
}

// One step as the trainer runs it: plain MoCo v2, or (masking given) the paper's step with
// saliency from the key encoder, hp masking and one hard negative.
void bench_step(Device device, Precision precision, const StepCase& c, const ssl::SaliencyGuidedMasking* masking) {
  ssl::MoCo moco(c.moco, 0, device);
  moco.encoder_q().set_activations(activation_format(precision, device));
  moco.encoder_k().set_activations(activation_format(precision, device));
  nn::Sgd sgd(moco.encoder_q(), {});
  Tensor query = Tensor::empty({c.batch, 3, c.size, c.size}), key = Tensor::empty({c.batch, 3, c.size, c.size});
  Generator gen(1);
  normal_(query, gen);
  normal_(key, gen);
  query = query.to(device);
  key = key.to(device);
  const bool graphs = ssl::use_cuda_graphs(
      g_cuda_graphs, ssl::why_step_cannot_be_captured(device, 1, /*host_indexed_hard_negatives=*/false),
      "bench_moco_step");
  ssl::StepGraph step_graph(device, graphs);
  Tensor step_number = Tensor::zeros({1}, DType::i64, device);  // (1) i64: what the shuffle BN reads
  sgd.set_lr(0.015);
  Tensor last_loss;  // read once the timing is over: a read each step would wait for the device
  int64_t step_index = 0;
  auto step = [&] {
    step_number.fill_(static_cast<double>(step_index));
    const Tensor step_loss = step_graph.run({query, key}, [&](const std::vector<Tensor>& views) {
      ssl::ContrastiveOutput out = moco.train_forward({views, Tensor(), step_number}, masking, step_index, nullptr);
      moco.encoder_q().zero_grad();
      out.loss.backward();
      sgd.step();
      return std::vector<Tensor>{out.loss.detach()};
    }).front();
    ++step_index;
    last_loss = step_loss;
  };
  // Peak memory of the steps alone (model, queue, batch and activations): the allocator's peak of
  // allocated bytes, the figure PyTorch's max_memory_allocated() gives its twin.
  if (device.is_cuda()) cuda_allocator(device.index).reset_peak();
  const double seconds = bench::median_seconds_per_call(device, c.repeats, step);
  const double loss = last_loss.item();
  const std::string peak =
      device.is_cuda()
          ? fmt::format("  peak {:.0f} MiB", cuda_allocator(device.index).stats().peak_allocated_bytes / 1048576.0)
          : std::string();
  fmt::print("{:<6} {:<9} {}{} {:>4}px batch {:>3} ({} groups) K {:>5} {:<26}: {:8.1f} ms/step {:8.1f} img/s  (loss "
             "{:.3f}){}{}\n",
             device.str(), c.moco.arch, c.moco.small_stem ? "small-stem " : "", c.moco.mlp ? "mlp" : "", c.size,
             c.batch, c.moco.bn_groups, c.moco.queue_size, masking ? "hp + 1 hard neg (momentum)" : "plain MoCo v2",
             1e3 * seconds, static_cast<double>(c.batch) / seconds, loss, peak,
             step_graph.captured() ? "  cuda graph" : "");
}

void bench_device(Device device, bool quick, Precision precision) {
  const StepCase c = step_case(quick, device.is_cuda());
  bench_step(device, precision, c, nullptr);
  ssl::MaskingConfig mc;
  mc.strategy = ssl::MaskStrategy::Hp;
  mc.num_nonsem = 1;
  mc.bn_groups = c.moco.bn_groups;
  const ssl::SaliencyGuidedMasking masking(mc, device);
  bench_step(device, precision, c, &masking);
}

}  // namespace

int main(int argc, char** argv) {
  // The shared command line plus --batch N and --cuda-graphs auto|on|off.
  std::vector<char*> shared_args = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--batch" && i + 1 < argc) {
      g_batch_override = std::stoll(argv[++i]);
    } else if (std::string(argv[i]) == "--cuda-graphs" && i + 1 < argc) {
      g_cuda_graphs = ssl::parse_cuda_graphs(argv[++i]);
    } else {
      shared_args.push_back(argv[i]);
    }
  }
  // use_passive_openmp_wait re-executes with the full argv, so it must see the original one.
  use_passive_openmp_wait(argv);
  shared_args.push_back(nullptr);
  return bench::run_benchmark(static_cast<int>(shared_args.size()) - 1, shared_args.data(), "bench_moco_step",
                              bench::BenchDevice(bench_device));
}
