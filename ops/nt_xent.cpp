// nt_xent.cpp - checks, dispatch and autograd for the fused NT-Xent loss.
#include "ops/nt_xent.h"

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "ops/matmul.h"

namespace engine {

namespace {

struct NtXentBackward : Node {
  Tensor z, hard;              // contiguous, detached; hard undefined when n_h = 0
  Tensor lse, hard_dots, sim;  // the forward's, see nt_xent.h; hard_dots undefined when n_h = 0
  int64_t B = 0, D = 0, n_h = 0;
  double alpha = 1.0, temperature = 1.0;
  // The backward turns sim into the gradient's weights in place; a second walk of a retained
  // graph recomputes it with the forward's GEMM.
  bool sim_consumed = false;

  const char* name() const override { return "NtXentBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    if (sim_consumed) sim = matmul(z, z, false, true);
    const Tensor dloss = dout.contiguous();
    Tensor dz = Tensor::empty({2 * B, D}, z.dtype(), z.device());
    if (z.device().is_cpu()) {
      dispatch_float(z.dtype(), "nt_xent backward", [&]<typename T>() {
        nt_xent_backward_cpu<T>(dz.data<T>(), sim.data<T>(), dloss.data<T>(), lse.data<T>(),
                                n_h > 0 ? hard_dots.data<T>() : nullptr, z.data<T>(),
                                n_h > 0 ? hard.data<T>() : nullptr, B, D, n_h, alpha, temperature);
      });
    } else {
      ENGINE_DISPATCH_CUDA(z.device(), "nt_xent backward",
                           nt_xent_backward_cuda(z.device().index, dz.data<float>(), sim.data<float>(),
                                                 dloss.data<float>(), lse.data<float>(),
                                                 n_h > 0 ? hard_dots.data<float>() : nullptr, z.data<float>(),
                                                 n_h > 0 ? hard.data<float>() : nullptr, B, D, n_h, alpha,
                                                 temperature));
    }
    sim_consumed = true;
    return {dz};
  }
  void release_saved() override { z = hard = lse = hard_dots = sim = Tensor(); }
};

void check_inputs(const Tensor& z, const Tensor& hard, const NtXentOptions& opt) {
  check_defined(z, "nt_xent", "z");
  ENGINE_CHECK(z.dim() == 2,
               "nt_xent: expected embeddings z (2B, D), the B rows of view 1 then the B rows of view 2, found {}",
               z.str());
  const int64_t rows = z.size(0), D = z.size(1);
  ENGINE_CHECK(rows % 2 == 0,
               "nt_xent: expected an even number of rows in z (2B, D): view 1's B embeddings then view 2's, "
               "found z {} with {} rows; stack the two views of every image along dim 0",
               shape_str(z.shape()), rows);
  ENGINE_CHECK(rows >= 2 && D >= 1,
               "nt_xent: needs at least one image (two rows) and one feature, found z {}", shape_str(z.shape()));
  const int64_t B = rows / 2;
  if (hard.defined()) {
    ENGINE_CHECK(hard.dim() == 3 && hard.size(0) == B && hard.size(2) == D,
                 "nt_xent: hard negatives must be (B, n_h, D) = ({}, n_h, {}) for z {} (one set per image, shared "
                 "by its two views), found hard {}; pass an undefined Tensor for none",
                 B, D, shape_str(z.shape()), shape_str(hard.shape()));
    check_same_device(z, hard, "nt_xent");
    check_same_dtype(z, hard, "nt_xent");
  }
  ENGINE_CHECK(z.device().is_cpu() || z.dtype() == DType::f32,
               "nt_xent on CUDA computes in f32, found {} inputs; convert them with .to(DType::f32)",
               dtype_name(z.dtype()));
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  const int64_t n_h = hard.defined() ? hard.size(1) : 0;
  ENGINE_CHECK(rows <= kIntMax && D <= kIntMax && n_h <= kIntMax,
               "nt_xent: sizes 2B = {}, D = {}, n_h = {} exceed the 32-bit sizes BLAS and the kernels accept", rows,
               D, n_h);
  ENGINE_CHECK(opt.temperature > 0.0 && std::isfinite(opt.temperature),
               "nt_xent: the temperature must be a positive number (SimCLR uses 0.1 to 0.5), found {}",
               opt.temperature);
  ENGINE_CHECK(std::isfinite(opt.alpha), "nt_xent: alpha must be finite, found {}", opt.alpha);
}

}  // namespace

NtXentResult nt_xent(const Tensor& z, const Tensor& hard, const NtXentOptions& opt) {
  check_inputs(z, hard, opt);
  const int64_t B = z.size(0) / 2, D = z.size(1), n_h = hard.defined() ? hard.size(1) : 0;
  const Tensor zc = z.detach().contiguous();
  const Tensor hard_c = n_h > 0 ? hard.detach().contiguous() : Tensor();
  const Device device = z.device();
  Tensor loss = Tensor::empty({}, z.dtype(), device);
  Tensor lse = Tensor::empty({2 * B}, z.dtype(), device);
  Tensor hard_dots = n_h > 0 ? Tensor::empty({2 * B, n_h}, z.dtype(), device) : Tensor();
  Tensor sim = Tensor::empty({2 * B, 2 * B}, z.dtype(), device);
  Tensor counts = Tensor::empty({2}, DType::i64, device);
  if (device.is_cpu()) {
    dispatch_float(z.dtype(), "nt_xent", [&]<typename T>() {
      nt_xent_forward_cpu<T>(loss.data<T>(), counts.data<int64_t>(), lse.data<T>(),
                             n_h > 0 ? hard_dots.data<T>() : nullptr, sim.data<T>(), zc.data<T>(),
                             n_h > 0 ? hard_c.data<T>() : nullptr, B, D, n_h, opt.alpha, opt.temperature);
    });
  } else {
    ENGINE_DISPATCH_CUDA(device, "nt_xent",
                         nt_xent_forward_cuda(device.index, loss.data<float>(), counts.data<int64_t>(),
                                              lse.data<float>(), n_h > 0 ? hard_dots.data<float>() : nullptr,
                                              sim.data<float>(), zc.data<float>(),
                                              n_h > 0 ? hard_c.data<float>() : nullptr, B, D, n_h, opt.alpha,
                                              opt.temperature));
  }
  if (autograd::needs_grad({&z})) {
    auto node = std::make_shared<NtXentBackward>();
    node->z = zc;
    node->hard = hard_c;
    node->lse = lse;
    node->hard_dots = hard_dots;
    node->sim = sim;
    node->B = B;
    node->D = D;
    node->n_h = n_h;
    node->alpha = opt.alpha;
    node->temperature = opt.temperature;
    autograd::record(node, loss, {&z});
  }
  return {loss, counts, 2 * B};
}

}  // namespace engine
