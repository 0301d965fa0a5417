// pooling.cpp - checks, dispatch and autograd for maxpool2d, avgpool_global and region_avgpool.
#include <limits>

#include "engine/autograd.h"
#include "ops/cpu_bf16.h"
#include "ops/pooling.h"

namespace engine {

MaxPool2dGeometry MaxPool2dGeometry::make(const Shape& x, int64_t kernel, int64_t stride, int64_t padding,
                                          bool channels_last) {
  ENGINE_CHECK(x.size() == 4, "maxpool2d: expected x (N, C, H, W), found {}", shape_str(x));
  ENGINE_CHECK(kernel > 0 && stride > 0 && padding >= 0 && 2 * padding <= kernel,
               "maxpool2d: kernel {} and stride {} must be positive and padding {} at most half the kernel", kernel,
               stride, padding);
  ENGINE_CHECK(x[2] + 2 * padding >= kernel && x[3] + 2 * padding >= kernel,
               "maxpool2d: the {}x{} window does not fit the input {} padded by {}", kernel, kernel, shape_str(x),
               padding);
  ENGINE_CHECK(x[2] * x[3] <= std::numeric_limits<int32_t>::max(),
               "maxpool2d: a {}x{} plane is too large for the 32-bit argmax", x[2], x[3]);
  return {x[0], x[1], x[2], x[3], (x[2] + 2 * padding - kernel) / stride + 1, (x[3] + 2 * padding - kernel) / stride + 1,
          kernel, stride, padding, channels_last};
}

namespace {

struct MaxPool2dBackward : Node {
  Tensor argmax;
  MaxPool2dGeometry geometry{};
  DType dtype = DType::f32;
  Device device = Device::cpu();
  const char* name() const override { return "MaxPool2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const MaxPool2dGeometry& g = geometry;
    const MemoryFormat format = g.channels_last ? MemoryFormat::NHWC : MemoryFormat::NCHW;
    const Tensor dy = dout.contiguous(format);
    Tensor dx = Tensor::empty({g.N, g.C, g.H, g.W}, dtype, device, format);
    if (device.is_cpu()) {
      dispatch_float(dtype, "maxpool2d backward", [&]<typename T>() {
        maxpool2d_backward_cpu<T>(dx.data<T>(), dy.data<T>(), argmax.data<int32_t>(), g);
      });
    } else {
      ENGINE_DISPATCH_CUDA(device, "maxpool2d backward",
                           maxpool2d_backward_cuda(device.index, dx.data_ptr(), dy.data_ptr(),
                                                   argmax.data<int32_t>(), dtype, g));
    }
    return {dx};
  }
  void release_saved() override { argmax = Tensor(); }
};

struct AvgPoolGlobalBackward : Node {
  Shape shape;
  MemoryFormat format = MemoryFormat::NCHW;
  const char* name() const override { return "AvgPoolGlobalBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const Tensor dy = dout.contiguous();
    Tensor dx = Tensor::empty(shape, dy.dtype(), dy.device(), format);
    const ChannelLayout l = channel_layout_of(dx);
    if (dy.device().is_cpu()) {
      dispatch_float(dy.dtype(), "avgpool_global backward",
                     [&]<typename T>() { avgpool_global_backward_cpu<T>(dx.data<T>(), dy.data<T>(), l); });
    } else {
      ENGINE_DISPATCH_CUDA(dy.device(), "avgpool_global backward",
                           avgpool_global_backward_cuda(dy.device().index, dx.data_ptr(), dy.data_ptr(), dy.dtype(), l));
    }
    return {dx};
  }
};

}  // namespace

Tensor maxpool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_defined(x, "maxpool2d", "x");
  if (cpu_bf16(x)) return maxpool2d(widened(x), kernel, stride, padding).to(DType::bf16);  // ops/cpu_bf16.h
  const bool cl = x.dim() == 4 && x.memory_format() == MemoryFormat::NHWC;
  const MaxPool2dGeometry g = MaxPool2dGeometry::make(x.shape(), kernel, stride, padding, cl);
  const MemoryFormat format = cl ? MemoryFormat::NHWC : MemoryFormat::NCHW;
  const Tensor xc = x.detach().contiguous(format);
  Tensor y = Tensor::empty({g.N, g.C, g.P, g.Q}, x.dtype(), x.device(), format);
  Tensor argmax = Tensor::empty({g.N, g.C, g.P, g.Q}, DType::i32, x.device(), format);
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "maxpool2d", [&]<typename T>() {
      maxpool2d_forward_cpu<T>(y.data<T>(), argmax.data<int32_t>(), xc.data<T>(), g);
    });
  } else {
    ENGINE_DISPATCH_CUDA(x.device(), "maxpool2d",
                         maxpool2d_forward_cuda(x.device().index, y.data_ptr(), argmax.data<int32_t>(), xc.data_ptr(),
                                                x.dtype(), g));
  }
  if (autograd::needs_grad({&x})) {
    auto node = std::make_shared<MaxPool2dBackward>();
    node->argmax = argmax;
    node->geometry = g;
    node->dtype = x.dtype();
    node->device = x.device();
    autograd::record(node, y, {&x});
  }
  return y;
}

