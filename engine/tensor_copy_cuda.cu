// tensor_copy_cuda.cu - strided copy with conversion, and fill, one thread per element.
#include "engine/cuda_common.cuh"
#include "engine/tensor_copy.h"

namespace engine {

namespace {

// Offset of linear (row-major) element i in a strided operand.
__device__ inline int64_t strided_offset(int64_t i, const StridedGeometry& g) {
  int64_t off = 0;
  for (int k = g.ndim - 1; k >= 0; --k) {
    const int64_t idx = i % g.shape[k];
    i /= g.shape[k];
    off += idx * g.strides[k];
  }
  return off;
}

template <typename D, typename S>
__global__ void copy_strided_kernel(D* dst, StridedGeometry dg, const S* src, StridedGeometry sg, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) { dst[strided_offset(i, dg)] = convert_element<D>(src[strided_offset(i, sg)]); }
}

template <typename T>
__global__ void fill_strided_kernel(T* dst, StridedGeometry g, T value, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) { dst[strided_offset(i, g)] = value; }
}

template <typename T>
__global__ void add_contiguous_kernel(T* out, const T* a, const T* b, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    out[i] = convert_element<T>(convert_element<double>(a[i]) + convert_element<double>(b[i]));
  }
}

}  // namespace

void copy_strided_cuda(int device, void* dst, DType dst_dtype, const StridedGeometry& dst_geometry,
                       const void* src, DType src_dtype, const StridedGeometry& src_geometry) {
  const int64_t n = dst_geometry.numel();
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  dispatch_dtype(dst_dtype, [&]<typename D>() {
    dispatch_dtype(src_dtype, [&]<typename S>() {
      cuda::launch("copy_strided_kernel", copy_strided_kernel<D, S>, cuda::elementwise_grid(n, cuda::kBlock),
          cuda::kBlock, 0, stream, static_cast<D*>(dst), dst_geometry, static_cast<const S*>(src), src_geometry, n);
    });
  });
}

void fill_strided_cuda(int device, void* dst, DType dtype, const StridedGeometry& geometry, double value) {
  const int64_t n = geometry.numel();
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  dispatch_dtype(dtype, [&]<typename T>() {
    cuda::launch("fill_strided_kernel", fill_strided_kernel<T>, cuda::elementwise_grid(n, cuda::kBlock), cuda::kBlock,
        0, stream, static_cast<T*>(dst), geometry, convert_element<T>(value), n);
  });
}

void memcpy_cuda(void* dst, bool dst_is_host, const void* src, bool src_is_host, size_t nbytes, int device) {
  if (nbytes == 0) return;
  cudaStream_t stream = cuda::stream(device);
  const cudaMemcpyKind kind = dst_is_host ? (src_is_host ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
                                          : (src_is_host ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, stream));
  if (dst_is_host) CUDA_CHECK(cudaStreamSynchronize(stream));
}

void add_contiguous_cuda(int device, void* out, const void* a, const void* b, DType dtype, int64_t n) {
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  dispatch_dtype(dtype, [&]<typename T>() {
    cuda::launch("add_contiguous_kernel", add_contiguous_kernel<T>, cuda::elementwise_grid(n, cuda::kBlock),
        cuda::kBlock, 0, stream, static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), n);
  });
}

}  // namespace engine
