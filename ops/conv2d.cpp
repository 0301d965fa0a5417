// conv2d.cpp - checks, layout handling, dispatch and autograd for conv2d.

#include "engine/autograd.h"
#include "ops/conv2d.h"
#include "ops/cpu_bf16.h"

namespace engine {

bool Conv2dGeometry::is_pointwise() const {
  return R == 1 && S == 1 && opt.stride_h == 1 && opt.stride_w == 1 && opt.pad_h == 0 && opt.pad_w == 0;
}

Conv2dGeometry Conv2dGeometry::make(const Shape& x, const Shape& weight, const Conv2dOptions& opt) {
  ENGINE_CHECK(x.size() == 4 && weight.size() == 4,
               "conv2d: expected x (N, C, H, W) and weight (K, C/groups, R, S), found x {} and weight {}",
               shape_str(x), shape_str(weight));
  ENGINE_CHECK(opt.stride_h > 0 && opt.stride_w > 0 && opt.dilation_h > 0 && opt.dilation_w > 0 && opt.pad_h >= 0 &&
                   opt.pad_w >= 0 && opt.groups > 0,
               "conv2d: stride ({}, {}) and dilation ({}, {}) must be positive, padding ({}, {}) non-negative and "
               "groups ({}) positive",
               opt.stride_h, opt.stride_w, opt.dilation_h, opt.dilation_w, opt.pad_h, opt.pad_w, opt.groups);
  Conv2dGeometry g{x[0], x[1], x[2], x[3], weight[0], weight[2], weight[3], 0, 0, opt};
  ENGINE_CHECK(g.C % opt.groups == 0 && g.K % opt.groups == 0,
               "conv2d: {} input and {} output channels must both be divisible by groups = {}", g.C, g.K, opt.groups);
  ENGINE_CHECK(weight[1] == g.C / opt.groups,
               "conv2d: weight {} expects {} input channels per group, but x {} has {} channels in {} group(s)",
               shape_str(weight), weight[1], shape_str(x), g.C, opt.groups);
  const int64_t span_h = opt.dilation_h * (g.R - 1) + 1, span_w = opt.dilation_w * (g.S - 1) + 1;
  ENGINE_CHECK(g.H + 2 * opt.pad_h >= span_h && g.W + 2 * opt.pad_w >= span_w,
               "conv2d: the {}x{} kernel (dilated to {}x{}) does not fit the padded {}x{} input (padding {}, {})", g.R,
               g.S, span_h, span_w, g.H + 2 * opt.pad_h, g.W + 2 * opt.pad_w, opt.pad_h, opt.pad_w);
  g.P = (g.H + 2 * opt.pad_h - span_h) / opt.stride_h + 1;
  g.Q = (g.W + 2 * opt.pad_w - span_w) / opt.stride_w + 1;
  return g;
}

namespace {

// The layout this op computes in: cuDNN takes NHWC as it is; the CPU reference needs NCHW.
bool compute_channels_last(const Tensor& x) {
  return x.device().is_cuda() && x.memory_format() == MemoryFormat::NHWC;
}

MemoryFormat format_of(bool channels_last) { return channels_last ? MemoryFormat::NHWC : MemoryFormat::NCHW; }

Tensor conv2d_backward_data(const Tensor& dy, const Tensor& weight, const Conv2dGeometry& g, bool cl) {
  Tensor dx = Tensor::empty({g.N, g.C, g.H, g.W}, dy.dtype(), dy.device(), format_of(cl));
  if (dx.device().is_cpu()) {
    dispatch_float(dy.dtype(), "conv2d backward", [&]<typename T>() {
      conv2d_backward_data_cpu<T>(dx.data<T>(), dy.data<T>(), weight.data<T>(), g);
    });
  } else {
    ENGINE_DISPATCH_CUDA(dx.device(), "conv2d backward",
                         conv2d_backward_data_cuda(dx.device().index, dx.data_ptr(), dy.data_ptr(), weight.data_ptr(),
                                                   dx.dtype(), cl, g));
  }
  return dx;
}

struct Conv2dBackward : Node {
  Tensor x, weight;  // in the computing layout (contiguous NCHW, or NHWC on CUDA)
  Conv2dGeometry geometry{};
  bool channels_last = false, has_bias = false;
  MemoryFormat weight_format = MemoryFormat::NCHW;  // the caller's weight layout, for dweight
  const char* name() const override { return "Conv2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const Conv2dGeometry& g = geometry;
    const Tensor dy = dout.contiguous(format_of(channels_last));
    Tensor dx, dw, db;
    if (needs_input_grad(0)) dx = conv2d_backward_data(dy, weight, g, channels_last);
    if (needs_input_grad(1) || needs_input_grad(2)) {
      dw = Tensor::empty(weight.shape(), dy.dtype(), dy.device(), format_of(channels_last));
      if (has_bias) db = Tensor::empty({g.K}, dy.dtype(), dy.device());
      if (dy.device().is_cpu()) {
        dispatch_float(dy.dtype(), "conv2d backward", [&]<typename T>() {
          conv2d_backward_filter_cpu<T>(dw.data<T>(), has_bias ? db.data<T>() : nullptr, dy.data<T>(), x.data<T>(), g);
        });
      } else {
        ENGINE_DISPATCH_CUDA(dy.device(), "conv2d backward",
                             conv2d_backward_filter_cuda(dy.device().index, dw.data_ptr(),
                                                         has_bias ? db.data_ptr() : nullptr, dy.data_ptr(),
                                                         x.data_ptr(), dy.dtype(), channels_last, g));
      }
      dw = dw.contiguous(weight_format);
    }
    return {dx, dw, db};
  }
  void release_saved() override { x = weight = Tensor(); }
};

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt) {
  check_defined(x, "conv2d", "x");
  check_defined(weight, "conv2d", "weight");
  check_same_device(x, weight, "conv2d");
  check_same_dtype(x, weight, "conv2d");
  const Conv2dGeometry g = Conv2dGeometry::make(x.shape(), weight.shape(), opt);
  if (bias.defined()) {
    check_same_device(x, bias, "conv2d");
    check_same_dtype(x, bias, "conv2d");
    ENGINE_CHECK(bias.dim() == 1 && bias.size(0) == g.K, "conv2d: bias must be ({}) for {} output channels, found {}",
                 g.K, g.K, bias.str());
  }
  // The CPU's bf16 mode (ops/cpu_bf16.h): the f32 reference on the same values, y rounded to bf16
  // as cuDNN's bf16 output is.
  if (cpu_bf16(x)) return conv2d(widened(x), widened(weight), widened(bias), opt).to(DType::bf16);
  const bool cl = compute_channels_last(x);
  const MemoryFormat format = format_of(cl);
  const Tensor xc = x.detach().contiguous(format), wc = weight.detach().contiguous(format);
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty({g.N, g.K, g.P, g.Q}, x.dtype(), x.device(), format);
  if (y.device().is_cpu()) {
    dispatch_float(x.dtype(), "conv2d", [&]<typename T>() {
      conv2d_forward_cpu<T>(y.data<T>(), xc.data<T>(), wc.data<T>(), bc.defined() ? bc.data<T>() : nullptr, g);
    });
  } else {
    ENGINE_DISPATCH_CUDA(y.device(), "conv2d",
                         conv2d_forward_cuda(y.device().index, y.data_ptr(), xc.data_ptr(), wc.data_ptr(),
                                             bc.defined() ? bc.data_ptr() : nullptr, y.dtype(), cl, g));
  }
  if (autograd::needs_grad({&x, &weight, &bias})) {
    auto node = std::make_shared<Conv2dBackward>();
    node->x = xc;
    node->weight = wc;
    node->geometry = g;
    node->channels_last = cl;
    node->has_bias = bias.defined();
    node->weight_format = weight.memory_format();
    autograd::record(node, y, {&x, &weight, &bias});
  }
  // The CPU computes in NCHW: hand an NHWC caller its output in NHWC.
  if (!cl && x.memory_format() == MemoryFormat::NHWC) return y.contiguous(MemoryFormat::NHWC);
  return y;
}

}  // namespace engine
