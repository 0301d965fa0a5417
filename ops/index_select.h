// index_select.h - rows of a tensor picked by an index along dim 0. Shuffle-BN (METHOD.md section 6.3)
// uses it to permute the key images before the key encoder and to un-permute the keys after.
//
// Contract. x (R, ...) is viewed as R rows of S elements (S the product of its other dims; R >= 0),
// index (I,) of i64 values in [0, R), repeats allowed:
//     out[i, :] = x[index[i], :]                                    out (I, ...)
//     dx[r, :]  = sum over the i with index[i] = r, in increasing i, of dout[i, :]
//                 (0 for a row never picked; dx is overwritten)
// Backward gathers rather than scatters: it reads the inverse of the index (for each row r the
// i that picked it, ascending, as a CSR table built once on the host by invert_index), so every
// dx element is one thread's sum in a fixed order: deterministic without atomics, and the CPU and
// CUDA results are the same bits. Forward saves only that table.
//
// Types: f32, f64 and bf16 (a copy forward; bf16 gradients are summed in f32 and rounded once).
// The Tensor level checks every index value on the host, unless told the index is Trusted (below).
// The index may live on the CPU even when x is on a GPU, and is then checked where it is, before one
// copy to the device: host memory read by the host, which waits for nothing and is not counted as
// a host read (engine/tensor.h); an index already on the GPU is copied back to be checked, which
// synchronises the stream and is counted.
// Shuffle BN makes its permutations on the GPU and passes them as Trusted: nothing is read back.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// ---- raw level: x, out, dout, dx contiguous rows of row_size elements ----
template <typename T>
void index_select_forward_cpu(T* out, const T* x, const int64_t* index, int64_t rows_out, int64_t row_size);
template <typename T>
void index_select_forward_cuda(int device, T* out, const T* x, const int64_t* index, int64_t rows_out,
                               int64_t row_size);

// The inverse of index, on the host: the output rows that picked input row r are
// sources[row_starts[r] .. row_starts[r + 1]), ascending. row_starts holds rows_in + 1 values,
// sources rows_out. index values must already be checked to lie in [0, rows_in).
void invert_index(int64_t* row_starts, int64_t* sources, const int64_t* index, int64_t rows_out, int64_t rows_in);

template <typename T>
void index_select_backward_cpu(T* dx, const T* dout, const int64_t* row_starts, const int64_t* sources,
                               int64_t rows_in, int64_t row_size);
template <typename T>
void index_select_backward_cuda(int device, T* dx, const T* dout, const int64_t* row_starts, const int64_t* sources,
                                int64_t rows_in, int64_t row_size);

// ---- Tensor level ----
// How the Tensor level treats the index values. Checked: each is checked on the host (see above).
// Trusted: not checked and not read, for an index the engine made itself and knows to be in range
// (shuffle BN's randperm and its inverse, made on x's device): nothing waits for the GPU. Trusted
// is refused when x needs a gradient, whose table is built on the host.
enum class IndexCheck { Checked, Trusted };

// x: dim >= 1, f32/f64/bf16, any layout (copied to contiguous); index: 1-D i64 on the CPU or x's device.
Tensor index_select(const Tensor& x, const Tensor& index, IndexCheck check = IndexCheck::Checked);

}  // namespace engine
