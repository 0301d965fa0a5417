// tensor.h - Tensor: a typed, strided view of a Storage on a device, with autograd metadata.
//
// Addressing. Strides are counted in elements. Element (i_0, ..., i_{d-1}) of a tensor lives at
//     storage.data + (offset + sum_k i_k * strides[k]) * dtype_size(dtype)
// A contiguous (row-major) tensor has strides[d-1] = 1 and strides[k] = strides[k+1] * shape[k+1].
// Views (reshape of a contiguous tensor, permute, transpose, slice) share the storage and change
// only shape, strides and offset; contiguous() copies when the layout is not row-major.
//
// Memory format. A 4-D image tensor is always indexed (N, C, H, W). Its memory format is a choice
// of strides: NCHW is row-major, strides (C*H*W, H*W, W, 1); NHWC ("channels last") keeps each
// pixel's channels together, strides (H*W*C, 1, W*C, C). memory_format() reads the format off the
// strides, so it can never disagree with them; ops that care check it and convert with
// contiguous(format).
//
// Shape letters used across the engine: N batch, C channels, H and W height and width, D feature
// dimension, K queue length, M/N/K of a GEMM where no image is involved.
//
// Handles. Tensor is a cheap handle (a shared pointer): copies alias the same tensor, as in
// PyTorch. Device transfers are always explicit: to(Device) and copy_() are the only ways data
// moves between host and GPU.
//
// Autograd. A tensor that requires grad and was produced by a recorded op holds that op's Node
// (autograd.h); leaves accumulate their gradient in grad(). View ops are recorded too, so a
// gradient flows back through reshape, permute, slice, contiguous, to(device) and to(dtype).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"

namespace engine {

using Shape = std::vector<int64_t>;
constexpr int kMaxDims = 8;

enum class MemoryFormat : uint8_t { NCHW, NHWC };

std::string shape_str(const Shape& shape);  // "(2, 3, 4)"
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape, MemoryFormat format = MemoryFormat::NCHW);

// A block of memory on one device. Owns it unless created by wrap() with an empty deleter.
class Storage {
 public:
  // New memory: aligned host memory, or a block of the device's caching allocator.
  Storage(size_t nbytes, Device device);
  // Memory owned elsewhere (a pinned buffer, a mapped file): `release` runs when the last
  // tensor over it goes away (empty: nothing runs).
  static std::shared_ptr<Storage> wrap(void* data, size_t nbytes, Device device,
                                       std::function<void(void*)> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::function<void(void*)> release_;
};

struct AutogradMeta;
class Tensor;
using GradReadyHook = std::function<void(const Tensor& grad)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;        // in elements
  int64_t offset = 0;   // in elements
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // null: does not require grad
};

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false

  // --- factories ---
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(),
                      MemoryFormat format = MemoryFormat::NCHW);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  // Copies `values` (row-major) into a new tensor of `shape` on `device`.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());
  // A tensor over existing storage (no copy); checks that the view stays inside it.
  static Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape,
                             const Shape& strides, int64_t offset, DType dtype);

  // --- what it is ---
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const;
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t offset() const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  const std::shared_ptr<Storage>& storage() const;
  bool is_contiguous() const;  // row-major
  bool is_contiguous(MemoryFormat format) const;
  // For a 4-D tensor: NHWC when its strides are channels-last (and not also row-major),
  // NCHW otherwise.
  MemoryFormat memory_format() const;
  // Address of element (0, ..., 0).
  void* data_ptr() const;
  template <typename T>
  T* data() const;  // checks that T matches dtype()
  std::string str() const;        // "Tensor(f32, cuda:0, (2, 3))"
  std::string to_string() const;  // str() plus the values of a small tensor (copied to the host)
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  // --- views: share storage, recorded by autograd ---
  Tensor view(const Shape& shape) const;     // needs a contiguous tensor; one dim may be -1
  Tensor reshape(const Shape& shape) const;  // view when possible, else a contiguous copy
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;  // [start, end)

  // --- copies ---
  Tensor contiguous(MemoryFormat format = MemoryFormat::NCHW) const;  // self if already so
  Tensor clone() const;                                              // always a new copy
  // Self if already there. From the host the copy is done when to() returns (host tensors are
  // pageable, staged by the driver); to the host it synchronises the GPU's stream.
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;                                      // self if already so
  // A 4-D tensor cast and re-laid out in one copy (self if already both): how a master weight,
  // f32 NCHW, becomes the bf16 NHWC operand of a channels-last convolution. The gradient goes back
  // in the source's dtype and format.
  Tensor to(DType dtype, MemoryFormat format) const;
  // In place, not recorded by autograd (like PyTorch's no_grad-only in-place ops):
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // same shape; converts dtype; any devices

  // --- host access (copies to the CPU) ---
  template <typename T>
  std::vector<T> to_vector() const;
  double item() const;  // a one-element tensor as double

  // --- autograd (autograd.cpp) ---
  bool requires_grad() const;
  Tensor& requires_grad_(bool enabled = true);  // leaves only
  bool is_leaf() const;
  Tensor grad() const;  // undefined until a backward reaches this leaf
  void set_grad(const Tensor& grad);
  // Runs backward from this tensor. A non-scalar needs a seed of its shape. retain_graph keeps
  // the saved context so the graph can be walked again.
  void backward(const Tensor& seed = Tensor(), bool retain_graph = false) const;
  // Called once per backward with this leaf's complete gradient, as soon as it is final.
  void register_grad_ready_hook(GradReadyHook hook);
  Tensor detach() const;  // same data, no history, does not require grad

  TensorImpl* impl() const { return impl_.get(); }

 private:
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  TensorImpl& checked_impl(const char* what) const;
  Tensor make_view(const Shape& shape, const Shape& strides, int64_t offset) const;
  Tensor to_cpu_contiguous() const;

  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Checks used at op boundaries; each message names the op and prints what it found.
