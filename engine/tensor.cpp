// tensor.cpp - storage, factories, views, copies and printing; the autograd nodes of the views.
#include "engine/tensor.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <optional>
#include <ostream>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/tensor_copy.h"

namespace engine {

// ---------------------------------------------------------------- shapes

std::string shape_str(const Shape& shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape, MemoryFormat format) {
  Shape strides(shape.size());
  if (format == MemoryFormat::NHWC) {
    ENGINE_CHECK(shape.size() == 4, "the NHWC memory format needs a 4-D (N, C, H, W) shape, found {}",
                 shape_str(shape));
    const int64_t C = std::max<int64_t>(shape[1], 1), H = std::max<int64_t>(shape[2], 1),
                  W = std::max<int64_t>(shape[3], 1);
    return {H * W * C, 1, W * C, C};
  }
  int64_t stride = 1;
  for (int64_t k = static_cast<int64_t>(shape.size()) - 1; k >= 0; --k) {
    strides[k] = stride;
    stride *= std::max<int64_t>(shape[k], 1);
  }
  return strides;
}

namespace {

StridedGeometry geometry_of(const Tensor& t) {
  StridedGeometry g;
  g.ndim = static_cast<int>(t.dim());
  for (int k = 0; k < g.ndim; ++k) {
    g.shape[k] = t.shape()[k];
    g.strides[k] = t.strides()[k];
  }
  return g;
}

// Strides equal to `expected` wherever the size is not 1 (a size-1 dim's stride never matters).
bool strides_match(const Shape& shape, const Shape& strides, const Shape& expected) {
  for (size_t k = 0; k < shape.size(); ++k)
    if (shape[k] != 1 && strides[k] != expected[k]) return false;
  return true;
}

int64_t normalize_dim(int64_t d, int64_t ndim, const char* what) {
  const int64_t wrapped = d < 0 ? d + ndim : d;
  ENGINE_CHECK(wrapped >= 0 && wrapped < ndim, "{}: dim {} is out of range for a {}-D tensor (expected {} to {})",
               what, d, ndim, -ndim, ndim - 1);
  return wrapped;
}

// Copies between tensors of the same shape and device (any dtypes, any strides).
void copy_same_device(const Tensor& dst, const Tensor& src) {
  if (dst.device().is_cpu()) {
    copy_strided_cpu(dst.data_ptr(), dst.dtype(), geometry_of(dst), src.data_ptr(), src.dtype(), geometry_of(src));
  } else {
    ENGINE_DISPATCH_CUDA(dst.device(), "Tensor copy",
                         copy_strided_cuda(dst.device().index, dst.data_ptr(), dst.dtype(), geometry_of(dst),
                                           src.data_ptr(), src.dtype(), geometry_of(src)));
  }
}

// ---------------------------------------------------------------- autograd nodes of views/copies

struct ViewBackward : Node {  // reshape/view: the gradient takes the input's shape back
  Shape input_shape;
  const char* name() const override { return "ViewBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override { return {dout.reshape(input_shape)}; }
};

struct PermuteBackward : Node {  // permute: apply the inverse permutation
  std::vector<int64_t> inverse;
  const char* name() const override { return "PermuteBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override { return {dout.permute(inverse)}; }
};

struct SliceBackward : Node {  // slice: the gradient is dout inside the slice and zero elsewhere
  Shape input_shape;
  int64_t dim = 0, start = 0, end = 0, step = 1;
  const char* name() const override { return "SliceBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor din = Tensor::zeros(input_shape, dout.dtype(), dout.device());
    din.slice(dim, start, end, step).copy_(dout);
    return {din};
  }
};

struct CopyBackward : Node {  // contiguous/clone: values unchanged, so the gradient passes through
  const char* name() const override { return "CopyBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override { return {dout}; }
};

struct ToDeviceBackward : Node {
  Device source;
  const char* name() const override { return "ToDeviceBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override { return {dout.to(source)}; }
};

std::atomic<uint64_t> g_layout_conversions{0};  // layout_conversion_count()

struct ToDtypeBackward : Node {
  DType source = DType::f32;
  std::optional<MemoryFormat> source_format;  // set by to(dtype, format): the gradient goes back in it
  const char* name() const override { return "ToDtypeBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    return {source_format ? dout.to(source, *source_format) : dout.to(source)};
  }
};

}  // namespace

// ---------------------------------------------------------------- storage

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    data_ = tensor_host_allocate(nbytes);
  } else {
    require_cuda_device(device, "allocating a tensor");
    data_ = cuda_allocate(device.index, nbytes);
  }
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t nbytes, Device device,
                                       std::function<void(void*)> release) {
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = data;
  s->nbytes_ = nbytes;
  s->device_ = device;
  s->release_ = release ? std::move(release) : [](void*) {};
  return s;
}

Storage::~Storage() {
  if (release_) {
    release_(data_);
  } else if (device_.is_cpu()) {
    tensor_host_free(data_);
  } else if (data_) {
    cuda_free(device_.index, data_);
  }
}

// ---------------------------------------------------------------- factories

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, MemoryFormat format) {
  ENGINE_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), "tensors have at most {} dims, asked for {}: {}",
               kMaxDims, shape.size(), shape_str(shape));
  int64_t nbytes = dtype_size(dtype);
  for (int64_t s : shape) {
    ENGINE_CHECK(s >= 0, "negative size in shape {}", shape_str(shape));
    ENGINE_CHECK(!__builtin_mul_overflow(nbytes, s, &nbytes), "shape {} of {} needs more than 2^63 bytes",
                 shape_str(shape), dtype_name(dtype));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(nbytes), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape, format);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides,
                            int64_t offset, DType dtype) {
  ENGINE_CHECK(storage != nullptr, "from_storage: null storage");
  ENGINE_CHECK(shape.size() == strides.size() && shape.size() <= static_cast<size_t>(kMaxDims),
               "from_storage: shape {} and strides {} must have the same length, at most {}",
               shape_str(shape), shape_str(strides), kMaxDims);
  int64_t last = offset;  // the furthest element the view reaches
  for (size_t k = 0; k < shape.size(); ++k) {
    ENGINE_CHECK(shape[k] >= 0 && strides[k] >= 0, "from_storage: negative size or stride in {} / {}",
                 shape_str(shape), shape_str(strides));
    if (shape[k] > 0) last += (shape[k] - 1) * strides[k];
  }
  const int64_t capacity = static_cast<int64_t>(storage->nbytes()) / dtype_size(dtype);
  ENGINE_CHECK(offset >= 0 && (shape_numel(shape) == 0 || last < capacity),
               "from_storage: a view of shape {}, strides {}, offset {} reaches element {}, but the "
               "storage holds {} elements of {}",
               shape_str(shape), shape_str(strides), offset, last, capacity, dtype_name(dtype));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---------------------------------------------------------------- what it is

TensorImpl& Tensor::checked_impl(const char* what) const {
  ENGINE_CHECK(impl_ != nullptr, "{} on an undefined tensor (a default-constructed Tensor())", what);
  return *impl_;
}

const Shape& Tensor::shape() const { return checked_impl("shape").shape; }
const Shape& Tensor::strides() const { return checked_impl("strides").strides; }
int64_t Tensor::dim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[normalize_dim(d, dim(), "stride")]; }
int64_t Tensor::offset() const { return checked_impl("offset").offset; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return checked_impl("dtype").dtype; }
Device Tensor::device() const { return checked_impl("device").storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked_impl("storage").storage; }

