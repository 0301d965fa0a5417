// conv2d_cuda.cu - the conv2d bias on CUDA: added after cuDNN's convolution, reduced for its
// gradient. (The convolutions themselves are cuDNN calls, in conv2d_cudnn.cpp.)
#include "ops/channel_reduce.cuh"
#include "ops/conv2d.h"

namespace engine {

namespace {

template <typename T>
__global__ void bias_forward_kernel(T* y, const T* bias, ChannelLayout layout) {
  ENGINE_GRID_STRIDE_LOOP(idx, layout.numel()) {
    const float v = convert_element<float>(y[idx]) + convert_element<float>(bias[layout.channel(idx)]);
    y[idx] = convert_element<T>(v);
  }
}

template <typename T>
struct DyTerm {
  const T* dy;
  struct Row {
    const T* dy;
    __device__ cuda::ChannelTerms<1> operator()(int64_t o) const { return {{cuda::load_float(dy, o)}}; }
  };
  __device__ Row row(int64_t) const { return {dy}; }
};

// dbias_c: channel c's partial sums of dy added in split order (channel_reduce.cuh).
template <typename T>
__global__ void store_channel_sums_kernel(T* out, const double* partials, ChannelReducePlan plan) {
  ENGINE_GRID_STRIDE_LOOP(c, plan.rows) {
    out[c] = convert_element<T>(static_cast<float>(cuda::combine_partials(partials, plan, 0, c)));
  }
}

}  // namespace

void conv2d_bias_forward_cuda(int device, void* y, const void* bias, DType dtype, bool channels_last, int64_t N,
                              int64_t K, int64_t PQ) {
  const ChannelLayout layout{N, K, PQ, channels_last};
  if (layout.numel() == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::dispatch_activation(dtype, "conv2d bias", [&]<typename T>() {
    cuda::launch("bias_forward_kernel", bias_forward_kernel<T>, cuda::elementwise_grid(layout.numel(), cuda::kBlock),
        cuda::kBlock, 0, stream, static_cast<T*>(y), static_cast<const T*>(bias), layout);
  });
}

void conv2d_bias_backward_cuda(int device, void* dbias, const void* dy, DType dtype, bool channels_last, int64_t N,
                               int64_t K, int64_t PQ) {
  if (K == 0) return;
  const ChannelLayout layout{N, K, PQ, channels_last};
  cudaStream_t stream = cuda::stream(device);
  const ChannelReducePlan plan = cuda::channel_reduce_plan(device, layout, 1);
  CudaScratch<double> partials(device, plan.splits * plan.rows);
  cuda::dispatch_activation(dtype, "conv2d bias", [&]<typename T>() {
    cuda::launch_channel_partials<1>("channel partials (bias gradient)", partials.ptr, plan, layout, 1,
        DyTerm<T>{static_cast<const T*>(dy)}, stream);
    cuda::launch("store_channel_sums_kernel", store_channel_sums_kernel<T>, cuda::elementwise_grid(K, cuda::kBlock),
        cuda::kBlock, 0, stream, static_cast<T*>(dbias), partials.ptr, plan);
  });
}

}  // namespace engine
