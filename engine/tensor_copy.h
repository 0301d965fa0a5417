// tensor_copy.h - the strided copy (with dtype conversion) and fill that every layout change uses:
// contiguous(), to(DType), copy_() into a view, fill_() of a view.
//
// Raw level, same arguments on both backends:
//   dst[i] = convert(src[i]) for every multi-index i of `shape`, where
//   dst[i] lives at dst + sum_k i_k * dst.strides[k] (elements), likewise src.
// The two pointers are already offset to element (0, ..., 0). Overlapping dst and src are not
// supported (a view copied onto itself through another view): copy_ checks for it.
#pragma once

#include <cstdint>

#include "engine/dtype.h"

namespace engine {

// Shape and strides of one operand, small enough to pass to a kernel by value.
struct StridedGeometry {
  int ndim = 0;
  int64_t shape[8] = {};
  int64_t strides[8] = {};
  int64_t numel() const {
    int64_t n = 1;
    for (int k = 0; k < ndim; ++k) n *= shape[k];
    return n;
  }
};

void copy_strided_cpu(void* dst, DType dst_dtype, const StridedGeometry& dst_geometry,
                      const void* src, DType src_dtype, const StridedGeometry& src_geometry);
void fill_strided_cpu(void* dst, DType dtype, const StridedGeometry& geometry, double value);

void copy_strided_cuda(int device, void* dst, DType dst_dtype, const StridedGeometry& dst_geometry,
                       const void* src, DType src_dtype, const StridedGeometry& src_geometry);
void fill_strided_cuda(int device, void* dst, DType dtype, const StridedGeometry& geometry, double value);

// Byte copy between any two devices on the engine stream; synchronises when the destination is
// the host so the data can be read at once.
void memcpy_cuda(void* dst, bool dst_is_host, const void* src, bool src_is_host, size_t nbytes, int device);

// out[i] = a[i] + b[i] over n contiguous elements of a floating dtype (out may be a): how the
// autograd engine sums the gradients that reach one tensor along several paths.
void add_contiguous_cpu(void* out, const void* a, const void* b, DType dtype, int64_t n);
void add_contiguous_cuda(int device, void* out, const void* a, const void* b, DType dtype, int64_t n);
}  // namespace engine
