// nt_xent.h - SimCLR's NT-Xent loss with hard negatives, fused: the 2B x 2B similarity matrix is
// the one large array, made by one GEMM and turned into the gradient's weights in place.
//
// Contract. z (2B, D): rows 0 .. B-1 are view 1's embeddings of the B images, rows B .. 2B-1 view
// 2's, so rows i and i + B are the two views of image i (each other's positive). hard (B, n_h, D)
// holds the hard negatives t_{i,h} of image i (n_h >= 0), appended to both of its rows. Temperature
// T > 0, weight alpha. For row r (0 <= r < 2B) let p(r) = (r + B) mod 2B be its positive and
// i(r) = r mod B its image. Row r has 2B - 1 + n_h logits:
//     s_rj   = z_r . z_j / T                     every j != r (the self-similarity is masked out,
//                                                as SimCLR masks the diagonal); positive j = p(r)
//     s_r,h  = alpha z_r . t_{i(r),h} / T        h = 1 .. n_h
//     lse_r  = log (sum_{j != r} exp(s_rj) + sum_h exp(s_r,h))   (the row maximum subtracted first)
//     loss   = (1/2B) sum_r (lse_r - s_r,p(r))   cross-entropy with label p(r), mean over the 2B rows
// Accuracy: rank_r = the number of the row's other logits (j != r, p(r), and the hard ones) strictly
// greater than the positive; top-1 counts rows with rank_r < 1, top-5 rows with rank_r < 5. A
// negative that ties the positive does not outrank it (ties go to the positive). The comparison is
// made before the division by T, which orders them the same way: z_r . z_j, and alpha z_r . t_{i,h}
// for a hard negative, against z_r . z_p(r). Nothing assumes unit vectors, although SimCLR passes
// normalised embeddings.
//
// Gradient: with respect to z only; hard is a constant (detached even when it requires grad), as
// mined hard negatives are. With P the row softmax (P_rj over j != r, P_r,h over the hard logits),
// g = dloss / (T 2B), and G (2B, 2B) with G_rj = P_rj - [j = p(r)] for j != r and G_rr = 0:
//     dz = g (G + G^T) z,   plus for row r:  g alpha sum_h P_r,h t_{i(r),h}
// z appears on both sides of each dot product z_r . z_j, hence G + G^T: row r's logits move z_r
// (G z) and every z_j they name (G^T z).
//
// How it runs. Forward: one GEMM S = z z^T (2B x 2B, not scaled), then one pass per row that forms
// the row's hard dot products (hard_dots), the row maximum over j != r, the log-sum-exp, the row loss
// and the rank, and a reduction over the rows for the loss (summed in double) and the two counts.
// Backward: one pass over S turns it in place into W = g (G + G^T): each pair (r, j), r < j, reads
// S_rj and S_jr, and writes W_rj = W_jr, with 0 on the diagonal. Then one GEMM dz = W z, and per row
// the hard-negative axpys g alpha P_r,h t_{i(r),h}. Symmetrising in the pass that must touch every
// element anyway costs nothing there, and saves the second GEMM (2 (2B)^2 D FLOPs) that
// G z + G^T z would take, with the (2B, D) scratch and the add that would combine them.
// Memory: the forward saves (2B)^2 elements (S: 1 MiB in f32 at 2B = 512), lse (2B) and hard_dots
// (2B, n_h), and keeps references to z and hard.
//
// The backward reads z and hard again: they must still hold the forward's values then. A retained
// graph walked a second time recomputes S, which the first walk overwrote.
//
// Types: the CPU reference is templated on float and double; its own sums (the hard dot products,
// the exponentials, the mean, the axpys) accumulate in double, the GEMMs are OpenBLAS's (the naive
// loop without BLAS). CUDA is f32 only: cuBLAS GEMMs (TF32 as the global switch says), the row
// reductions in f32 over a block per row; only the final mean over the 2B row losses sums in double.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// ---- raw level: contiguous arrays; hard and hard_dots may be null when n_h = 0 ----
// Forward outputs: loss (1 value), correct (2: the top-1 and top-5 counts), lse (2B), hard_dots
// (2B, n_h: z_r . t_{i(r),h}, not scaled), sim (2B, 2B: z z^T, not scaled). B is the number of
// images, so z has 2B rows. On CUDA every pointer is device memory.
template <typename T>
void nt_xent_forward_cpu(T* loss, int64_t* correct, T* lse, T* hard_dots, T* sim, const T* z, const T* hard,
                         int64_t B, int64_t D, int64_t n_h, double alpha, double temperature);
// Backward: dz (2B, D) is overwritten; sim is the forward's and is consumed (overwritten with
// g (G + G^T)); dloss points to the one upstream gradient value.
template <typename T>
void nt_xent_backward_cpu(T* dz, T* sim, const T* dloss, const T* lse, const T* hard_dots, const T* z,
                          const T* hard, int64_t B, int64_t D, int64_t n_h, double alpha, double temperature);
void nt_xent_forward_cuda(int device, float* loss, int64_t* correct, float* lse, float* hard_dots, float* sim,
                          const float* z, const float* hard, int64_t B, int64_t D, int64_t n_h, double alpha,
                          double temperature);
void nt_xent_backward_cuda(int device, float* dz, float* sim, const float* dloss, const float* lse,
                           const float* hard_dots, const float* z, const float* hard, int64_t B, int64_t D,
                           int64_t n_h, double alpha, double temperature);

// ---- Tensor level ----
struct NtXentOptions {
  double temperature = 0.2;
  double alpha = 1.0;  // weight of the hard-negative logits, applied before the temperature
};

struct NtXentResult {
  Tensor loss;     // () scalar on z's device; autograd reaches z only
  Tensor correct;  // (2,) i64 on z's device: the rows whose positive is the top-1 logit, and those
                   // whose positive is within the top 5; left there so a step need not wait for it
  int64_t rows = 0;  // 2B
};

// z (2B, D) is the two views stacked, view 1 first; hard (B, n_h, D) or undefined (n_h = 0).
// Inputs that are not contiguous are copied. Nothing is read back to the host.
NtXentResult nt_xent(const Tensor& z, const Tensor& hard, const NtXentOptions& opt = {});

}  // namespace engine
