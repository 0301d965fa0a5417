// cmd_demo.cpp - `moco demo`: the engine end to end on a small problem. A two-layer student
// network learns to imitate a fixed random teacher network by gradient descent on the squared
// error: tensors, matmul, broadcasting, relu, reductions, autograd and in-place updates, on the
// CPU or a GPU. The loss must fall; the command fails if it does not.
#include <fmt/format.h>

#include <chrono>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/random.h"
#include "ops/ops.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace moco_cli {

namespace {

using engine::Tensor;

struct DemoOptions {
  DeviceFlags device;
  int steps = 300;
  int batch = 256;
  int hidden = 64;
  double lr = 0.05;
  uint64_t seed = 0;
};

Tensor random_normal(const engine::Shape& shape, double std, engine::Generator& gen, engine::Device device) {
  Tensor t = Tensor::empty(shape, engine::DType::f32, device);
  engine::normal_(t, gen, 0.0, std);
  return t;
}

// A two-layer perceptron: relu(x W1 + b1) W2 + b2.
Tensor mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
  return engine::matmul(engine::relu(engine::matmul(x, w1) + b1), w2) + b2;  // (N, out)
}

void run_demo(const DemoOptions& opt) {
  ENGINE_CHECK(opt.device.precision != "bf16",
               "moco demo: --precision bf16 is the ResNet's mixed precision (bf16 activations); the demo trains a "
               "small f32 MLP, so give fp32 (or tf32 on a GPU)");
  const engine::Device device = opt.device.resolve();
  engine::Generator gen(opt.seed, /*stream=*/1);
  constexpr int64_t kIn = 16, kOut = 4, kTeacherHidden = 32;

  // The teacher: fixed weights that define the function to learn.
  const Tensor t_w1 = random_normal({kIn, kTeacherHidden}, 0.5, gen, device);
  const Tensor t_b1 = random_normal({kTeacherHidden}, 0.1, gen, device);
  const Tensor t_w2 = random_normal({kTeacherHidden, kOut}, 0.5, gen, device);
  const Tensor t_b2 = random_normal({kOut}, 0.1, gen, device);

  // The student: its parameters require grad.
  std::vector<Tensor> params = {random_normal({kIn, opt.hidden}, 1.0 / std::sqrt(double(kIn)), gen, device),
                                Tensor::zeros({opt.hidden}, engine::DType::f32, device),
                                random_normal({opt.hidden, kOut}, 1.0 / std::sqrt(double(opt.hidden)), gen, device),
                                Tensor::zeros({kOut}, engine::DType::f32, device)};
  for (Tensor& p : params) p.requires_grad_();

  fmt::print("demo: a {}-{}-{} student learns a {}-{}-{} teacher on {}, batch {}, lr {}\n", kIn, opt.hidden, kOut, kIn,
             kTeacherHidden, kOut, device.str(), opt.batch, opt.lr);
  double first_loss = 0.0, loss_value = 0.0;
  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < opt.steps; ++step) {
    const Tensor x = random_normal({opt.batch, kIn}, 1.0, gen, device);  // (N, kIn), fresh every step
    Tensor target;
    {
      engine::NoGradGuard no_grad;
      target = mlp(x, t_w1, t_b1, t_w2, t_b2);  // (N, kOut)
    }
    const Tensor err = mlp(x, params[0], params[1], params[2], params[3]) - target;
    const Tensor loss = engine::mean(err * err);  // () mean squared error
    for (Tensor& p : params) p.set_grad(Tensor());
    loss.backward();
    {
      engine::NoGradGuard no_grad;  // plain gradient descent: p -= lr * dL/dp
      for (Tensor& p : params) engine::add_(p, p.grad() * -opt.lr);
    }
    if (step == 0 || (step + 1) % 50 == 0 || step + 1 == opt.steps) {
      loss_value = loss.item();
      if (step == 0) first_loss = loss_value;
      fmt::print("  step {:4d}  loss {:.5f}\n", step + 1, loss_value);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("demo: loss fell from {:.4f} to {:.4f} in {} steps ({:.0f} steps/s on {})\n", first_loss, loss_value,
             opt.steps, opt.steps / seconds, device.str());
  if (device.is_cuda()) fmt::print("{}\n", engine::cuda_allocator(device.index).stats_string());
  ENGINE_CHECK(loss_value < 0.5 * first_loss,
               "demo: expected the loss to fall below half its first value, it went from {} to {}", first_loss,
               loss_value);
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto opt = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand("demo", "train a small MLP with the engine's autograd (a smoke test you can read)");
  add_device_flags(cmd, opt->device);
  cmd->add_option("--steps", opt->steps, "gradient steps")->capture_default_str()->check(CLI::Range(1, 100000000));
  cmd->add_option("-b,--batch-size", opt->batch, "examples per step")->capture_default_str()->check(CLI::Range(1, 100000000));
  cmd->add_option("--hidden", opt->hidden, "student hidden width")->capture_default_str()->check(CLI::Range(1, 100000000));
  cmd->add_option("--lr", opt->lr, "learning rate")->capture_default_str();
  cmd->add_option("--seed", opt->seed, "random seed")->capture_default_str();
  cmd->callback([opt] { run_demo(*opt); });
}

}  // namespace moco_cli
