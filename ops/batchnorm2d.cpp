// batchnorm2d.cpp - checks, dispatch and autograd for batchnorm2d.
#include "engine/autograd.h"
#include "ops/batchnorm2d.h"

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

struct BatchNorm2dBackward : Node {
  Tensor x, gamma, mean, invstd;  // x in the layout the forward computed in; mean, invstd (groups, C)
  bool training = true;
  int64_t groups = 1;
  const char* name() const override { return "BatchNorm2dBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const ChannelLayout l = channel_layout_of(x);
    const Tensor dy = dout.contiguous(x.memory_format());
    Tensor dx = needs_input_grad(0) ? Tensor::empty(x.shape(), x.dtype(), x.device(), x.memory_format()) : Tensor();
    Tensor dgamma = Tensor::empty({l.C}, gamma.dtype(), gamma.device());  // summed over the groups
    Tensor dbeta = Tensor::empty({l.C}, gamma.dtype(), gamma.device());
    void* dxp = dx.defined() ? dx.data_ptr() : nullptr;
    if (x.device().is_cpu()) {
      dispatch_float(x.dtype(), "batchnorm2d backward", [&]<typename T>() {
        batchnorm2d_backward_cpu<T>(static_cast<T*>(dxp), dgamma.data<T>(), dbeta.data<T>(), dy.data<T>(), x.data<T>(),
                                    gamma.data<T>(), mean.data<T>(), invstd.data<T>(), l, groups, training);
      });
    } else {
      ENGINE_DISPATCH_CUDA(x.device(), "batchnorm2d backward",
                           batchnorm2d_backward_cuda(x.device().index, dxp, dgamma.data<float>(), dbeta.data<float>(),
                                                     dy.data_ptr(), x.data_ptr(), gamma.data<float>(),
                                                     mean.data<float>(), invstd.data<float>(), x.dtype(), l, groups,
                                                     training));
    }
    return {dx, needs_input_grad(1) ? dgamma : Tensor(), needs_input_grad(2) ? dbeta : Tensor()};
  }
  void release_saved() override { x = gamma = mean = invstd = Tensor(); }
};

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
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), format);
  Tensor mean = opt.training ? Tensor::empty({groups, l.C}, g.dtype(), x.device()) : running_mean.detach();
  Tensor invstd = Tensor::empty({groups, l.C}, g.dtype(), x.device());
  if (opt.training) {
    void* rm = has_running ? running_mean.data_ptr() : nullptr;
    void* rv = has_running ? running_var.data_ptr() : nullptr;
    if (x.device().is_cpu()) {
      dispatch_float(x.dtype(), "batchnorm2d", [&]<typename T>() {
        batchnorm2d_forward_train_cpu<T>(y.data<T>(), mean.data<T>(), invstd.data<T>(), static_cast<T*>(rm),
                                         static_cast<T*>(rv), xc.data<T>(), g.data<T>(), b.data<T>(), l, groups,
                                         opt.running_stats, opt.momentum, opt.eps);
      });
    } else {
      ENGINE_DISPATCH_CUDA(x.device(), "batchnorm2d",
                           batchnorm2d_forward_train_cuda(x.device().index, y.data_ptr(), mean.data<float>(),
                                                          invstd.data<float>(), static_cast<float*>(rm),
                                                          static_cast<float*>(rv), xc.data_ptr(), g.data<float>(),
                                                          b.data<float>(), x.dtype(), l, groups, opt.running_stats,
                                                          opt.momentum, opt.eps));
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
