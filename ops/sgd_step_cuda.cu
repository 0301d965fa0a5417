// sgd_step_cuda.cu - torch.optim.SGD's update as one grid-stride kernel over the flat buffers,
// rounding exactly as the CPU reference (see sgd_step.h): fused where PyTorch fuses, nothing else.
#include "engine/cuda_common.cuh"
#include "engine/rounding.h"
#include "ops/sgd_step.h"
#include "ops/sgd_step_scalars.h"

namespace engine {

namespace {

// lr: the learning rate in device memory, read when the kernel runs (not when it was launched or
// captured in a graph); every thread loads the same 8 bytes, which the cache serves.
template <typename T>
__global__ void sgd_step_kernel(T* params, T* momentum_buffer, const T* grads, int64_t n, SgdScalars<T> s,
                                const double* lr) {
  const T minus_lr = sgd_minus_lr<T>(*lr);
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    const T p = params[i];
    T g = s.decay ? fma_rn(p, s.weight_decay, grads[i]) : grads[i];
    if (s.use_momentum) {
      const T buf = s.first_step ? g : fma_rn(g, s.grad_weight, mul_rn(momentum_buffer[i], s.momentum));
      momentum_buffer[i] = buf;
      g = s.nesterov ? fma_rn(buf, s.momentum, g) : buf;
    }
    params[i] = fma_rn(g, minus_lr, p);
  }
}

}  // namespace

template <typename T>
void sgd_step_cuda(int device, T* params, T* momentum_buffer, const T* grads, int64_t n, const SgdStepOptions& opt,
                   const double* lr, bool first_step) {
  if (n == 0) return;
  const SgdScalars<T> s(opt, first_step);
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("sgd_step_kernel", sgd_step_kernel<T>, cuda::elementwise_grid(n, cuda::kBlock), cuda::kBlock, 0, stream,
      params, momentum_buffer, grads, n, s, lr);
}

template void sgd_step_cuda<float>(int, float*, float*, const float*, int64_t, const SgdStepOptions&, const double*,
                                   bool);
template void sgd_step_cuda<double>(int, double*, double*, const double*, int64_t, const SgdStepOptions&,
                                    const double*, bool);

}  // namespace engine