// Reads of tensor values by host code: every to_vector() and item() (on any device) and every copy
// from a GPU to the host. On a GPU each one waits for the stream to drain, so a training step that
// should never wait for the host can be checked by counting: the test takes the count before and
// after steady-state steps. Counting CPU tensors too runs that test's logic on the CPU.
uint64_t host_read_count();
void count_host_read();
// Copies made by contiguous() because a tensor's layout was not the one asked for: every hidden
// layout conversion between ops (an NHWC activation re-laid out to NCHW for an op that needs it,
// a strided view made dense). A channels-last model is checked by counting, like the host reads.
// Deliberate casts (to(dtype), to(dtype, format)) and clone() are not counted.
uint64_t layout_conversion_count();

void check_defined(const Tensor& t, const char* op, const char* arg);
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
void check_same_shape(const Tensor& a, const Tensor& b, const char* op);
// In-place writes are not recorded by autograd, so they are refused on a tensor that requires grad
// while recording is on (optimizer steps and initialisation run under NoGradGuard).
void check_inplace_allowed(const Tensor& t, const char* op);

// ---- templates ----

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  const int64_t n = shape_numel(shape);
  ENGINE_CHECK(static_cast<int64_t>(values.size()) == n,
               "from_vector: shape {} holds {} elements, but {} values were given",
               shape_str(shape), n, values.size());
  Tensor host = empty(shape, dtype_of<T>(), Device::cpu());
  if (n > 0) std::memcpy(host.data_ptr(), values.data(), n * sizeof(T));
  return device.is_cpu() ? host : host.to(device);
}

template <typename T>
T* Tensor::data() const {
  ENGINE_CHECK(dtype() == dtype_of<T>(), "data<{}>() on a tensor of dtype {}: {}",
               dtype_name(dtype_of<T>()), dtype_name(dtype()), str());
  return static_cast<T*>(data_ptr());
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  if (device().is_cpu()) count_host_read();  // from a GPU, to() counts the copy
  const Tensor host = detach().to(dtype_of<T>()).to_cpu_contiguous();
  std::vector<T> values(host.numel());
  if (!values.empty()) std::memcpy(values.data(), host.data_ptr(), values.size() * sizeof(T));
  return values;
}

}  // namespace engine
