// cross_entropy.h - softmax cross-entropy against class labels, averaged over the rows: the loss of
// the linear classifier in the linear evaluation protocol and of the supervised baseline (PyTorch's
// nn.CrossEntropyLoss with the default mean reduction, no weights, no label smoothing).
//
// Contract. logits z (N, C), labels y (N) of i64 values in [0, C), N >= 1, C >= 1:
//     m_i    = max_j z_ij
//     lse_i  = m_i + log sum_j exp(z_ij - m_i)        (the maximum first, so exp never overflows)
//     loss   = (1/N) sum_i (lse_i - z_i,y_i)           a scalar
// Backward, with g the upstream gradient of the loss (dlogits overwritten):
//     dz_ij  = g / N * (exp(z_ij - lse_i) - [j == y_i])
// Only the logits get a gradient. The forward saves lse (N values, in the logits' dtype) and
// keeps a reference to the contiguous logits and labels.
//
// Accuracy, on request (a training step that must not wait to read the logits back): correct (2)
// i64 = the rows whose label is the top-1 class, and among the top 5. A row's rank is the number of
// classes scoring higher than its label, plus those scoring the same with a lower index (ties go
// against the label, as ssl/eval/accuracy.h); a row counts at k when its rank is below k. A row
// with an out-of-range label, or whose label scores NaN, counts at neither.
//
// An out-of-range label: the raw level, on both backends, writes NaN as that row's loss (so the
// mean is NaN) and as that row's gradient. The Tensor level refuses it with an error on the CPU,
// where the labels are host memory; on CUDA it does not copy the labels back (that would wait for
// the stream every step), so the loss comes out NaN, which the training loops stop on.
//
// Determinism and precision. Every sum accumulates in double on both backends, in a fixed order:
// on the CPU row by row in index order; on CUDA one block per row (each thread a fixed strided
// share, then a fixed shuffle tree), and the mean over rows in one block the same way. No atomics,
// so a CUDA result repeats to the bit; it differs from the CPU's only by the order of the double
// sums, far below the final rounding to f32. Types: float and double on both backends.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// ---- raw level: contiguous arrays; labels in the same memory as the logits ----
// Forward: loss (1 value) and lse (N) written; correct (2 values), when not null, the top-1 and
// top-5 counts.
template <typename T>
void cross_entropy_forward_cpu(T* loss, T* lse, const T* logits, const int64_t* labels, int64_t N, int64_t C,
                               int64_t* correct = nullptr);
// Backward: dlogits (N, C) overwritten; dloss points to the one upstream gradient value.
template <typename T>
void cross_entropy_backward_cpu(T* dlogits, const T* dloss, const T* logits, const T* lse, const int64_t* labels,
                                int64_t N, int64_t C);
template <typename T>
void cross_entropy_forward_cuda(int device, T* loss, T* lse, const T* logits, const int64_t* labels, int64_t N,
                                int64_t C, int64_t* correct = nullptr);
template <typename T>
void cross_entropy_backward_cuda(int device, T* dlogits, const T* dloss, const T* logits, const T* lse,
                                 const int64_t* labels, int64_t N, int64_t C);

// ---- Tensor level ----
// logits (N, C) f32 or f64, any layout (copied to contiguous); labels (N) i64 on the logits'
// device, each in [0, C). Returns the mean over rows of -log softmax(logits)[i, labels[i]], a 0-d
// tensor of the logits' dtype on their device; differentiable in logits.
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);

struct CrossEntropyResult {
  Tensor loss;     // () as cross_entropy's, differentiable in logits
  Tensor correct;  // (2,) i64 on the logits' device: the top-1 and top-5 counts; nothing is read back
};
// cross_entropy and, from the same pass over the logits, the accuracy counts.
CrossEntropyResult cross_entropy_with_accuracy(const Tensor& logits, const Tensor& labels);

}  // namespace engine