bool Tensor::is_contiguous() const { return is_contiguous(MemoryFormat::NCHW); }

bool Tensor::is_contiguous(MemoryFormat format) const {
  const TensorImpl& impl = checked_impl("is_contiguous");
  if (format == MemoryFormat::NHWC && impl.shape.size() != 4) return false;
  return strides_match(impl.shape, impl.strides, contiguous_strides(impl.shape, format));
}

MemoryFormat Tensor::memory_format() const {
  return dim() == 4 && !is_contiguous() && is_contiguous(MemoryFormat::NHWC) ? MemoryFormat::NHWC
                                                                             : MemoryFormat::NCHW;
}

void* Tensor::data_ptr() const {
  const TensorImpl& impl = checked_impl("data_ptr");
  if (impl.storage->data() == nullptr) return nullptr;
  return static_cast<char*>(impl.storage->data()) + impl.offset * dtype_size(impl.dtype);
}

std::string Tensor::str() const {
  if (!impl_) return "Tensor(undefined)";
  return fmt::format("Tensor({}, {}, {}{})", dtype_name(dtype()), device().str(), shape_str(shape()),
                     memory_format() == MemoryFormat::NHWC ? ", NHWC" : "");
}

namespace {
void print_values(std::string& out, const std::vector<double>& values, const Shape& shape, size_t dim,
                  int64_t& index, bool integral) {
  if (dim == shape.size()) {
    out += integral ? fmt::format("{}", static_cast<int64_t>(values[index++]))
                    : fmt::format("{:.6g}", values[index++]);
    return;
  }
  out += "[";
  for (int64_t i = 0; i < shape[dim]; ++i) {
    if (i) out += dim + 1 == shape.size() ? ", " : ",\n" + std::string(dim + 1, ' ');
    print_values(out, values, shape, dim + 1, index, integral);
  }
  out += "]";
}
}  // namespace

