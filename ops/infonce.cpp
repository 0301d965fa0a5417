// infonce.cpp - checks, dispatch and autograd for the fused InfoNCE loss.
#include "ops/infonce.h"

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "ops/matmul.h"

namespace engine {

namespace {

struct InfoNceBackward : Node {
  Tensor q, k, queue, hard;           // contiguous, detached; hard undefined when n_h = 0
  Tensor lse, key_dots, queue_dots;  // the forward's, see infonce.h
  int64_t N = 0, D = 0, K = 0, n_h = 0;
  double alpha = 1.0, temperature = 1.0;
  // The backward turns queue_dots into probabilities in place; a second walk of a retained graph
  // recomputes them with the forward's GEMM.
  bool queue_dots_consumed = false;

  const char* name() const override { return "InfoNceBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    if (queue_dots_consumed) queue_dots = matmul(q, queue);
    const Tensor dloss = dout.contiguous();
    Tensor dq = Tensor::empty({N, D}, q.dtype(), q.device());
    if (q.device().is_cpu()) {
      dispatch_float(q.dtype(), "infonce backward", [&]<typename T>() {
        infonce_backward_cpu<T>(dq.data<T>(), queue_dots.data<T>(), dloss.data<T>(), lse.data<T>(), key_dots.data<T>(),
                                k.data<T>(), queue.data<T>(), hard.defined() ? hard.data<T>() : nullptr, N, D, K, n_h,
                                alpha, temperature);
      });
    } else {
      ENGINE_DISPATCH_CUDA(q.device(), "infonce backward",
                           infonce_backward_cuda(q.device().index, dq.data<float>(), queue_dots.data<float>(),
                                                 dloss.data<float>(), lse.data<float>(), key_dots.data<float>(),
                                                 k.data<float>(), queue.data<float>(),
                                                 hard.defined() ? hard.data<float>() : nullptr, N, D, K, n_h, alpha,
                                                 temperature));
    }
    queue_dots_consumed = true;
    return {dq};
  }
  void release_saved() override { q = k = queue = hard = lse = key_dots = queue_dots = Tensor(); }
};

void check_inputs(const Tensor& q, const Tensor& k, const Tensor& queue, const Tensor& hard,
                  const InfoNceOptions& opt) {
  check_defined(q, "infonce", "q");
  check_defined(k, "infonce", "k");
  check_defined(queue, "infonce", "queue");
  ENGINE_CHECK(q.dim() == 2, "infonce: expected queries q (N, D), found {}", q.str());
  const int64_t N = q.size(0), D = q.size(1);
  ENGINE_CHECK(k.shape() == q.shape(), "infonce: keys k must have the queries' shape (N, D) = {}, found k {}",
               shape_str(q.shape()), shape_str(k.shape()));
  ENGINE_CHECK(queue.dim() == 2 && queue.size(0) == D,
               "infonce: queue must be (D, K) with D = {} as q {} (one negative key per column), found queue {}", D,
               shape_str(q.shape()), shape_str(queue.shape()));
  ENGINE_CHECK(N >= 1 && D >= 1 && queue.size(1) >= 1,
               "infonce: needs at least one row, one feature and one queue column, found q {} and queue {}",
               shape_str(q.shape()), shape_str(queue.shape()));
  if (hard.defined()) {
    ENGINE_CHECK(hard.dim() == 3 && hard.size(0) == N && hard.size(2) == D,
                 "infonce: hard negatives must be (N, n_h, D) = ({}, n_h, {}) for q {}, found hard {}; pass an "
                 "undefined Tensor for none",
                 N, D, shape_str(q.shape()), shape_str(hard.shape()));
  }
  for (const Tensor* t : {&k, &queue, &hard}) {
    if (!t->defined()) continue;
    check_same_device(q, *t, "infonce");
    check_same_dtype(q, *t, "infonce");
  }
  ENGINE_CHECK(q.device().is_cpu() || q.dtype() == DType::f32,
               "infonce on CUDA computes in f32, found {} inputs; convert them with .to(DType::f32)",
               dtype_name(q.dtype()));
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  ENGINE_CHECK(N <= kIntMax && D <= kIntMax && queue.size(1) <= kIntMax,
               "infonce: sizes N = {}, D = {}, K = {} exceed the 32-bit sizes BLAS and the kernels accept", N, D,
               queue.size(1));
  ENGINE_CHECK(opt.temperature > 0.0 && std::isfinite(opt.temperature),
               "infonce: the temperature must be a positive number (the reference uses 0.2), found {}",
               opt.temperature);
  ENGINE_CHECK(std::isfinite(opt.alpha), "infonce: alpha must be finite, found {}", opt.alpha);
}

}  // namespace

InfoNceResult infonce(const Tensor& q, const Tensor& k, const Tensor& queue, const Tensor& hard,
                      const InfoNceOptions& opt) {
  check_inputs(q, k, queue, hard, opt);
  const int64_t N = q.size(0), D = q.size(1), K = queue.size(1), n_h = hard.defined() ? hard.size(1) : 0;
  const Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), queue_c = queue.detach().contiguous();
  const Tensor hard_c = n_h > 0 ? hard.detach().contiguous() : Tensor();
  const Device device = q.device();
  Tensor loss = Tensor::empty({}, q.dtype(), device);
  Tensor lse = Tensor::empty({N}, q.dtype(), device);
  Tensor key_dots = Tensor::empty({N, 1 + n_h}, q.dtype(), device);
  Tensor queue_dots = Tensor::empty({N, K}, q.dtype(), device);
  Tensor counts = Tensor::empty({2}, DType::i64, device);
  if (device.is_cpu()) {
    dispatch_float(q.dtype(), "infonce", [&]<typename T>() {
      infonce_forward_cpu<T>(loss.data<T>(), counts.data<int64_t>(), lse.data<T>(), key_dots.data<T>(), queue_dots.data<T>(),
                             qc.data<T>(), kc.data<T>(), queue_c.data<T>(), n_h > 0 ? hard_c.data<T>() : nullptr, N, D,
                             K, n_h, opt.alpha, opt.temperature);
    });
  } else {
    ENGINE_DISPATCH_CUDA(device, "infonce",
                         infonce_forward_cuda(device.index, loss.data<float>(), counts.data<int64_t>(),
                                              lse.data<float>(), key_dots.data<float>(), queue_dots.data<float>(),
                                              qc.data<float>(), kc.data<float>(), queue_c.data<float>(),
                                              n_h > 0 ? hard_c.data<float>() : nullptr, N, D, K, n_h, opt.alpha,
                                              opt.temperature));
  }
  if (autograd::needs_grad({&q})) {
    auto node = std::make_shared<InfoNceBackward>();
    node->q = qc;
    node->k = kc;
    node->queue = queue_c;
    node->hard = hard_c;
    node->lse = lse;
    node->key_dots = key_dots;
    node->queue_dots = queue_dots;
    node->N = N;
    node->D = D;
    node->K = K;
    node->n_h = n_h;
    node->alpha = opt.alpha;
    node->temperature = opt.temperature;
    autograd::record(node, loss, {&q});
  }
  return {loss, counts, N};
}

}  // namespace engine
