// batchnorm2d.h - batch normalisation over (N, H, W) per channel, written by hand on both backends
// (no cuDNN), with PyTorch's semantics.
//
// Contract. x (N, C, H, W), M = N H W values per channel, eps = 1e-5 by default:
//   training:  mean_c = (1/M) sum x,   var_c = (1/M) sum (x - mean_c)^2   (biased, two passes)
//              invstd_c = 1 / sqrt(var_c + eps),   xhat = (x - mean_c) invstd_c
//              y = gamma_c xhat + beta_c
//              running_mean = (1 - momentum) running_mean + momentum mean_c
//              running_var  = (1 - momentum) running_var  + momentum var_c M / (M - 1)  (unbiased)
//   eval:      the same y with mean_c = running_mean, invstd_c = 1 / sqrt(running_var + eps);
//              nothing is updated.
// Backward (dy of y's shape; dx, dgamma, dbeta overwritten):
//   dbeta_c = sum dy,   dgamma_c = sum dy xhat
//   training:  dx = gamma_c invstd_c (dy - dbeta_c / M - xhat dgamma_c / M)
//   eval:      dx = gamma_c invstd_c dy          (the statistics are constants)
// The forward saves x, gamma, and the per-channel mean and invstd it used.
//
// Layouts: NCHW or NHWC (ChannelLayout), as the input comes; y and dx take x's layout.
// Types: CPU float or double with parameters and statistics of the same type, accumulating in
// double. CUDA: x, y, dy, dx in f32 or bf16; gamma, beta, running statistics, saved statistics
// always f32; sums in f32 (see channel_reduce.cuh).
// Training needs M > 1 (a variance of one value is undefined), as PyTorch.
// Ghost BatchNorm (spec sections 6.3 and 8: the reference's 4 GPUs x 32 images become 4 groups of
// 32 on one device): with `groups` G > 1 in training, the N images form G consecutive groups of
// N/G, each normalised with its own statistics, exactly as G GPUs without synchronised BatchNorm.
// The Tensor level calls the raw level once per group (a group of consecutive images is a
// contiguous slice in both layouts); dgamma and dbeta sum over the groups. The running statistics
// follow the first group only (what DDP's broadcast of rank 0's buffers amounts to: the
// reference's behaviour, spec O12) or the average of the groups' updates.
#pragma once

#include <cstdint>

#include "engine/tensor.h"
#include "ops/channel_layout.h"

namespace engine {

// ---- raw level, CPU, T = float or double ----
template <typename T>
void batchnorm2d_forward_train_cpu(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var, const T* x,
                                   const T* gamma, const T* beta, ChannelLayout layout, double momentum, double eps);
template <typename T>
void batchnorm2d_forward_eval_cpu(T* y, T* save_invstd, const T* x, const T* gamma, const T* beta,
                                  const T* running_mean, const T* running_var, ChannelLayout layout, double eps);
// mean and invstd: what the forward used (saved statistics in training, running ones in eval).
template <typename T>
void batchnorm2d_backward_cpu(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                              const T* invstd, ChannelLayout layout, bool training);

// ---- raw level, CUDA: activations f32 or bf16 (`dtype`), everything per channel f32 ----
void batchnorm2d_forward_train_cuda(int device, void* y, float* save_mean, float* save_invstd, float* running_mean,
                                    float* running_var, const void* x, const float* gamma, const float* beta,
                                    DType dtype, ChannelLayout layout, double momentum, double eps);
void batchnorm2d_forward_eval_cuda(int device, void* y, float* save_invstd, const void* x, const float* gamma,
                                   const float* beta, const float* running_mean, const float* running_var,
                                   DType dtype, ChannelLayout layout, double eps);
void batchnorm2d_backward_cuda(int device, void* dx, float* dgamma, float* dbeta, const void* dy, const void* x,
                               const float* gamma, const float* mean, const float* invstd, DType dtype,
                               ChannelLayout layout, bool training);

// ---- Tensor level ----
// Which groups of a ghost batch move the running statistics (spec O12).
enum class GhostRunningStats { FirstGroup, Average };

struct BatchNormOptions {
  bool training = true;
  double momentum = 0.1;
  double eps = 1e-5;
  int64_t groups = 1;  // ghost groups in training; must divide N; ignored in eval
  GhostRunningStats running_stats = GhostRunningStats::FirstGroup;
};
// running_mean and running_var (C) are updated in place in training (pass undefined tensors to
// skip the update, as track_running_stats=False); gamma and beta (C) are the affine parameters.
Tensor batchnorm2d(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                   Tensor running_var, const BatchNormOptions& opt = {});

}  // namespace engine