std::string Tensor::to_string() const {
  constexpr int64_t kMaxPrinted = 1000;
  std::string out = str();
  if (!impl_) return out;
  if (numel() > kMaxPrinted) return out + fmt::format(" ({} elements: too many to print)", numel());
  const std::vector<double> values = detach().to_vector<double>();
  int64_t index = 0;
  out += "\n";
  print_values(out, values, shape(), 0, index, !dtype_is_floating(dtype()));
  return out;
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

// ---------------------------------------------------------------- views

Tensor Tensor::make_view(const Shape& shape, const Shape& strides, int64_t offset) const {
  return from_storage(storage(), shape, strides, offset, dtype());
}

Tensor Tensor::view(const Shape& requested) const {
  Shape shape = requested;
  int64_t known = 1, infer_at = -1;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == -1) {
      ENGINE_CHECK(infer_at < 0, "view/reshape {}: only one dim may be -1", shape_str(requested));
      infer_at = static_cast<int64_t>(k);
    } else {
      known *= shape[k];
    }
  }
  if (infer_at >= 0) {
    ENGINE_CHECK(known > 0 && numel() % known == 0, "view/reshape of {} to {}: {} elements do not divide into it",
                 str(), shape_str(requested), numel());
    shape[infer_at] = numel() / known;
  }
  ENGINE_CHECK(shape_numel(shape) == numel(), "view/reshape of {} to {}: expected {} elements, the new shape holds {}",
               str(), shape_str(requested), numel(), shape_numel(shape));
  ENGINE_CHECK(is_contiguous(), "view of a non-contiguous {} (strides {}): call contiguous() first, or reshape()",
               str(), shape_str(strides()));
  Tensor out = make_view(shape, contiguous_strides(shape), offset());
  if (autograd::needs_grad({this})) {
    auto node = std::make_shared<ViewBackward>();
    node->input_shape = this->shape();
    autograd::record(node, out, {this});
  }
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const { return is_contiguous() ? view(shape) : contiguous().view(shape); }

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  const int64_t nd = dim();
  ENGINE_CHECK(static_cast<int64_t>(order.size()) == nd, "permute of a {}-D tensor needs {} dims, found {}", nd, nd,
               order.size());
  Shape shape(nd), strides(nd);
  std::vector<int64_t> inverse(nd, -1);
  for (int64_t k = 0; k < nd; ++k) {
    const int64_t d = normalize_dim(order[k], nd, "permute");
    ENGINE_CHECK(inverse[d] < 0, "permute: dim {} appears twice in the order", d);
    inverse[d] = k;
    shape[k] = this->shape()[d];
    strides[k] = this->strides()[d];
  }
  Tensor out = make_view(shape, strides, offset());
  if (autograd::needs_grad({this})) {
    auto node = std::make_shared<PermuteBackward>();
    node->inverse = inverse;
    autograd::record(node, out, {this});
  }
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> order(dim());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[normalize_dim(d0, dim(), "transpose")], order[normalize_dim(d1, dim(), "transpose")]);
  return permute(order);
}

Tensor Tensor::slice(int64_t dim_, int64_t start, int64_t end, int64_t step) const {
  const int64_t d = normalize_dim(dim_, dim(), "slice");
  const int64_t n = shape()[d];
  ENGINE_CHECK(step > 0, "slice: step must be positive, found {}", step);
  // Python's rules: negative indices count from the end; out-of-range bounds are clamped.
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = this->shape(), strides = this->strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  Tensor out = make_view(shape, strides, offset() + start * this->strides()[d]);
  if (autograd::needs_grad({this})) {
    auto node = std::make_shared<SliceBackward>();
    node->input_shape = this->shape();
    node->dim = d;
    node->start = start;
    node->end = end;
    node->step = step;
    autograd::record(node, out, {this});
  }
  return out;
}

// ---------------------------------------------------------------- copies

Tensor Tensor::contiguous(MemoryFormat format) const {
  if (is_contiguous(format)) return *this;
  g_layout_conversions.fetch_add(1, std::memory_order_relaxed);
  Tensor out = empty(shape(), dtype(), device(), format);
  copy_same_device(out, *this);
  if (autograd::needs_grad({this})) autograd::record(std::make_shared<CopyBackward>(), out, {this});
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device(), memory_format());
  copy_same_device(out, *this);
  if (autograd::needs_grad({this})) autograd::record(std::make_shared<CopyBackward>(), out, {this});
  return out;
}

namespace {
std::atomic<uint64_t> g_host_reads{0};
}  // namespace

