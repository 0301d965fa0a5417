// sgd_step.h - one step of torch.optim.SGD over flat buffers (METHOD.md section 6.7): every parameter
// of a model is a view of one flat buffer, its gradients of a second and its momentum of a third,
// so a whole ResNet-50 is updated by one launch.
//
// Per element, exactly PyTorch's single-tensor rule (wd weight decay, mu momentum, d dampening):
//     g   = grad + wd * param                                 (skipped when wd = 0)
//     buf = first_step ? g : mu * buf + (1 - d) * g           (skipped when mu = 0)
//     g   = nesterov ? g + mu * buf : buf                     (when mu != 0)
//     param = param - lr * g
// This is the buffer form: lr multiplies the buffer at each step, so when lr changes between
// steps it is not the same as v = mu v + lr g.
//
// Rounding, so that the result equals PyTorch's to the bit: each scalar is first rounded to the
// element type, and every "x + alpha * y" of the rule is one fused multiply-add with a single
// rounding, because that is what PyTorch's add(other, alpha) computes: its vectorised CPU kernel
// calls fmadd (measured: PyTorch 1.13 on AVX2/AVX-512 agrees with a fused result on every element
// and not with a separately rounded product), and its CUDA kernel's `self + alpha * other` is
// contracted to an FMA by nvcc. So, with fma(a, b, c) = round(a b + c):
//     g   = fma(param, wd, grad)
//     buf = fma(g, 1 - d, round(buf * mu))                    (1 - d = 1 makes it a plain sum)
//     g   = fma(buf, mu, g)                                   (nesterov)
//     param = fma(g, -lr, param)
// The CPU uses std::fma and CUDA __fmaf_rn/__fma_rn (correctly rounded on both), the product
// buf * mu is rounded on its own on both (-ffp-contract=off, __fmul_rn): CPU and CUDA agree to
// the bit. No autograd: params and buffer are written in place under NoGradGuard. Types f32, f64.
//
// The learning rate is not an argument by value: the kernels read it from a one-element f64 in the
// parameters' memory (`lr`), so that a step captured once in a CUDA graph and replayed follows the
// schedule: the caller writes the new value into that element before each replay (nn::Optimizer's
// set_lr, a fill kernel) and the captured launch, whose arguments are frozen, reads it. Each
// thread converts it to -lr in T exactly as a host-side scalar would be (round(-lr) once).
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// What stays fixed through training; the learning rate, which changes every step, is read from
// memory (see above).
struct SgdStepOptions {
  double momentum = 0.9;
  double weight_decay = 1e-4;
  double dampening = 0.0;
  bool nesterov = false;
};

// ---- raw level: n contiguous elements; momentum_buffer may be null when momentum is 0; lr points to
// one double in the same memory as the buffers (host for the CPU, the device for CUDA) ----
template <typename T>
void sgd_step_cpu(T* params, T* momentum_buffer, const T* grads, int64_t n, const SgdStepOptions& opt,
                  const double* lr, bool first_step);
template <typename T>
void sgd_step_cuda(int device, T* params, T* momentum_buffer, const T* grads, int64_t n, const SgdStepOptions& opt,
                   const double* lr, bool first_step);

// ---- Tensor level ----
// params, grads and momentum_buffer: one shape, dtype (f32 or f64) and device; params and the
// buffer contiguous and distinct (both are written in place); the buffer may be undefined when
// opt.momentum is 0. first_step: the buffer holds nothing yet and becomes the gradient (PyTorch
// creates it at the first step; here it is allocated by the caller, its contents ignored).
// Options are checked as torch.optim.SGD checks them (momentum, weight_decay >= 0; nesterov needs
// momentum > 0 and dampening 0). lr: a one-element f64 tensor on the parameters' device, in memory
// of its own (the kernels read it while they write params and buffer). Its value must be finite and
// >= 0; it is not checked here, since reading it would make the host wait for the device:
// nn::Optimizer::set_lr checks the value on the host before writing it.
void sgd_step(Tensor& params, const Tensor& grads, Tensor& momentum_buffer, const SgdStepOptions& opt,
              const Tensor& lr, bool first_step);

// The boundary check of a learning rate in memory, shared by the optimizer ops (sgd_step,
// lars_step): `lr` one element of dtype f64 on params' device, not sharing memory with params or
// (when defined) the buffer the step writes. Its value is not read.
void check_learning_rate_tensor(const Tensor& lr, const Tensor& params, const Tensor& written_buffer,
                                const char* op);

}  // namespace engine