Tensor avgpool_global(const Tensor& x) {
  check_defined(x, "avgpool_global", "x");
  ENGINE_CHECK(x.dim() == 4 && x.size(2) * x.size(3) > 0,
               "avgpool_global: expected x (N, C, H, W) with H, W > 0, found {}", x.str());
  if (cpu_bf16(x)) return avgpool_global(widened(x)).to(DType::bf16);  // ops/cpu_bf16.h
  const MemoryFormat format = x.memory_format();
  const Tensor xc = x.detach().contiguous(format);
  const ChannelLayout l = channel_layout_of(xc);
  Tensor y = Tensor::empty({l.N, l.C}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "avgpool_global",
                   [&]<typename T>() { avgpool_global_forward_cpu<T>(y.data<T>(), xc.data<T>(), l); });
  } else {
    ENGINE_DISPATCH_CUDA(x.device(), "avgpool_global",
                         avgpool_global_forward_cuda(x.device().index, y.data_ptr(), xc.data_ptr(), x.dtype(), l));
  }
  if (autograd::needs_grad({&x})) {
    auto node = std::make_shared<AvgPoolGlobalBackward>();
    node->shape = x.shape();
    node->format = format;
    autograd::record(node, y, {&x});
  }
  return y;
}

Tensor region_avgpool(const Tensor& x, const Tensor& weights, const Tensor& image) {
  check_defined(x, "region_avgpool", "x");
  check_defined(weights, "region_avgpool", "weights");
  check_defined(image, "region_avgpool", "image");
  ENGINE_CHECK(!autograd::needs_grad({&x}),
               "region_avgpool: x requires a gradient, but region_avgpool has no backward (it pools frozen "
               "features); run the network under NoGradGuard");
  ENGINE_CHECK(x.dim() == 4, "region_avgpool: expected x (N, C, H, W), found {}", x.str());
  const int64_t R = weights.dim() == 3 ? weights.size(0) : -1;
  ENGINE_CHECK(R >= 0 && weights.size(1) == x.size(2) && weights.size(2) == x.size(3),
               "region_avgpool: expected weights (R, {}, {}) over x's cells, found {}", x.size(2), x.size(3),
               weights.str());
  const DType weight_dtype = x.device().is_cpu() && x.dtype() != DType::bf16 ? x.dtype() : DType::f32;
  ENGINE_CHECK(weights.dtype() == weight_dtype && weights.device() == x.device(),
               "region_avgpool: expected weights of {} on {} for x {} on {}, found {} on {}", dtype_name(weight_dtype),
               x.device().str(), dtype_name(x.dtype()), x.device().str(), dtype_name(weights.dtype()),
               weights.device().str());
  ENGINE_CHECK(image.dtype() == DType::i64 && image.device().is_cpu() && image.dim() == 1 && image.size(0) == R,
               "region_avgpool: expected image ({}) i64 on the CPU, found {}", R, image.str());
  if (cpu_bf16(x)) return region_avgpool(widened(x), weights, image).to(DType::bf16);  // ops/cpu_bf16.h
  const Tensor image_host = image.contiguous();
  const int64_t* images = image_host.data<int64_t>();
  for (int64_t r = 0; r < R; ++r)
    ENGINE_CHECK(images[r] >= 0 && images[r] < x.size(0),
                 "region_avgpool: region {} belongs to image {}, outside x's {} images", r, images[r], x.size(0));
  const Tensor xc = x.contiguous(x.memory_format());
  const Tensor wc = weights.contiguous();
  const ChannelLayout l = channel_layout_of(xc);
  Tensor y = Tensor::empty({R, l.C}, x.dtype(), x.device());
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "region_avgpool", [&]<typename T>() {
      region_avgpool_forward_cpu<T>(y.data<T>(), xc.data<T>(), wc.data<T>(), images, R, l);
    });
  } else {
    const Tensor image_device = image_host.to(x.device());
    ENGINE_DISPATCH_CUDA(x.device(), "region_avgpool",
                         region_avgpool_forward_cuda(x.device().index, y.data_ptr(), xc.data_ptr(), wc.data<float>(),
                                                     image_device.data<int64_t>(), x.dtype(), R, l));
  }
  return y;
}

}  // namespace engine