uint64_t host_read_count() { return g_host_reads.load(std::memory_order_relaxed); }
void count_host_read() { g_host_reads.fetch_add(1, std::memory_order_relaxed); }
uint64_t layout_conversion_count() { return g_layout_conversions.load(std::memory_order_relaxed); }

Tensor Tensor::to(Device target) const {
  const Device source = device();
  if (source == target) return *this;
  const Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), target);
  const size_t nbytes = static_cast<size_t>(numel() * dtype_size(dtype()));
  if (nbytes > 0) {
    if (source.is_cuda() && target.is_cuda()) {  // between two GPUs: through the host, rare
      out.copy_(src.to(Device::cpu()));
    } else if (target.is_cuda()) {
      ENGINE_DISPATCH_CUDA(target, "Tensor::to",
                           memcpy_cuda(out.data_ptr(), false, src.data_ptr(), true, nbytes, target.index));
    } else {
      count_host_read();
      ENGINE_DISPATCH_CUDA(source, "Tensor::to",
                           memcpy_cuda(out.data_ptr(), true, src.data_ptr(), false, nbytes, source.index));
    }
  }
  if (autograd::needs_grad({this})) {
    auto node = std::make_shared<ToDeviceBackward>();
    node->source = source;
    autograd::record(node, out, {this});
  }
  return out;
}

Tensor Tensor::to(DType target) const {
  const DType source = dtype();
  if (source == target) return *this;
  Tensor out = empty(shape(), target, device(), memory_format());
  copy_same_device(out, *this);
  if (autograd::needs_grad({this}) && dtype_is_floating(target)) {
    auto node = std::make_shared<ToDtypeBackward>();
    node->source = source;
    autograd::record(node, out, {this});
  }
  return out;
}

Tensor Tensor::to(DType target, MemoryFormat format) const {
  ENGINE_CHECK(dim() == 4, "to(dtype, memory format): the format is that of a 4-D (N, C, H, W) tensor, found {}",
               str());
  const DType source = dtype();
  const MemoryFormat source_format = memory_format();
  if (source == target && is_contiguous(format)) return *this;
  Tensor out = empty(shape(), target, device(), format);
  copy_same_device(out, *this);
  if (autograd::needs_grad({this}) && dtype_is_floating(target)) {
    auto node = std::make_shared<ToDtypeBackward>();
    node->source = source;
    node->source_format = source_format;
    autograd::record(node, out, {this});
  }
  return out;
}

Tensor& Tensor::fill_(double value) {
  check_inplace_allowed(*this, "fill_");
  if (device().is_cpu()) {
    fill_strided_cpu(data_ptr(), dtype(), geometry_of(*this), value);
  } else {
    ENGINE_DISPATCH_CUDA(device(), "fill_",
                         fill_strided_cuda(device().index, data_ptr(), dtype(), geometry_of(*this), value));
  }
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_defined(src, "copy_", "src");
  check_inplace_allowed(*this, "copy_");
  ENGINE_CHECK(shape() == src.shape(), "copy_: destination {} and source {} must have the same shape", str(),
               src.str());
  Tensor source = src.detach();
  if (source.device() != device()) source = source.to(dtype()).to(device());
  // Reading and writing one storage through two views could read elements already overwritten.
  if (source.storage() == storage()) source = source.clone();
  copy_same_device(*this, source);
  return *this;
}

Tensor Tensor::to_cpu_contiguous() const { return detach().to(Device::cpu()).contiguous(); }

double Tensor::item() const {
  ENGINE_CHECK(numel() == 1, "item() needs a one-element tensor, found {}", str());
  return to_vector<double>()[0];
}

// ---------------------------------------------------------------- boundary checks

void check_defined(const Tensor& t, const char* op, const char* arg) {
  ENGINE_CHECK(t.defined(), "{}: argument '{}' is an undefined tensor", op, arg);
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  ENGINE_CHECK(a.device() == b.device(),
               "{}: expected both tensors on one device, found {} and {}; move one with .to(device)", op,
               a.str(), b.str());
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  ENGINE_CHECK(a.dtype() == b.dtype(), "{}: expected tensors of one dtype, found {} and {}; convert with .to(dtype)",
               op, a.str(), b.str());
}

void check_inplace_allowed(const Tensor& t, const char* op) {
  ENGINE_CHECK(!(GradMode::enabled() && t.requires_grad()),
               "{} on a tensor that requires grad ({}) would silently break its gradient; do it "
               "under NoGradGuard (as optimizer steps do) or on detach()",
               op, t.str());
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  ENGINE_CHECK(a.shape() == b.shape(), "{}: expected tensors of one shape, found {} and {}", op, a.str(), b.str());
}

}  // namespace engine
