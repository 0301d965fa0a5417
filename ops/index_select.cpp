// index_select.cpp - checks, dispatch and autograd for index_select along dim 0.
#include "ops/index_select.h"

#include "engine/autograd.h"

namespace engine {

namespace {

// Calls fn.template operator()<T>() for the element types index_select moves: f32, f64, bf16.
template <typename Fn>
void dispatch_rows(DType dtype, const char* what, Fn&& fn) {
  switch (dtype) {
    case DType::f32: fn.template operator()<float>(); return;
    case DType::f64: fn.template operator()<double>(); return;
    case DType::bf16: fn.template operator()<bf16>(); return;
    default: break;
  }
  ENGINE_THROW("{}: expected x of dtype f32, f64 or bf16, found {}; convert it first with .to(DType::f32)", what,
               dtype_name(dtype));
}

struct IndexSelectBackward : Node {
  Tensor inverse;  // invert_index's table on the op's device: row_starts (rows_in + 1), then sources
  Shape input_shape;
  int64_t rows_in = 0, row_size = 0;
  const char* name() const override { return "IndexSelectBackward"; }
  std::vector<Tensor> backward(const Tensor& dout_) override {
    const Tensor dout = dout_.contiguous();
    Tensor dx = Tensor::empty(input_shape, dout.dtype(), dout.device());
    const int64_t* row_starts = inverse.data<int64_t>();
    const int64_t* sources = row_starts + rows_in + 1;
    dispatch_rows(dout.dtype(), name(), [&]<typename T>() {
      if (dout.device().is_cpu()) {
        index_select_backward_cpu<T>(dx.data<T>(), dout.data<T>(), row_starts, sources, rows_in, row_size);
      } else {
        ENGINE_DISPATCH_CUDA(dout.device(), name(),
                             index_select_backward_cuda<T>(dout.device().index, dx.data<T>(), dout.data<T>(),
                                                           row_starts, sources, rows_in, row_size));
      }
    });
    return {dx};
  }
  void release_saved() override { inverse = Tensor(); }
};

}  // namespace

Tensor index_select(const Tensor& x, const Tensor& index, IndexCheck check) {
  check_defined(x, "index_select", "x");
  check_defined(index, "index_select", "index");
  ENGINE_CHECK(x.dim() >= 1, "index_select: x must have a dim 0 to select rows from, found the 0-dim {}", x.str());
  ENGINE_CHECK(index.dim() == 1 && index.dtype() == DType::i64,
               "index_select: expected a 1-D i64 index, found {}; build it with Tensor::from_vector<int64_t>",
               index.str());
  ENGINE_CHECK(index.device() == x.device() || index.device().is_cpu(),
               "index_select: expected the index on the CPU or on x's device {}, found {}", x.device().str(),
               index.str());
  const int64_t rows_in = x.size(0), rows_out = index.size(0);
  Shape out_shape = x.shape();
  out_shape[0] = rows_out;
  const int64_t row_size = shape_numel(Shape(x.shape().begin() + 1, x.shape().end()));

  const bool needs_grad = autograd::needs_grad({&x});
  ENGINE_CHECK(check == IndexCheck::Checked || !needs_grad,
               "index_select: a Trusted index is for paths without gradient, but x {} requires grad; use "
               "IndexCheck::Checked",
               x.str());
  // Every value checked on the host: a CPU index where it is, an index on the GPU after it comes
  // back (the only case that waits for a device; see the header).
  std::vector<int64_t> host_index;
  if (check == IndexCheck::Checked && index.device().is_cpu()) {
    const Tensor values = index.contiguous();
    host_index.assign(values.data<int64_t>(), values.data<int64_t>() + rows_out);
  } else if (check == IndexCheck::Checked) {
    host_index = index.to_vector<int64_t>();
  }
  for (int64_t i = 0; i < static_cast<int64_t>(host_index.size()); ++i)
    ENGINE_CHECK(host_index[i] >= 0 && host_index[i] < rows_in,
                 "index_select: index[{}] = {} is out of range for x {} with {} rows; values must lie in [0, {})", i,
                 host_index[i], x.str(), rows_in, rows_in);

  const Tensor xc = x.detach().contiguous();
  const Tensor index_c = index.contiguous().to(x.device());
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  dispatch_rows(x.dtype(), "index_select", [&]<typename T>() {
    if (x.device().is_cpu()) {
      index_select_forward_cpu<T>(out.data<T>(), xc.data<T>(), index_c.data<int64_t>(), rows_out, row_size);
    } else {
      ENGINE_DISPATCH_CUDA(x.device(), "index_select",
                           index_select_forward_cuda<T>(x.device().index, out.data<T>(), xc.data<T>(),
                                                        index_c.data<int64_t>(), rows_out, row_size));
    }
  });
  if (needs_grad) {
    std::vector<int64_t> inverse(static_cast<size_t>(rows_in + 1 + rows_out));
    invert_index(inverse.data(), inverse.data() + rows_in + 1, host_index.data(), rows_out, rows_in);
    auto node = std::make_shared<IndexSelectBackward>();
    node->inverse = Tensor::from_vector(inverse, {rows_in + 1 + rows_out}, x.device());
    node->input_shape = x.shape();
    node->rows_in = rows_in;
    node->row_size = row_size;
    autograd::record(node, out, {&x});
  }
  return out;
}

}  // namespace engine
