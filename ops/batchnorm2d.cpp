// batchnorm2d.cpp - checks, dispatch and autograd for batchnorm2d and its fused epilogues
// batchnorm2d_relu and batchnorm2d_add_relu: one implementation, the epilogue a parameter.
#include "engine/autograd.h"
#include "ops/batchnorm2d.h"
#include "ops/cpu_bf16.h"

namespace engine {

namespace {

// What follows the normalisation.
enum class Epilogue { None, Relu, AddRelu };

const char* op_name(Epilogue e) {
  switch (e) {
    case Epilogue::None: return "batchnorm2d";
    case Epilogue::Relu: return "batchnorm2d_relu";
    case Epilogue::AddRelu: return "batchnorm2d_add_relu";
  }
  return "batchnorm2d";
}

// One rule on both devices: gamma, beta and the statistics are f32 under bf16 activations, else
// the activations' dtype.
DType parameter_dtype(const Tensor& x) { return x.dtype() == DType::bf16 ? DType::f32 : x.dtype(); }

void check_activation(const Tensor& x, const char* op) {
  const DType t = x.dtype();
  const bool cpu = x.device().is_cpu();
  ENGINE_CHECK(t == DType::f32 || t == DType::bf16 || (cpu && t == DType::f64),
               "{}: x must be f32 or bf16{}, found {} on {}", op, cpu ? " (or f64 on the CPU)" : "", dtype_name(t),
               x.device().str());
}

void check_parameter(const Tensor& p, const Tensor& x, const char* op, const char* what) {
  check_defined(p, op, what);
  check_same_device(x, p, op);
  ENGINE_CHECK(p.dim() == 1 && p.size(0) == x.size(1), "{}: {} must be ({}) for x {}, found {}", op, what, x.size(1),
               shape_str(x.shape()), p.str());
  ENGINE_CHECK(p.dtype() == parameter_dtype(x),
               "{}: {} must be {} for {} activations (statistics are kept in {}), found {}", op, what,
               dtype_name(parameter_dtype(x)), dtype_name(x.dtype()), dtype_name(parameter_dtype(x)),
               dtype_name(p.dtype()));
}

void check_inputs(Epilogue e, const Tensor& x, const Tensor* residual, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, const BatchNormOptions& opt) {
  const char* op = op_name(e);
  check_defined(x, op, "x");
  ENGINE_CHECK(x.dim() == 4, "{}: expected x (N, C, H, W), found {}", op, x.str());
  check_activation(x, op);
  if (residual) {
    check_defined(*residual, op, "residual");
    check_same_device(x, *residual, op);
    check_same_dtype(x, *residual, op);
    check_same_shape(x, *residual, op);
  }
  check_parameter(gamma, x, op, "gamma");
  check_parameter(beta, x, op, "beta");
  ENGINE_CHECK(running_mean.defined() == running_var.defined(),
               "{}: give both running_mean and running_var, or neither", op);
  if (running_mean.defined()) {
    check_parameter(running_mean, x, op, "running_mean");
    check_parameter(running_var, x, op, "running_var");
    ENGINE_CHECK(running_mean.is_contiguous() && running_var.is_contiguous(),
                 "{}: the running statistics are updated in place and must be contiguous", op);
  }
  ENGINE_CHECK(opt.training || running_mean.defined(),
               "{}: eval mode normalises with the running statistics, but none were given", op);
  const int64_t groups = opt.training ? opt.groups : 1;
  ENGINE_CHECK(groups >= 1 && x.size(0) % groups == 0,
               "{}: {} ghost groups must divide the batch of {} images evenly (x {}); choose a batch "
               "that is a multiple of the group count",
               op, opt.groups, x.size(0), shape_str(x.shape()));
  const int64_t M = x.size(0) / groups * x.size(2) * x.size(3);
  ENGINE_CHECK(!opt.training || M > 1,
               "{}: training needs more than one value per channel and group, found x {} in {} group(s) "
               "(M = N/groups*H*W = {}); use a larger batch, fewer groups or eval mode",
               op, shape_str(x.shape()), groups, M);
}

struct BatchNorm2dBackward : Node {
  Tensor x, gamma, mean, invstd;  // x in the layout the forward computed in; mean, invstd (groups, C)
  Tensor y;                       // the fused ops' output, in x's layout: the relu mask
  Epilogue epilogue = Epilogue::None;
  bool training = true;
  int64_t groups = 1;
  const char* name() const override {
    switch (epilogue) {
      case Epilogue::None: return "BatchNorm2dBackward";
      case Epilogue::Relu: return "BatchNorm2dReluBackward";
      case Epilogue::AddRelu: return "BatchNorm2dAddReluBackward";
    }
    return "BatchNorm2dBackward";
  }
  // Inputs: x, gamma, beta; with AddRelu x, residual, gamma, beta.
  std::vector<Tensor> backward(const Tensor& dout) override {
    const ChannelLayout l = channel_layout_of(x);
    const bool add = epilogue == Epilogue::AddRelu;
    const size_t gamma_input = add ? 2 : 1;
    const Tensor dy = dout.contiguous(x.memory_format());
    const auto like_x = [&] { return Tensor::empty(x.shape(), x.dtype(), x.device(), x.memory_format()); };
    Tensor dx = needs_input_grad(0) ? like_x() : Tensor();
    Tensor d_residual = add && needs_input_grad(1) ? like_x() : Tensor();
    Tensor dgamma = Tensor::empty({l.C}, gamma.dtype(), gamma.device());  // summed over the groups
    Tensor dbeta = Tensor::empty({l.C}, gamma.dtype(), gamma.device());
    void* dxp = dx.defined() ? dx.data_ptr() : nullptr;
    void* drp = d_residual.defined() ? d_residual.data_ptr() : nullptr;
    const char* what = name();
    if (x.device().is_cpu()) {
      dispatch_float(x.dtype(), what, [&]<typename T>() {
        if (epilogue == Epilogue::None)
          batchnorm2d_backward_cpu<T>(static_cast<T*>(dxp), dgamma.data<T>(), dbeta.data<T>(), dy.data<T>(),
                                      x.data<T>(), gamma.data<T>(), mean.data<T>(), invstd.data<T>(), l, groups,
                                      training);
        else
          batchnorm2d_relu_backward_cpu<T>(static_cast<T*>(dxp), static_cast<T*>(drp), dgamma.data<T>(),
                                           dbeta.data<T>(), dy.data<T>(), y.data<T>(), x.data<T>(), gamma.data<T>(),
                                           mean.data<T>(), invstd.data<T>(), l, groups, training);
      });
    } else if (epilogue == Epilogue::None) {
      ENGINE_DISPATCH_CUDA(x.device(), what,
                           batchnorm2d_backward_cuda(x.device().index, dxp, dgamma.data<float>(), dbeta.data<float>(),
                                                     dy.data_ptr(), x.data_ptr(), gamma.data<float>(),
                                                     mean.data<float>(), invstd.data<float>(), x.dtype(), l, groups,
                                                     training));
    } else {
      ENGINE_DISPATCH_CUDA(x.device(), what,
                           batchnorm2d_relu_backward_cuda(x.device().index, dxp, drp, dgamma.data<float>(),
                                                          dbeta.data<float>(), dy.data_ptr(), y.data_ptr(),
                                                          x.data_ptr(), gamma.data<float>(), mean.data<float>(),
                                                          invstd.data<float>(), x.dtype(), l, groups, training));
    }
    if (!needs_input_grad(gamma_input)) dgamma = Tensor();
    if (!needs_input_grad(gamma_input + 1)) dbeta = Tensor();
    if (add) return {dx, d_residual, dgamma, dbeta};
    return {dx, dgamma, dbeta};
  }
  void release_saved() override { x = gamma = mean = invstd = y = Tensor(); }
};

// The three ops; residual is null except for AddRelu.
Tensor batchnorm2d_impl(Epilogue e, const Tensor& x, const Tensor* residual, const Tensor& gamma, const Tensor& beta,
                        Tensor running_mean, Tensor running_var, const BatchNormOptions& opt) {
  check_inputs(e, x, residual, gamma, beta, running_mean, running_var, opt);
  if (cpu_bf16(x)) {
    // The CPU's bf16 mode (ops/cpu_bf16.h): the f32 reference on the bf16 values, y rounded to
    // bf16; the casts are recorded, so dx (and d_residual) come back as bf16 and dgamma, dbeta as
    // f32, as on CUDA.
    const Tensor r32 = residual ? widened(*residual) : Tensor();
    return batchnorm2d_impl(e, widened(x), residual ? &r32 : nullptr, gamma, beta, running_mean, running_var, opt)
        .to(DType::bf16);
  }
  const char* op = op_name(e);
  const bool has_running = running_mean.defined();
  const int64_t groups = opt.training ? opt.groups : 1;
  const MemoryFormat format = x.memory_format();
  const Tensor xc = x.detach().contiguous(format);
  const Tensor rc = residual ? residual->detach().contiguous(format) : Tensor();  // in x's layout
  const Tensor g = gamma.detach().contiguous(), b = beta.detach().contiguous();
  const ChannelLayout l = channel_layout_of(xc);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device(), format);
  Tensor mean = opt.training ? Tensor::empty({groups, l.C}, g.dtype(), x.device()) : running_mean.detach();
  Tensor invstd = Tensor::empty({groups, l.C}, g.dtype(), x.device());
  const void* rp = rc.defined() ? rc.data_ptr() : nullptr;
  const bool fused = e != Epilogue::None;
  if (opt.training) {
    void* rm = has_running ? running_mean.data_ptr() : nullptr;
    void* rv = has_running ? running_var.data_ptr() : nullptr;
    if (x.device().is_cpu()) {
      dispatch_float(x.dtype(), op, [&]<typename T>() {
        if (fused)
          batchnorm2d_relu_forward_train_cpu<T>(y.data<T>(), mean.data<T>(), invstd.data<T>(), static_cast<T*>(rm),
                                                static_cast<T*>(rv), xc.data<T>(), static_cast<const T*>(rp),
                                                g.data<T>(), b.data<T>(), l, groups, opt.running_stats, opt.momentum,
                                                opt.eps);
        else
          batchnorm2d_forward_train_cpu<T>(y.data<T>(), mean.data<T>(), invstd.data<T>(), static_cast<T*>(rm),
                                           static_cast<T*>(rv), xc.data<T>(), g.data<T>(), b.data<T>(), l, groups,
                                           opt.running_stats, opt.momentum, opt.eps);
      });
    } else if (fused) {
      ENGINE_DISPATCH_CUDA(x.device(), op,
                           batchnorm2d_relu_forward_train_cuda(
                               x.device().index, y.data_ptr(), mean.data<float>(), invstd.data<float>(),
                               static_cast<float*>(rm), static_cast<float*>(rv), xc.data_ptr(), rp, g.data<float>(),
                               b.data<float>(), x.dtype(), l, groups, opt.running_stats, opt.momentum, opt.eps));
    } else {
      ENGINE_DISPATCH_CUDA(x.device(), op,
                           batchnorm2d_forward_train_cuda(x.device().index, y.data_ptr(), mean.data<float>(),
                                                          invstd.data<float>(), static_cast<float*>(rm),
                                                          static_cast<float*>(rv), xc.data_ptr(), g.data<float>(),
                                                          b.data<float>(), x.dtype(), l, groups, opt.running_stats,
                                                          opt.momentum, opt.eps));
    }
  } else if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), op, [&]<typename T>() {
      if (fused)
        batchnorm2d_relu_forward_eval_cpu<T>(y.data<T>(), invstd.data<T>(), xc.data<T>(), static_cast<const T*>(rp),
                                             g.data<T>(), b.data<T>(), running_mean.data<T>(), running_var.data<T>(),
                                             l, opt.eps);
      else
        batchnorm2d_forward_eval_cpu<T>(y.data<T>(), invstd.data<T>(), xc.data<T>(), g.data<T>(), b.data<T>(),
                                        running_mean.data<T>(), running_var.data<T>(), l, opt.eps);
    });
  } else if (fused) {
    ENGINE_DISPATCH_CUDA(x.device(), op,
                         batchnorm2d_relu_forward_eval_cuda(x.device().index, y.data_ptr(), invstd.data<float>(),
                                                            xc.data_ptr(), rp, g.data<float>(), b.data<float>(),
                                                            running_mean.data<float>(), running_var.data<float>(),
                                                            x.dtype(), l, opt.eps));
  } else {
    ENGINE_DISPATCH_CUDA(x.device(), op,
                         batchnorm2d_forward_eval_cuda(x.device().index, y.data_ptr(), invstd.data<float>(),
                                                       xc.data_ptr(), g.data<float>(), b.data<float>(),
                                                       running_mean.data<float>(), running_var.data<float>(),
                                                       x.dtype(), l, opt.eps));
  }
  const bool add = e == Epilogue::AddRelu;
  if (add ? autograd::needs_grad({&x, residual, &gamma, &beta}) : autograd::needs_grad({&x, &gamma, &beta})) {
    auto node = std::make_shared<BatchNorm2dBackward>();
    node->x = xc;
    node->gamma = g;
    // In eval the running mean may move on before backward: keep the value used.
    node->mean = opt.training ? mean : running_mean.detach().clone().view({1, l.C});
    node->invstd = invstd;
    if (fused) node->y = y.detach();  // detached: the node must not own its own output
    node->epilogue = e;
    node->training = opt.training;
    node->groups = groups;
    if (add)
      autograd::record(node, y, {&x, residual, &gamma, &beta});
    else
      autograd::record(node, y, {&x, &gamma, &beta});
  }
  return y;
}

}  // namespace

Tensor batchnorm2d(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean, Tensor running_var,
                   const BatchNormOptions& opt) {
  return batchnorm2d_impl(Epilogue::None, x, nullptr, gamma, beta, std::move(running_mean), std::move(running_var),
                          opt);
}

Tensor batchnorm2d_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                        Tensor running_var, const BatchNormOptions& opt) {
  return batchnorm2d_impl(Epilogue::Relu, x, nullptr, gamma, beta, std::move(running_mean), std::move(running_var),
                          opt);
}

Tensor batchnorm2d_add_relu(const Tensor& x, const Tensor& residual, const Tensor& gamma, const Tensor& beta,
                            Tensor running_mean, Tensor running_var, const BatchNormOptions& opt) {
  return batchnorm2d_impl(Epilogue::AddRelu, x, &residual, gamma, beta, std::move(running_mean),
                          std::move(running_var), opt);
}

}  // namespace engine
