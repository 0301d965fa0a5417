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
// double (and bf16 at the Tensor level, see below). CUDA: x, y, dy, dx in f32 or bf16; gamma,
// beta, running statistics, saved statistics always f32; sums in double (see channel_reduce.cuh),
// combined in a fixed order (deterministic).
// Training needs M > 1 (a variance of one value is undefined), as PyTorch.
//
// Ghost BatchNorm (METHOD.md sections 6.3 and 8: the reference's 4 GPUs x 32 images become 4 groups of
// 32 on one device): with `groups` G > 1 in training, the N images form G consecutive groups of
// N/G, each normalised with its own statistics, exactly as G GPUs without synchronised BatchNorm.
// Then M = (N/G) H W, and in the formulas above "per channel" reads "per (group, channel)":
//   save_mean, save_invstd (G, C): row g holds group g's statistics
//   dx of group g uses group g's mean, invstd and sums;  dbeta_c, dgamma_c sum over all groups
//   running statistics (GhostRunningStats): FirstGroup moves them by group 0's mean and variance
//   only (what DDP's broadcast of rank 0's buffers amounts to: the reference's behaviour, METHOD.md
//   O12); Average by the groups' mean of them, which equals averaging the G updates:
//   mean_g((1 - m) r + m s_g) = (1 - m) r + m mean_g(s_g).
// The raw level takes G itself (all groups in one call, on CUDA one set of launches); G must
// divide N. Eval has no groups: it uses the running statistics for every image.
//
// Fused epilogues (ResNet's BN -> ReLU and BN -> + shortcut -> ReLU, as the fastest trainers fuse
// them), training and eval, ghost groups, layouts and types as above:
//   batchnorm2d_relu:      y = relu(bn(x))
//   batchnorm2d_add_relu:  y = relu(bn(x) + residual)    residual: x's shape and dtype, any layout
//                          (brought to x's; y takes x's layout)
//   relu(v) = v <= 0 ? 0 : v, so NaN stays NaN (as ops/elementwise_unary).
// Backward, reading the saved y for the mask instead of recomputing it:
//   dz = dy (y > 0);  then batchnorm2d's backward with dz for dy (dgamma, dbeta, dx);
//   d_residual = dz (add variant).
// The forward also saves y. On the CPU bn(x) is rounded to T before the add, so the fused ops
// equal the unfused composition to the bit. On CUDA the epilogue runs in f32 on the f32 value of
// bn(x) with one rounding to the activation type at the end (in f32 that is the composition's
// result; in bf16 it skips the composition's rounding of bn(x)), and the backward reads dy, y and
// x once in each of its two passes (no dz tensor is made).
//
// bf16 on the CPU (the Tensor level only): x (and residual) bf16 with f32 parameters runs the f32
// reference on x.to(f32) and rounds y to bf16, so the CPU rounds where CUDA does: y, dx and
// d_residual in bf16, dgamma, dbeta and the statistics in f32. One dtype rule on both devices:
// activations f32, bf16 or (CPU only) f64; parameters and statistics f32 under bf16
// activations, else the activations' dtype.
#pragma once

#include <cstdint>

#include "engine/tensor.h"
#include "ops/channel_layout.h"

