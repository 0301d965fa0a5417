// batchnorm2d.cpp - checks, dispatch and autograd for batchnorm2d.
#include "engine/autograd.h"
#include "ops/batchnorm2d.h"
#include "ops/reduce_dim.h"

namespace engine {

namespace {

// The dtype of gamma, beta and the statistics: the activation's on the CPU, f32 on CUDA.
DType parameter_dtype(const Tensor& x) { return x.device().is_cuda() ? DType::f32 : x.dtype(); }

void check_parameter(const Tensor& p, const Tensor& x, const char* what) {
  check_defined(p, "batchnorm2d", what);
  check_same_device(x, p, "batchnorm2d");
  ENGINE_CHECK(p.dim() == 1 && p.size(0) == x.size(1), "batchnorm2d: {} must be ({}) for x {}, found {}", what,
               x.size(1), shape_str(x.shape()), p.str());
  ENGINE_CHECK(p.dtype() == parameter_dtype(x),
               "batchnorm2d: {} must be {} for {} activations on {} (statistics are kept in {}), found {}", what,
               dtype_name(parameter_dtype(x)), dtype_name(x.dtype()), x.device().str(),
               dtype_name(parameter_dtype(x)), dtype_name(p.dtype()));
}

// The statistics of a ghost batch: `groups` consecutive groups of images, each a contiguous slice
// of `per_group` elements laid out as `layout` (the whole batch's layout with N / groups images).
struct GhostGroups {
  int64_t groups = 1;
  ChannelLayout layout{};
  int64_t per_group = 0;
  GhostGroups(const ChannelLayout& whole, int64_t count)
      : groups(count), layout{whole.N / count, whole.C, whole.HW, whole.channels_last}, per_group(layout.numel()) {}
};

// Byte offset of group g's slice of an activation of `dtype`.
void* group_ptr(void* base, DType dtype, const GhostGroups& gg, int64_t g) {
  return static_cast<char*>(base) + g * gg.per_group * dtype_size(dtype);
}

struct BatchNorm2dBackward : Node {
  Tensor x, gamma, mean, invstd;  // x in the layout the forward computed in; mean, invstd (groups, C)
  bool training = true;
  int64_t groups = 1;
  const char* name() const override { return "BatchNorm2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const GhostGroups gg(channel_layout_of(x), groups);
    const int64_t C = gg.layout.C;
    const Tensor dy = dout.contiguous(x.memory_format());
    Tensor dx = needs_input_grad(0) ? Tensor::empty(x.shape(), x.dtype(), x.device(), x.memory_format()) : Tensor();
    // Each group's dgamma and dbeta in one row; summed over the groups below.
    Tensor dgamma = Tensor::empty({groups, C}, gamma.dtype(), gamma.device());
    Tensor dbeta = Tensor::empty({groups, C}, gamma.dtype(), gamma.device());
    for (int64_t g = 0; g < groups; ++g) {
      void* dxg = dx.defined() ? group_ptr(dx.data_ptr(), x.dtype(), gg, g) : nullptr;
      const void* dyg = group_ptr(dy.data_ptr(), x.dtype(), gg, g);
      const void* xg = group_ptr(x.data_ptr(), x.dtype(), gg, g);
      if (x.device().is_cpu()) {
        dispatch_float(x.dtype(), "batchnorm2d backward", [&]<typename T>() {
          batchnorm2d_backward_cpu<T>(static_cast<T*>(dxg), dgamma.data<T>() + g * C, dbeta.data<T>() + g * C,
                                      static_cast<const T*>(dyg), static_cast<const T*>(xg), gamma.data<T>(),
                                      mean.data<T>() + g * C, invstd.data<T>() + g * C, gg.layout, training);
        });
      } else {
        ENGINE_DISPATCH_CUDA(x.device(), "batchnorm2d backward",
                             batchnorm2d_backward_cuda(x.device().index, dxg, dgamma.data<float>() + g * C,
                                                       dbeta.data<float>() + g * C, dyg, xg, gamma.data<float>(),
                                                       mean.data<float>() + g * C, invstd.data<float>() + g * C,
                                                       x.dtype(), gg.layout, training));
      }
    }
    if (groups > 1) {
      dgamma = sum(dgamma, 0);
      dbeta = sum(dbeta, 0);
    } else {
      dgamma = dgamma.view({C});
      dbeta = dbeta.view({C});
    }
    return {dx, needs_input_grad(1) ? dgamma : Tensor(), needs_input_grad(2) ? dbeta : Tensor()};
  }
  void release_saved() override { x = gamma = mean = invstd = Tensor(); }
};

// One group's training forward: y, the saved statistics and (when given) the running ones.
void forward_train_group(const Tensor& y, const Tensor& xc, const Tensor& g, const Tensor& b, const Tensor& mean,
                         const Tensor& invstd, void* running_mean, void* running_var, const GhostGroups& gg,
                         int64_t group, const BatchNormOptions& opt) {
  const int64_t C = gg.layout.C;
  void* yg = group_ptr(y.data_ptr(), y.dtype(), gg, group);
  const void* xg = group_ptr(xc.data_ptr(), xc.dtype(), gg, group);
  if (xc.device().is_cpu()) {
    dispatch_float(xc.dtype(), "batchnorm2d", [&]<typename T>() {
      batchnorm2d_forward_train_cpu<T>(static_cast<T*>(yg), mean.data<T>() + group * C, invstd.data<T>() + group * C,
                                       static_cast<T*>(running_mean), static_cast<T*>(running_var),
                                       static_cast<const T*>(xg), g.data<T>(), b.data<T>(), gg.layout, opt.momentum,
                                       opt.eps);
    });
  } else {
    ENGINE_DISPATCH_CUDA(xc.device(), "batchnorm2d",
                         batchnorm2d_forward_train_cuda(xc.device().index, yg, mean.data<float>() + group * C,
                                                        invstd.data<float>() + group * C,
                                                        static_cast<float*>(running_mean),
                                                        static_cast<float*>(running_var), xg, g.data<float>(),
                                                        b.data<float>(), xc.dtype(), gg.layout, opt.momentum, opt.eps));
  }
}

}  // namespace

Tensor batchnorm2d(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean, Tensor running_var,
                   const BatchNormOptions& opt) {
  check_defined(x, "batchnorm2d", "x");
  ENGINE_CHECK(x.dim() == 4, "batchnorm2d: expected x (N, C, H, W), found {}", x.str());
  check_parameter(gamma, x, "gamma");
  check_parameter(beta, x, "beta");
  ENGINE_CHECK(running_mean.defined() == running_var.defined(),
               "batchnorm2d: give both running_mean and running_var, or neither");
  const bool has_running = running_mean.defined();
  if (has_running) {
    check_parameter(running_mean, x, "running_mean");
    check_parameter(running_var, x, "running_var");
    ENGINE_CHECK(running_mean.is_contiguous() && running_var.is_contiguous(),
                 "batchnorm2d: the running statistics are updated in place and must be contiguous");
  }
  ENGINE_CHECK(opt.training || has_running,
               "batchnorm2d: eval mode normalises with the running statistics, but none were given");
  const int64_t groups = opt.training ? opt.groups : 1;
  ENGINE_CHECK(groups >= 1 && x.size(0) % groups == 0,
               "batchnorm2d: {} ghost groups must divide the batch of {} images evenly (x {}); choose a batch "
               "that is a multiple of the group count",
               opt.groups, x.size(0), shape_str(x.shape()));
  const int64_t M = x.size(0) / groups * x.size(2) * x.size(3);
  ENGINE_CHECK(!opt.training || M > 1,
               "batchnorm2d: training needs more than one value per channel and group, found x {} in {} group(s) "
               "(M = N/groups*H*W = {}); use a larger batch, fewer groups or eval mode",
               shape_str(x.shape()), groups, M);

  const MemoryFormat format = x.memory_format();
  const Tensor xc = x.detach().contiguous(format);
  const Tensor g = gamma.detach().contiguous(), b = beta.detach().contiguous();
  const ChannelLayout l = channel_layout_of(xc);
  const GhostGroups gg(l, groups);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), format);
  Tensor mean = opt.training ? Tensor::empty({groups, l.C}, g.dtype(), x.device()) : running_mean.detach();
  Tensor invstd = Tensor::empty({groups, l.C}, g.dtype(), x.device());
  if (opt.training) {
    const bool average = groups > 1 && has_running && opt.running_stats == GhostRunningStats::Average;
    // Average: every group updates its own copy of the running statistics, and the copies are
    // averaged: mean_g((1 - m) r + m s_g) = (1 - m) r + m mean_g(s_g).
    Tensor copies_mean, copies_var;
    if (average) {
      copies_mean = Tensor::empty({groups, l.C}, g.dtype(), x.device());
      copies_var = Tensor::empty({groups, l.C}, g.dtype(), x.device());
      for (int64_t k = 0; k < groups; ++k) {
        copies_mean.slice(0, k, k + 1).copy_(running_mean.view({1, l.C}));
        copies_var.slice(0, k, k + 1).copy_(running_var.view({1, l.C}));
      }
    }
    const int64_t item = dtype_size(g.dtype());
    for (int64_t k = 0; k < groups; ++k) {
      void* rm = nullptr;
      void* rv = nullptr;
      if (average) {
        rm = static_cast<char*>(copies_mean.data_ptr()) + k * l.C * item;
        rv = static_cast<char*>(copies_var.data_ptr()) + k * l.C * item;
      } else if (has_running && k == 0) {
        rm = running_mean.data_ptr();
        rv = running_var.data_ptr();
      }
      forward_train_group(y, xc, g, b, mean, invstd, rm, rv, gg, k, opt);
    }
    if (average) {
      running_mean.copy_(engine::mean(copies_mean, 0));
      running_var.copy_(engine::mean(copies_var, 0));
    }
  } else if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "batchnorm2d", [&]<typename T>() {
      batchnorm2d_forward_eval_cpu<T>(y.data<T>(), invstd.data<T>(), xc.data<T>(), g.data<T>(), b.data<T>(),
                                      running_mean.data<T>(), running_var.data<T>(), l, opt.eps);
    });
  } else {
    ENGINE_DISPATCH_CUDA(x.device(), "batchnorm2d",
                         batchnorm2d_forward_eval_cuda(x.device().index, y.data_ptr(), invstd.data<float>(),
                                                       xc.data_ptr(), g.data<float>(), b.data<float>(),
                                                       running_mean.data<float>(), running_var.data<float>(),
                                                       x.dtype(), l, opt.eps));
  }
  if (autograd::needs_grad({&x, &gamma, &beta})) {
    auto node = std::make_shared<BatchNorm2dBackward>();
    node->x = xc;
    node->gamma = g;
    // In eval the running mean may move on before backward: keep the value used.
    node->mean = opt.training ? mean : running_mean.detach().clone().view({1, l.C});
    node->invstd = invstd;
    node->training = opt.training;
    node->groups = groups;
    autograd::record(node, y, {&x, &gamma, &beta});
  }
  return y;
}

}  // namespace engine
