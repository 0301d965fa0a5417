// tensor_copy_cpu.cpp - reference strided copy and fill: walk the multi-index like an odometer.
#include "engine/tensor_copy.h"

namespace engine {

namespace {

// Calls body(dst_offset, src_offset) for every multi-index of the shape, in row-major order.
template <typename Body>
void for_each_index(const StridedGeometry& shape_and_dst, const int64_t* src_strides, Body body) {
  const int nd = shape_and_dst.ndim;
  const int64_t n = shape_and_dst.numel();
  int64_t index[8] = {};
  int64_t dst_off = 0, src_off = 0;
  for (int64_t i = 0; i < n; ++i) {
    body(dst_off, src_off);
    for (int k = nd - 1; k >= 0; --k) {  // advance the odometer
      index[k]++;
      dst_off += shape_and_dst.strides[k];
      src_off += src_strides ? src_strides[k] : 0;
      if (index[k] < shape_and_dst.shape[k]) break;
      dst_off -= shape_and_dst.strides[k] * shape_and_dst.shape[k];
      src_off -= src_strides ? src_strides[k] * shape_and_dst.shape[k] : 0;
      index[k] = 0;
    }
  }
}

}  // namespace

void copy_strided_cpu(void* dst, DType dst_dtype, const StridedGeometry& dst_geometry,
                      const void* src, DType src_dtype, const StridedGeometry& src_geometry) {
  dispatch_dtype(dst_dtype, [&]<typename D>() {
    dispatch_dtype(src_dtype, [&]<typename S>() {
      D* d = static_cast<D*>(dst);
      const S* s = static_cast<const S*>(src);
      for_each_index(dst_geometry, src_geometry.strides, [&](int64_t doff, int64_t soff) {
        d[doff] = convert_element<D>(s[soff]);
      });
    });
  });
}

void fill_strided_cpu(void* dst, DType dtype, const StridedGeometry& geometry, double value) {
  dispatch_dtype(dtype, [&]<typename T>() {
    T* d = static_cast<T*>(dst);
    const T v = convert_element<T>(value);
    for_each_index(geometry, nullptr, [&](int64_t doff, int64_t) { d[doff] = v; });
  });
}

void add_contiguous_cpu(void* out, const void* a, const void* b, DType dtype, int64_t n) {
  dispatch_dtype(dtype, [&]<typename T>() {
    T* o = static_cast<T*>(out);
    const T* x = static_cast<const T*>(a);
    const T* y = static_cast<const T*>(b);
    for (int64_t i = 0; i < n; ++i)
      o[i] = convert_element<T>(convert_element<double>(x[i]) + convert_element<double>(y[i]));
  });
}
}  // namespace engine
