// l2_normalize.h - each row divided by its Euclidean norm, with PyTorch's F.normalize semantics
// (p = 2, the norm clamped below by eps), the step that puts MoCo's embeddings on the unit sphere.
//
// Contract. x (rows, D) contiguous, n_r = ||x_r||_2 = sqrt(sum_d x_rd^2):
//     y_r = x_r / max(n_r, eps)                                          (eps = 1e-12 by default)
// Backward (dy of y's shape, dx overwritten):
//     n_r > eps:   dx_r = (dy_r - y_r (y_r . dy_r)) / n_r     (the tangent part of dy, scaled by 1/n)
//     n_r <= eps:  dx_r = dy_r / eps                           (the clamp is active: y = x / eps is linear)
// The forward saves y and the unclamped norms n (rows values). A row that is exactly zero gives
// y = 0 and dx = dy / eps, as PyTorch.
// Sums (n^2 and y . dy) accumulate in double on the CPU and on CUDA; the division and the update
// are in the element type. Types: float and double on both backends.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// ---- raw level: contiguous (rows, dim) arrays, T = float or double ----
template <typename T>
void l2_normalize_forward_cpu(T* y, T* norm, const T* x, int64_t rows, int64_t dim, double eps);
template <typename T>
void l2_normalize_backward_cpu(T* dx, const T* dy, const T* y, const T* norm, int64_t rows, int64_t dim, double eps);
template <typename T>
void l2_normalize_forward_cuda(int device, T* y, T* norm, const T* x, int64_t rows, int64_t dim, double eps);
template <typename T>
void l2_normalize_backward_cuda(int device, T* dx, const T* dy, const T* y, const T* norm, int64_t rows, int64_t dim,
                                double eps);

// ---- Tensor level ----
// x is (N, D), normalised along D, or (D,), one row. y has x's shape.
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);

}  // namespace engine
