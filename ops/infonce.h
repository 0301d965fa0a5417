// infonce.h - MoCo's contrastive loss with hard negatives (METHOD.md section 7), fused: the logits of a
// row are never concatenated, and the only (N, K) array is the one GEMM output the backward needs.
//
// Contract. q (N, D) queries, k (N, D) their positive keys, queue (D, K) whose column j is a
// negative key, hard (N, n_h, D) the hard negatives t_{i,h} (n_h >= 0), temperature T > 0, weight
// alpha. Row i has 1 + K + n_h logits:
//     z_i0     = q_i . k_i / T                          the positive (column 0)
//     z_i,j    = q_i . queue[:, j - 1] / T              j = 1 .. K
//     z_i,K+h  = alpha q_i . t_{i,h} / T                h = 1 .. n_h
//     lse_i    = log sum_j exp(z_ij)                    (the row maximum is subtracted first)
//     loss     = (1/N) sum_i (lse_i - z_i0)             cross-entropy with label 0, mean over rows
// Accuracy: rank_i = #{j >= 1 : z_ij > z_i0}; top-1 counts rows with rank_i < 1, top-5 rows with
// rank_i < 5. A negative that ties the positive does not outrank it (ties go to the positive). The
// comparison is made on the dot products before the division by T, which orders them the same way.
// Nothing assumes unit vectors, although MoCo passes normalised q, k, t and queue.
//
// Gradient: with respect to q only; k, queue and hard are constants (detached even when they
// require grad). With p_i = softmax(z_i) and g = dloss / (T N):
//     dq_i = g [ (p_i0 - 1) k_i + sum_j p_ij queue[:, j - 1] + alpha sum_h p_i,K+h t_{i,h} ]
//
// How it runs. Forward: one GEMM queue_dots = q queue (N, K), then one pass per row that forms the
// positive and hard dot products (key_dots), the row max, the log-sum-exp, the row loss and the
// rank, and finally a reduction over rows for the loss and the two counts. Backward: the saved
// queue_dots become g p_ij in place (i.e. dloss/(T N) times the probabilities of columns 1..K),
// one GEMM dq = (g p) queue^T, then per row the two axpys g (p_i0 - 1) k_i and g alpha p_i,K+h t_i,h.
// Memory: the forward saves N*K elements (queue_dots: 32 MiB in f32 at N = 128, K = 65536), plus
// lse (N) and key_dots (N, 1 + n_h), and keeps references to q, k, queue and hard.
//
// The backward reads k, queue and hard again: they must still hold the forward's values then.
// MoCo enqueues the batch's keys between forward and backward (METHOD.md 7.3): pass a copy of the
// queue, as the reference passes queue.clone().detach(), or enqueue after the backward.
//
// Types: the CPU reference is templated on float and double; sums of its own (the dot products,
// the exponentials, the mean) accumulate in double, the GEMMs are OpenBLAS's (the naive loop
// without BLAS). CUDA is f32 only: cuBLAS GEMMs (TF32 as the global switch says), and the row
// reductions in f32, each thread over a strided share of the row, then a tree across the block;
// only the final mean over the N row losses sums in double.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// ---- raw level: contiguous arrays; hard may be null when n_h = 0 ----
// Forward outputs: loss (1 value), correct (2: the top-1 and top-5 counts), lse (N),
// key_dots (N, 1 + n_h: q_i . k_i, then q_i . t_{i,h}, not scaled), queue_dots (N, K: q queue, not
// scaled). On CUDA every pointer is device memory.
template <typename T>
void infonce_forward_cpu(T* loss, int64_t* correct, T* lse, T* key_dots, T* queue_dots, const T* q, const T* k,
                         const T* queue, const T* hard, int64_t N, int64_t D, int64_t K, int64_t n_h, double alpha,
                         double temperature);
// Backward: dq (N, D) is overwritten; queue_dots is the forward's and is consumed (overwritten
// with g p_ij); dloss points to the one upstream gradient value.
template <typename T>
void infonce_backward_cpu(T* dq, T* queue_dots, const T* dloss, const T* lse, const T* key_dots, const T* k,
                          const T* queue, const T* hard, int64_t N, int64_t D, int64_t K, int64_t n_h, double alpha,
                          double temperature);
void infonce_forward_cuda(int device, float* loss, int64_t* correct, float* lse, float* key_dots, float* queue_dots,
                          const float* q, const float* k, const float* queue, const float* hard, int64_t N, int64_t D,
                          int64_t K, int64_t n_h, double alpha, double temperature);
void infonce_backward_cuda(int device, float* dq, float* queue_dots, const float* dloss, const float* lse,
                           const float* key_dots, const float* k, const float* queue, const float* hard, int64_t N,
                           int64_t D, int64_t K, int64_t n_h, double alpha, double temperature);

// ---- Tensor level ----
struct InfoNceOptions {
  double temperature = 0.2;
  double alpha = 1.0;  // weight of the hard-negative logits, applied before the temperature
};

struct InfoNceResult {
  Tensor loss;     // () scalar on q's device; autograd reaches q only
  Tensor correct;  // (2,) i64 on q's device: the rows whose positive is the top-1 logit, and those
                   // whose positive is within the top 5; left there so a step need not wait for it
  int64_t rows = 0;  // N
};

// hard may be undefined (n_h = 0). Inputs that are not contiguous are copied. Nothing is read back
// to the host.
InfoNceResult infonce(const Tensor& q, const Tensor& k, const Tensor& queue, const Tensor& hard,
                      const InfoNceOptions& opt = {});

}  // namespace engine
