// index_select_cpu.cpp - the reference loops of index_select, and the host-side index inversion
// that both backwards read.
#include <cstring>
#include <type_traits>
#include <vector>

#include "ops/index_select.h"

namespace engine {

namespace {

// What gradients are summed in: double for double, f32 for f32 and bf16.
template <typename T>
using Accumulator = std::conditional_t<std::is_same_v<T, double>, double, float>;

}  // namespace

template <typename T>
void index_select_forward_cpu(T* out, const T* x, const int64_t* index, int64_t rows_out, int64_t row_size) {
  if (row_size == 0) return;
  for (int64_t i = 0; i < rows_out; ++i)
    std::memcpy(out + i * row_size, x + index[i] * row_size, static_cast<size_t>(row_size) * sizeof(T));
}

void invert_index(int64_t* row_starts, int64_t* sources, const int64_t* index, int64_t rows_out, int64_t rows_in) {
  // A counting sort of i by index[i]: counts, prefix sums, then the i in increasing order, which
  // keeps each row's list ascending (the order the backward adds in).
  for (int64_t r = 0; r <= rows_in; ++r) row_starts[r] = 0;
  for (int64_t i = 0; i < rows_out; ++i) ++row_starts[index[i] + 1];
  for (int64_t r = 0; r < rows_in; ++r) row_starts[r + 1] += row_starts[r];
  std::vector<int64_t> next(row_starts, row_starts + rows_in);
  for (int64_t i = 0; i < rows_out; ++i) sources[next[index[i]]++] = i;
}

template <typename T>
void index_select_backward_cpu(T* dx, const T* dout, const int64_t* row_starts, const int64_t* sources,
                               int64_t rows_in, int64_t row_size) {
  using Acc = Accumulator<T>;
  // Row by row (contiguous reads of each source row), each element summed in the order of
  // sources: 0 + dout[first] + dout[second] + ..., as the CUDA kernel sums it.
#pragma omp parallel if (rows_in * row_size > (1 << 16))
  {
    std::vector<Acc> sum(static_cast<size_t>(row_size));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows_in; ++r) {
      for (int64_t j = 0; j < row_size; ++j) sum[j] = Acc(0);
      for (int64_t k = row_starts[r]; k < row_starts[r + 1]; ++k) {
        const T* src = dout + sources[k] * row_size;
        for (int64_t j = 0; j < row_size; ++j) sum[j] += convert_element<Acc>(src[j]);
      }
      for (int64_t j = 0; j < row_size; ++j) dx[r * row_size + j] = convert_element<T>(sum[j]);
    }
  }
}

template void index_select_forward_cpu<float>(float*, const float*, const int64_t*, int64_t, int64_t);
template void index_select_forward_cpu<double>(double*, const double*, const int64_t*, int64_t, int64_t);
template void index_select_forward_cpu<bf16>(bf16*, const bf16*, const int64_t*, int64_t, int64_t);
template void index_select_backward_cpu<float>(float*, const float*, const int64_t*, const int64_t*, int64_t, int64_t);
template void index_select_backward_cpu<double>(double*, const double*, const int64_t*, const int64_t*, int64_t,
                                                int64_t);
template void index_select_backward_cpu<bf16>(bf16*, const bf16*, const int64_t*, const int64_t*, int64_t, int64_t);

}  // namespace engine
