// reduce_dim_cpu.cpp - reference loops for sum and mean over a dim, accumulating in double.
#include <algorithm>
#include <vector>

#include "ops/reduce_dim.h"

namespace engine {

template <typename T>
void reduce_dim_forward_cpu(ReduceOp op, T* out, const T* x, int64_t O, int64_t D, int64_t I) {
  if (I == 1) {  // reducing the innermost dim: each output is the sum of one contiguous row
    for (int64_t o = 0; o < O; ++o) {
      double acc = 0.0;
      for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(x[o * D + d]);
      out[o] = static_cast<T>(op == ReduceOp::Mean ? acc / static_cast<double>(D) : acc);
    }
    return;
  }
  std::vector<double> acc(I);
  for (int64_t o = 0; o < O; ++o) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t d = 0; d < D; ++d) {  // row by row, so memory is read in order
      const T* row = x + (o * D + d) * I;
      for (int64_t i = 0; i < I; ++i) acc[i] += static_cast<double>(row[i]);
    }
    for (int64_t i = 0; i < I; ++i)
      out[o * I + i] = static_cast<T>(op == ReduceOp::Mean ? acc[i] / static_cast<double>(D) : acc[i]);
  }
}

template <typename T>
void reduce_dim_backward_cpu(ReduceOp op, T* dx, const T* dout, int64_t O, int64_t D, int64_t I) {
  const T scale = op == ReduceOp::Mean ? T(1) / static_cast<T>(D) : T(1);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t i = 0; i < I; ++i) dx[(o * D + d) * I + i] = dout[o * I + i] * scale;
}

template void reduce_dim_forward_cpu<float>(ReduceOp, float*, const float*, int64_t, int64_t, int64_t);
template void reduce_dim_forward_cpu<double>(ReduceOp, double*, const double*, int64_t, int64_t, int64_t);
template void reduce_dim_backward_cpu<float>(ReduceOp, float*, const float*, int64_t, int64_t, int64_t);
template void reduce_dim_backward_cpu<double>(ReduceOp, double*, const double*, int64_t, int64_t, int64_t);

}  // namespace engine