namespace engine {

// Which groups of a ghost batch move the running statistics (METHOD.md O12).
enum class GhostRunningStats { FirstGroup, Average };

// ---- raw level, CPU, T = float or double ----
// Training: save_mean, save_invstd (groups, C) written; running_mean, running_var (C) updated in
// place, or null when not tracked.
template <typename T>
void batchnorm2d_forward_train_cpu(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var, const T* x,
                                   const T* gamma, const T* beta, ChannelLayout layout, int64_t groups,
                                   GhostRunningStats running_stats, double momentum, double eps);
template <typename T>
void batchnorm2d_forward_eval_cpu(T* y, T* save_invstd, const T* x, const T* gamma, const T* beta,
                                  const T* running_mean, const T* running_var, ChannelLayout layout, double eps);
// mean and invstd (groups, C): what the forward used (saved statistics in training, running ones
// in eval, with groups 1); dgamma and dbeta (C), summed over the groups; any of dx, dgamma, dbeta
// may be null (not wanted).
template <typename T>
void batchnorm2d_backward_cpu(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                              const T* invstd, ChannelLayout layout, int64_t groups, bool training);

// The fused epilogues: residual in x's layout, or null for batchnorm2d_relu. The backward's y is
// the forward's output (the mask); d_residual may be null (not wanted, or batchnorm2d_relu).
template <typename T>
void batchnorm2d_relu_forward_train_cpu(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var,
                                        const T* x, const T* residual, const T* gamma, const T* beta,
                                        ChannelLayout layout, int64_t groups, GhostRunningStats running_stats,
                                        double momentum, double eps);
template <typename T>
void batchnorm2d_relu_forward_eval_cpu(T* y, T* save_invstd, const T* x, const T* residual, const T* gamma,
                                       const T* beta, const T* running_mean, const T* running_var,
                                       ChannelLayout layout, double eps);
template <typename T>
void batchnorm2d_relu_backward_cpu(T* dx, T* d_residual, T* dgamma, T* dbeta, const T* dy, const T* y, const T* x,
                                   const T* gamma, const T* mean, const T* invstd, ChannelLayout layout,
                                   int64_t groups, bool training);

// ---- raw level, CUDA: activations f32 or bf16 (`dtype`), everything per channel f32 ----
void batchnorm2d_forward_train_cuda(int device, void* y, float* save_mean, float* save_invstd, float* running_mean,
                                    float* running_var, const void* x, const float* gamma, const float* beta,
                                    DType dtype, ChannelLayout layout, int64_t groups, GhostRunningStats running_stats,
                                    double momentum, double eps);
void batchnorm2d_forward_eval_cuda(int device, void* y, float* save_invstd, const void* x, const float* gamma,
                                   const float* beta, const float* running_mean, const float* running_var,
                                   DType dtype, ChannelLayout layout, double eps);
void batchnorm2d_backward_cuda(int device, void* dx, float* dgamma, float* dbeta, const void* dy, const void* x,
                               const float* gamma, const float* mean, const float* invstd, DType dtype,
                               ChannelLayout layout, int64_t groups, bool training);
// The fused epilogues, arguments as on the CPU (residual, y, dy, dx, d_residual in `dtype`).
void batchnorm2d_relu_forward_train_cuda(int device, void* y, float* save_mean, float* save_invstd,
                                         float* running_mean, float* running_var, const void* x,
                                         const void* residual, const float* gamma, const float* beta, DType dtype,
                                         ChannelLayout layout, int64_t groups, GhostRunningStats running_stats,
                                         double momentum, double eps);
void batchnorm2d_relu_forward_eval_cuda(int device, void* y, float* save_invstd, const void* x, const void* residual,
                                        const float* gamma, const float* beta, const float* running_mean,
                                        const float* running_var, DType dtype, ChannelLayout layout, double eps);
void batchnorm2d_relu_backward_cuda(int device, void* dx, void* d_residual, float* dgamma, float* dbeta,
                                    const void* dy, const void* y, const void* x, const float* gamma,
                                    const float* mean, const float* invstd, DType dtype, ChannelLayout layout,
                                    int64_t groups, bool training);

// ---- Tensor level ----
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
// relu(batchnorm2d(x, ...)) in one op (see "Fused epilogues" above).
Tensor batchnorm2d_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                        Tensor running_var, const BatchNormOptions& opt = {});
// relu(batchnorm2d(x, ...) + residual) in one op; gradients reach x, residual, gamma and beta.
Tensor batchnorm2d_add_relu(const Tensor& x, const Tensor& residual, const Tensor& gamma, const Tensor& beta,
                            Tensor running_mean, Tensor running_var, const BatchNormOptions& opt = {});

}  // namespace engine
