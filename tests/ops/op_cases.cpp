// op_cases.cpp - the conformance cases. Every op of ops/op_list.def needs at least one; cases
// cover odd sizes (not multiples of a CUDA block), size-1 dims, broadcasting, and inputs that are
// transposed or strided views rather than contiguous tensors.
#include "tests/ops/op_cases.h"

#include <optional>

#include "ops/ops.h"

namespace engine::testing {

namespace {

using Inputs = std::vector<Tensor>;
constexpr Layout C = Layout::Contiguous, T = Layout::Transposed, S = Layout::Strided, CL = Layout::ChannelsLast;

InputSpec in(Shape shape, Layout layout = C, double low = -1.0, double high = 1.0) {
  return InputSpec{std::move(shape), low, high, layout, 0.0};
}

// bf16_tol: the bf16 run's atol and rtol (each caller says why).
void binary_cases(std::vector<OpCase>& cases, const std::string& op, Tensor (*fn)(const Tensor&, const Tensor&),
                  double b_low, double b_high, double bf16_tol) {
  auto run = [fn](const Inputs& x) { return fn(x[0], x[1]); };
  const size_t first = cases.size();
  cases.push_back({op, "same_shape", {in({3, 5}), in({3, 5}, C, b_low, b_high)}, run});
  cases.push_back({op, "broadcast_leading", {in({4, 3, 5}), in({5}, C, b_low, b_high)}, run});
  cases.push_back({op, "broadcast_first_operand", {in({1, 5}), in({4, 5}, C, b_low, b_high)}, run});
  cases.push_back({op, "transposed_and_strided", {in({3, 5}, T), in({3, 5}, S, b_low, b_high)}, run});
  cases.push_back({op, "odd_size_1031", {in({1031}), in({1031}, C, b_low, b_high)}, run});
  // Both NHWC: runs flat on the storage, out NHWC. Mixed: b is copied into a's format.
  cases.push_back({op, "channels_last", {in({2, 5, 3, 4}, CL), in({2, 5, 3, 4}, CL, b_low, b_high)}, run});
  cases.push_back({op, "channels_last_and_contiguous", {in({2, 5, 3, 4}, CL), in({2, 5, 3, 4}, C, b_low, b_high)},
                   run});
  for (size_t k = first; k < cases.size(); ++k) cases[k].bf16_atol = cases[k].bf16_rtol = bf16_tol;
}

// bf16_tol: the bf16 run's atol and rtol; 0 = no bf16 path.
void unary_case(std::vector<OpCase>& cases, const std::string& op, const std::string& label, InputSpec spec,
                std::function<Tensor(const Tensor&)> fn, double bf16_tol = 0) {
  cases.push_back({op, label, {std::move(spec)}, [fn](const Inputs& x) { return fn(x[0]); }});
  cases.back().bf16_atol = cases.back().bf16_rtol = bf16_tol;
}

// conv2d: inputs x, weight[, bias]. f32 CUDA against CPU: cuDNN sums in another order (and its
// Winograd/FFT algorithms transform the data), so a few f32 ulps of sums of up to ~50 terms of
// size ~1: 1e-4. bf16: outputs and gradients are rounded to bf16 (8 significant bits, a relative
// error up to 2^-8 = 0.4%) after f32 accumulation: 2e-2 absolute and relative covers it with margin.
void conv_case(std::vector<OpCase>& cases, const std::string& label, std::vector<InputSpec> inputs,
               Conv2dOptions opt) {
  OpCase c{"conv2d", label, std::move(inputs), [opt](const Inputs& x) {
             return conv2d(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), opt);
           }};
  c.cuda_atol = c.cuda_rtol = 1e-4;
  c.bf16_atol = c.bf16_rtol = 2e-2;
  cases.push_back(std::move(c));
}

// Running statistics for a batchnorm2d case: deterministic, not trivial (so eval mode is tested
// with a real shift and scale), in gamma's dtype and on its device.
std::pair<Tensor, Tensor> running_stats(const Tensor& gamma) {
  const int64_t C = gamma.size(0);
  std::vector<double> mean(C), var(C);
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = 0.1 * static_cast<double>(c) - 0.2;
    var[c] = 0.5 + 0.25 * static_cast<double>(c);
  }
  return {Tensor::from_vector(mean, {C}).to(gamma.dtype()).to(gamma.device()),
          Tensor::from_vector(var, {C}).to(gamma.dtype()).to(gamma.device())};
}

// batchnorm2d: inputs x, gamma, beta. bf16: y and dx are rounded to bf16 (0.4% relative) and xhat
// reaches ~3 in size: 2e-2.
void batchnorm_case(std::vector<OpCase>& cases, const std::string& label, InputSpec x, bool training,
                    double cuda_tol = 1e-5, int64_t groups = 1) {
  const int64_t channels = x.shape[1];
  OpCase c{"batchnorm2d", label, {std::move(x), in({channels}, C, 0.5, 1.5), in({channels}, C, -0.5, 0.5)},
           [training, groups](const Inputs& t) {
             auto [running_mean, running_var] = running_stats(t[1]);
             BatchNormOptions opt;
             opt.training = training;
             opt.groups = groups;
             return batchnorm2d(t[0], t[1], t[2], running_mean, running_var, opt);
           }};
  c.cuda_atol = c.cuda_rtol = cuda_tol;
  c.bf16_atol = c.bf16_rtol = 2e-2;
  c.bf16_inputs = 1;  // gamma and beta stay f32 under bf16 activations (batchnorm2d.h)
  cases.push_back(std::move(c));
}

// batchnorm2d_relu (inputs x, gamma, beta) and batchnorm2d_add_relu (x, residual, gamma, beta),
// with running statistics as batchnorm_case. Relu's kink: finite differences across it are
// meaningless, and CPU and CUDA could disagree on the mask of a pre-activation within f32 ulps of
// 0; with these inputs none lies within 1e-4 of 0 (test_batchnorm_fused.cpp checks every case).
// CUDA f32: the epilogue adds one f32 add and a compare to batchnorm2d's arithmetic, and the mask
// selects dy exactly: batchnorm2d's 1e-5. bf16: y, dx and d_residual are rounded to bf16 (0.4%
// relative) with xhat up to ~3, as batchnorm2d: 2e-2 (d_residual is dy or 0, exact).
void batchnorm_relu_case(std::vector<OpCase>& cases, const std::string& label, InputSpec x,
                         std::optional<InputSpec> residual, bool training, int64_t groups = 1) {
  const int64_t channels = x.shape[1];
  const bool add = residual.has_value();
  std::vector<InputSpec> inputs{std::move(x)};
  if (add) inputs.push_back(std::move(*residual));
  inputs.push_back(in({channels}, C, 0.5, 1.5));
  inputs.push_back(in({channels}, C, -0.5, 0.5));
  OpCase c{add ? "batchnorm2d_add_relu" : "batchnorm2d_relu", label, std::move(inputs),
           [training, groups, add](const Inputs& t) {
             const Tensor& gamma = t[add ? 2 : 1];
             const Tensor& beta = t[add ? 3 : 2];
             auto [running_mean, running_var] = running_stats(gamma);
             BatchNormOptions opt;
             opt.training = training;
             opt.groups = groups;
             return add ? batchnorm2d_add_relu(t[0], t[1], gamma, beta, running_mean, running_var, opt)
                        : batchnorm2d_relu(t[0], gamma, beta, running_mean, running_var, opt);
           }};
  c.cuda_atol = c.cuda_rtol = 1e-5;
  c.bf16_atol = c.bf16_rtol = 2e-2;
  c.bf16_inputs = add ? 2 : 1;  // the residual is an activation; gamma and beta stay f32
  cases.push_back(std::move(c));
}

// Pooling moves or averages values: bf16 only adds the rounding of an average (0.4%).
void pooling_case(std::vector<OpCase>& cases, const std::string& op, const std::string& label, InputSpec x,
                  std::function<Tensor(const Tensor&)> fn) {
  OpCase c{op, label, {std::move(x)}, [fn](const Inputs& t) { return fn(t[0]); }};
  c.bf16_atol = c.bf16_rtol = 1e-2;
  cases.push_back(std::move(c));
}

// infonce: the only input is q, the one operand with a gradient; k (N, D), queue (D, K) and hard
// (N, n_h, D) are constants made from fixed seeds in q's dtype and on q's device. CUDA f32:
// logits reach ~15 (~30 with alpha = 2), so f32 rounding of the dot products, of expf/logf and of
// a sum over K + 1 + n_h terms in another order moves the loss and dq by a few 1e-6: 1e-4.
void infonce_case(std::vector<OpCase>& cases, const std::string& label, InputSpec q_spec, int64_t K, int64_t n_h,
                  double alpha, double temperature) {
  const int64_t N = q_spec.shape[0], D = q_spec.shape[1];
  OpCase c{"infonce", label, {std::move(q_spec)}, [=](const Inputs& x) {
             const Tensor& q = x[0];
             auto constant = [&q](Shape shape, uint64_t seed) {
               return make_input(in(std::move(shape), C, -0.5, 0.5), seed, q.dtype(), q.device());
             };
             const Tensor hard = n_h > 0 ? constant({N, n_h, D}, 503) : Tensor();
             return infonce(q, constant({N, D}, 501), constant({D, K}, 502), hard, {temperature, alpha}).loss;
           }};
  c.cuda_atol = c.cuda_rtol = 1e-4;
  cases.push_back(std::move(c));
}

// nt_xent: the only input is z (2B, D), the one operand with a gradient; hard (B, n_h, D) is a
// constant made from a fixed seed in z's dtype and on z's device. CUDA f32: logits are mostly a few
// units and reach ~30 (|z_r . z_j| <= D / 3 or so for entries in [-1, 1], over T = 0.2), so f32
// rounding of the dot products, of expf/logf and of a row's sum in another order moves the loss and
// dz by a few 1e-6: 1e-4, as infonce.
void nt_xent_case(std::vector<OpCase>& cases, const std::string& label, InputSpec z_spec, int64_t n_h, double alpha,
                  double temperature) {
  const int64_t B = z_spec.shape[0] / 2, D = z_spec.shape[1];
  OpCase c{"nt_xent", label, {std::move(z_spec)}, [=](const Inputs& x) {
             const Tensor& z = x[0];
             const Tensor hard =
                 n_h > 0 ? make_input(in({B, n_h, D}, C, -0.5, 0.5), 504, z.dtype(), z.device()) : Tensor();
             return nt_xent(z, hard, {temperature, alpha}).loss;
           }};
  c.cuda_atol = c.cuda_rtol = 1e-4;
  cases.push_back(std::move(c));
}

// cross_entropy: the only input is the logits; the labels are built on their device. Both backends
// sum in double from the same f32 logits and round once, differing only in the order of the double
// sums and in the device's exp/log: at most one f32 ulp of the loss or of the saved lse (which moves
// the probabilities by ~2e-6 relative at |lse| ~ 30, times g / N in the gradient): 1e-6.
void cross_entropy_case(std::vector<OpCase>& cases, const std::string& label, InputSpec logits,
                        std::vector<int64_t> labels) {
  OpCase c{"cross_entropy", label, {std::move(logits)}, [labels](const Inputs& t) {
             const int64_t rows = static_cast<int64_t>(labels.size());
             return cross_entropy(t[0], Tensor::from_vector(labels, {rows}, t[0].device()));
           }};
  c.cuda_atol = c.cuda_rtol = 1e-6;
  cases.push_back(std::move(c));
}

// region_avgpool pools frozen features: no gradient, so the forward alone is compared (its values
// against a hand computation are in tests/ssl/test_part_probe.cpp). The only input is x; the
// weights (R, H, W), a fixed pattern with some cells 0 and region 1 empty (its row must be 0), are
// in x's type on the CPU and f32 on CUDA; region r belongs to image r % N. CUDA sums in f32 over
// at most 12 cells, with the FMA nvcc may contract: 1e-5.
void region_avgpool_case(std::vector<OpCase>& cases, const std::string& label, InputSpec x_spec, int64_t R) {
  const int64_t N = x_spec.shape[0], H = x_spec.shape[2], W = x_spec.shape[3];
  OpCase c{"region_avgpool", label, {std::move(x_spec)}, [=](const Inputs& t) {
             const Tensor& x = t[0];
             std::vector<double> w(static_cast<size_t>(R * H * W));
             std::vector<int64_t> image(static_cast<size_t>(R));
             for (int64_t r = 0; r < R; ++r) {
               image[static_cast<size_t>(r)] = r % N;
               for (int64_t i = 0; i < H * W; ++i)
                 w[static_cast<size_t>(r * H * W + i)] = r == 1 || (r + i) % 3 == 0 ? 0.0 : 0.125 * double((r * 7 + i) % 8);
             }
             const DType weight_dtype = x.device().is_cpu() && x.dtype() != DType::bf16 ? x.dtype() : DType::f32;
             const Tensor weights = Tensor::from_vector(w, {R, H, W}).to(weight_dtype).to(x.device());
             return region_avgpool(x.detach(), weights, Tensor::from_vector(image, {R}));
           }};
  c.differentiable = false;
  c.bf16_atol = c.bf16_rtol = 1e-2;  // x rounded to bf16 by both; CUDA writes y as bf16 (8 bits)
  c.bf16_inputs = 1;
  cases.push_back(std::move(c));
}

// momentum_update and sgd_step write in place and have no gradient: each case clones what the
// op writes (so make_input's tensors stay as they were) and returns it. CPU and CUDA round the
// same way (momentum_update.h, sgd_step.h), so CUDA must match the CPU to the bit.
void flat_update_case(std::vector<OpCase>& cases, const std::string& op, const std::string& label,
                      std::vector<InputSpec> inputs, std::function<Tensor(const Inputs&)> run) {
  OpCase c{op, label, std::move(inputs), std::move(run)};
  c.differentiable = false;
  c.cuda_atol = c.cuda_rtol = 0;
  cases.push_back(std::move(c));
}

// inputs key, query: the key after one update.
std::function<Tensor(const Inputs&)> momentum_update_run(double m) {
  return [m](const Inputs& x) {
    Tensor key = x[0].clone();
    momentum_update(key, x[1], m);
    return key;
  };
}

// inputs params, grads[, momentum buffer]: `steps` steps (lr 0.015, shrinking by 0.005 each: one
// lr tensor refilled between steps, as nn::Optimizer::set_lr does), the first a first step when no
// buffer is given; returns params and buffer stacked as (2, n).
std::function<Tensor(const Inputs&)> sgd_steps_run(SgdStepOptions opt, int steps) {
  return [opt, steps](const Inputs& x) {
    Tensor params = x[0].clone();
    const bool fresh = x.size() < 3;
    Tensor buffer = fresh ? Tensor::zeros(x[0].shape(), x[0].dtype(), x[0].device()) : x[2].clone();
    Tensor lr = Tensor::empty({1}, DType::f64, x[0].device());
    for (int s = 0; s < steps; ++s) {
      lr.fill_(0.015 - 0.005 * s);
      sgd_step(params, x[1], buffer, opt, lr, fresh && s == 0);
    }
    const int64_t n = params.numel();
    Tensor out = Tensor::empty({2, n}, params.dtype(), params.device());
    out.slice(0, 0, 1).copy_(params.reshape({1, n}));
    out.slice(0, 1, 2).copy_(buffer.reshape({1, n}));
    return out;
  };
}

// inputs params, grads[, momentum]: `steps` LARS steps (lr 0.5, growing by 0.2 each) over
// `segments` cut into chunks of `chunk`; returns params and momentum stacked as (2, n). The
// element updates round the same way on both devices, but the norms' double sums are added in
// another order on CUDA (ops/lars_step.h), which at most moves an f32 scaled learning rate by one
// ulp. lars_step.h allows 16 units of 2^-24 of a segment's largest value; values here are at most
// about 1, so atol 1e-6 (a value where mu v and the step cancel keeps its operands' rounding), rtol 1e-6.
void lars_step_case(std::vector<OpCase>& cases, const std::string& label, std::vector<InputSpec> inputs,
                    std::vector<LarsSegment> segments, int64_t chunk, int steps) {
  flat_update_case(cases, "lars_step", label, std::move(inputs), [segments, chunk, steps](const Inputs& x) {
    Tensor params = x[0].clone();
    Tensor momentum = x.size() < 3 ? Tensor::zeros(x[0].shape(), x[0].dtype(), x[0].device()) : x[2].clone();
    const LarsPlan plan(segments, params.numel(), params.device(), chunk);
    for (int s = 0; s < steps; ++s) {
      const Tensor lr = Tensor::full({1}, 0.5 + 0.2 * s, DType::f64, params.device());
      lars_step(params, x[1], momentum, plan, {0.9, 1e-2, 0.02}, lr);
    }
    const int64_t n = params.numel();
    Tensor out = Tensor::empty({2, n}, params.dtype(), params.device());
    out.slice(0, 0, 1).copy_(params.reshape({1, n}));
    out.slice(0, 1, 2).copy_(momentum.reshape({1, n}));
    return out;
  });
  cases.back().cuda_atol = 1e-6;
  cases.back().cuda_rtol = 1e-6;
}

// inputs queue (D, K), keys_1 (N, D), keys_2 (N, D): two enqueues from the pointer `start` (a
// multiple of N; start + N = K makes the second wrap around to column 0), in `dtype` (the
// conformance test runs f32; f64 is the other type the op takes). Returns the queue's values
// followed by the final pointer, as one (D K + 1) vector. Copies only: CUDA must match the CPU to
// the bit.
void queue_enqueue_case(std::vector<OpCase>& cases, const std::string& label, std::vector<InputSpec> inputs,
                        int64_t start, DType dtype) {
  flat_update_case(cases, "queue_enqueue", label, std::move(inputs), [start, dtype](const Inputs& x) {
    Tensor queue = x[0].to(dtype).clone();
    Tensor ptr = Tensor::full({1}, static_cast<double>(start), DType::i64, queue.device());
    queue_enqueue(queue, x[1].to(dtype), ptr);
    queue_enqueue(queue, x[2].to(dtype), ptr);
    const int64_t n = queue.numel();
    Tensor out = Tensor::empty({n + 1}, dtype, queue.device());
    out.slice(0, 0, n).copy_(queue.reshape({n}));
    out.slice(0, n, n + 1).copy_(ptr.to(dtype));
    return out;
  });
}

// index_select: input x; the index is built on x's device. Forward copies rows and backward sums
// them in one fixed order on both CPU and CUDA: tolerance 0. bf16: the gradient of a row picked
// twice is a sum rounded to bf16 once (2^-8 relative): 1e-2.
void index_select_case(std::vector<OpCase>& cases, const std::string& label, InputSpec x,
                       std::vector<int64_t> index) {
  OpCase c{"index_select", label, {std::move(x)}, [index](const Inputs& t) {
             const int64_t rows = static_cast<int64_t>(index.size());
             return index_select(t[0], Tensor::from_vector(index, {rows}, t[0].device()));
           }};
  c.cuda_atol = c.cuda_rtol = 0;
  c.bf16_atol = c.bf16_rtol = 1e-2;
  cases.push_back(std::move(c));
}

// gaussian_blur and high_pass (input x): fixed filters without a backward, so forward only. The
// CPU and CUDA use the same host-computed taps and round each product and sum in the same order
// (gaussian_filter.h), so they should agree to the bit; 1e-6 (a few f32 ulps at ~1) is margin.
void gaussian_filter_case(std::vector<OpCase>& cases, const std::string& op, const std::string& label, InputSpec x,
                          int kernel_size, double sigma) {
  OpCase c{op, label, {std::move(x)}, [op, kernel_size, sigma](const Inputs& t) {
             return op == "high_pass" ? high_pass(t[0], kernel_size, sigma) : gaussian_blur(t[0], kernel_size, sigma);
           }};
  c.differentiable = false;
  c.cuda_atol = c.cuda_rtol = 1e-6;
  cases.push_back(std::move(c));
}

// saliency_mask (input x): masking has no backward, so forward only. The foreground pattern
// is fixed (a diagonal band of background); the masks and the noise are drawn from the same
// Philox words by the same functions on both backends, so hp and blur agree to the bit; mean's
// fill is each backend's own channel mean, so a few f32 ulps are allowed there. With a stream
// offset, the offset is a tensor on the input's device, moving the stream by 16 per unit as the
// masking's steps do: the kernel reads it on the device, the CPU loop on the host.
void saliency_mask_case(std::vector<OpCase>& cases, const std::string& label, InputSpec x, int64_t grid,
                        MaskFill fill, MaskMode mode, bool quirks,
                        std::optional<int64_t> stream_offset = std::nullopt) {
  OpCase c{"saliency_mask", label, {std::move(x)}, [grid, fill, mode, quirks, stream_offset](const Inputs& t) {
             const int64_t N = t[0].size(0);
             std::vector<uint8_t> fg(static_cast<size_t>(N * grid * grid));
             for (size_t i = 0; i < fg.size(); ++i) fg[i] = (i % 5) != 0;
             SaliencyMaskOptions o;
             o.fill = fill;
             o.mode = mode;
             o.seed = 7;
             o.stream = 100;
             o.images_per_group = 2;
             o.reference_quirks = quirks;
             if (stream_offset) {
               o.stream_offset = Tensor::from_vector<int64_t>({*stream_offset}, {1}).to(t[0].device());
               o.stream_offset_scale = 16;
             }
             const Tensor blurred = fill == MaskFill::Blur ? gaussian_blur(t[0], 5, 2.0) : Tensor();
             return saliency_mask(t[0], Tensor::from_vector(fg, {N, grid, grid}), blurred, o).masked;
           }};
  c.differentiable = false;
  c.cuda_atol = c.cuda_rtol = fill == MaskFill::Mean ? 1e-6 : 0.0;
  cases.push_back(std::move(c));
}

// saliency_foreground (input maps): no backward. Both backends run foreground_of_map in double in
// the same order, so the cells agree exactly; the output is returned as 0/1 in the maps' type.
void saliency_foreground_case(std::vector<OpCase>& cases, const std::string& label, InputSpec maps,
                              ForegroundRule rule) {
  OpCase c{"saliency_foreground", label, {std::move(maps)}, [rule](const Inputs& t) {
             return saliency_foreground(t[0].to(DType::f32), rule).to(t[0].dtype());
           }};
  c.differentiable = false;
  c.cuda_atol = c.cuda_rtol = 0.0;
  cases.push_back(std::move(c));
}

}  // namespace

std::vector<OpCase> all_op_cases() {
  std::vector<OpCase> cases;

  // bf16: the ops compute in f32 and round each output once to bf16 (8 significant bits, a relative
  // error up to 2^-8 = 0.39%). add/sub: one rounding (the gradients are dout itself, or its f32 sum
  // rounded once): 5e-3. mul: a broadcast operand's gradient sums products already rounded to
  // bf16, so their roundings add up against a sum that may cancel: 1e-2. div: db is three
  // roundings deep (dout / b, out, their product) before that sum: 2e-2.
  binary_cases(cases, "add", add, -1.0, 1.0, 5e-3);
  binary_cases(cases, "sub", sub, -1.0, 1.0, 5e-3);
  binary_cases(cases, "mul", mul, -1.0, 1.0, 1e-2);
  binary_cases(cases, "div", div, 0.5, 2.0, 2e-2);  // divisor kept away from zero

  // bf16: x + s and x * s are rounded once, dx = dout is exact and dout * s rounded once: 5e-3.
  unary_case(cases, "add_scalar", "contiguous", in({3, 4}), [](const Tensor& x) { return add_scalar(x, 2.5); }, 5e-3);
  unary_case(cases, "add_scalar", "transposed", in({3, 4}, T), [](const Tensor& x) { return add_scalar(x, -0.75); },
             5e-3);
  unary_case(cases, "add_scalar", "channels_last", in({2, 5, 3, 4}, CL),
             [](const Tensor& x) { return add_scalar(x, 0.5); }, 5e-3);
  unary_case(cases, "mul_scalar", "contiguous", in({1031}), [](const Tensor& x) { return mul_scalar(x, -1.5); }, 5e-3);
  unary_case(cases, "mul_scalar", "strided", in({4, 3}, S), [](const Tensor& x) { return mul_scalar(x, 3.0); }, 5e-3);

  // relu: inputs kept 0.01 away from the kink, where finite differences are meaningless. bf16:
  // relu only selects values, so the result and dx are exact (1e-7, as 0 would mean no bf16 path).
  constexpr double relu_bf16_tol = 1e-7;
  InputSpec relu_in = in({6, 7});
  relu_in.avoid_zero = 0.01;
  unary_case(cases, "relu", "contiguous", relu_in, [](const Tensor& x) { return relu(x); }, relu_bf16_tol);
  relu_in.shape = {1031};
  unary_case(cases, "relu", "odd_size_1031", relu_in, [](const Tensor& x) { return relu(x); }, relu_bf16_tol);
  relu_in.shape = {5, 3};
  relu_in.layout = T;
  unary_case(cases, "relu", "transposed", relu_in, [](const Tensor& x) { return relu(x); }, relu_bf16_tol);
  relu_in.shape = {2, 5, 3, 4};
  relu_in.layout = CL;
  unary_case(cases, "relu", "channels_last", relu_in, [](const Tensor& x) { return relu(x); }, relu_bf16_tol);

  // bf16: exp and log are rounded once (5e-3 for log); exp's dx = dout * out multiplies by the
  // rounded out and rounds again, two roundings: 1e-2.
  unary_case(cases, "exp", "contiguous", in({4, 5}, C, -2.0, 2.0), [](const Tensor& x) { return exp(x); }, 1e-2);
  unary_case(cases, "exp", "strided", in({3, 5}, S, -2.0, 2.0), [](const Tensor& x) { return exp(x); }, 1e-2);
  unary_case(cases, "log", "contiguous", in({4, 5}, C, 0.5, 2.0), [](const Tensor& x) { return log(x); }, 5e-3);
  unary_case(cases, "log", "transposed", in({2, 9}, T, 0.5, 2.0), [](const Tensor& x) { return log(x); }, 5e-3);

  for (int64_t dim : {0, 1, 2, -1})
    unary_case(cases, "sum", "dim" + std::to_string(dim < 0 ? 9 : dim), in({3, 4, 5}),
               [dim](const Tensor& x) { return sum(x, dim); });
  unary_case(cases, "sum", "keepdim", in({3, 4, 5}), [](const Tensor& x) { return sum(x, 1, true); });
  unary_case(cases, "sum", "long_rows_1031", in({3, 1031}), [](const Tensor& x) { return sum(x, 1); });
  unary_case(cases, "sum", "transposed", in({5, 6}, T), [](const Tensor& x) { return sum(x, 0); });
  unary_case(cases, "sum", "all", in({7, 3}, S), [](const Tensor& x) { return sum(x); });
  unary_case(cases, "mean", "dim1", in({3, 4, 5}), [](const Tensor& x) { return mean(x, 1); });
  unary_case(cases, "mean", "size1_dim", in({7, 1}), [](const Tensor& x) { return mean(x, 0, true); });
  unary_case(cases, "mean", "all_strided", in({6, 5}, S), [](const Tensor& x) { return mean(x); });

  auto mm = [](bool ta, bool tb) { return [ta, tb](const Inputs& x) { return matmul(x[0], x[1], ta, tb); }; };
  cases.push_back({"matmul", "nn", {in({3, 4}), in({4, 5})}, mm(false, false)});
  cases.push_back({"matmul", "tn", {in({4, 3}), in({4, 5})}, mm(true, false)});
  cases.push_back({"matmul", "nt", {in({3, 4}), in({5, 4})}, mm(false, true)});
  cases.push_back({"matmul", "tt", {in({4, 3}), in({5, 4})}, mm(true, true)});
  // Transposed views fold into the GEMM's flags; every other row is a leading dimension > cols.
  cases.push_back({"matmul", "transposed_views", {in({3, 4}, T), in({4, 5}, T)}, mm(false, false)});
  cases.push_back({"matmul", "strided_rows", {in({3, 4}, S), in({4, 5}, S)}, mm(false, false)});
  cases.push_back({"matmul", "odd_17x33x9", {in({17, 33}), in({33, 9})}, mm(false, false)});
  cases.push_back({"matmul", "vector_row", {in({1, 6}), in({6, 1})}, mm(false, false)});
  cases.push_back({"matmul", "outer_k1", {in({5, 1}), in({1, 4})}, mm(false, false)});

  conv_case(cases, "3x3_pad1_bias", {in({2, 3, 7, 6}), in({4, 3, 3, 3}), in({4})}, Conv2dOptions::square(1, 1));
  conv_case(cases, "7x7_stride2_pad3", {in({1, 2, 11, 11}), in({3, 2, 7, 7})}, Conv2dOptions::square(2, 3));
  conv_case(cases, "pointwise", {in({2, 5, 4, 3}), in({6, 5, 1, 1})}, {});
  conv_case(cases, "pointwise_stride2", {in({2, 4, 5, 5}), in({3, 4, 1, 1})}, Conv2dOptions::square(2, 0));
  conv_case(cases, "dilation2_groups2_bias", {in({2, 4, 8, 7}), in({6, 2, 3, 3}), in({6})},
            Conv2dOptions::square(1, 2, 2, 2));
  conv_case(cases, "channels_last_stride2", {in({2, 3, 6, 5}, CL), in({4, 3, 3, 3})}, Conv2dOptions::square(2, 1));
  conv_case(cases, "channels_last_weight", {in({1, 3, 5, 5}, CL), in({2, 3, 3, 3}, CL), in({2})},
            Conv2dOptions::square(1, 1));
  conv_case(cases, "rect_kernel_1x3", {in({1, 2, 5, 6}), in({3, 2, 1, 3})}, {1, 1, 0, 1, 1, 1, 1});
  conv_case(cases, "strided_input", {in({2, 2, 5, 5}, S), in({2, 2, 3, 3})}, Conv2dOptions::square(1, 0));

  batchnorm_case(cases, "train", in({3, 4, 5, 6}), true);
  batchnorm_case(cases, "train_channels_last", in({2, 5, 3, 4}, CL), true);
  batchnorm_case(cases, "train_batch_of_one", in({1, 3, 4, 4}), true);
  // |mean| = 50 >> std = 0.3: a one-pass E[x^2] - E[x]^2 would cancel in f32. The f32 inputs
  // themselves carry ulps of 50 (4e-6), a 1e-5 relative error once divided by std: 1e-4.
  batchnorm_case(cases, "train_large_mean", in({2, 3, 4, 4}, C, 49.5, 50.5), true, 1e-4);
  // Ghost BatchNorm: 3 groups of 2 images, each with its own statistics.
  batchnorm_case(cases, "train_ghost_3_groups", in({6, 3, 3, 4}), true, 1e-5, 3);
  batchnorm_case(cases, "train_ghost_channels_last", in({4, 3, 2, 3}, CL), true, 1e-5, 2);
  // ResNet-50's last stage is 7x7 and its pooled features 1x1 (HW = 1 is summed as NHWC).
  batchnorm_case(cases, "train_ghost_hw49", in({8, 3, 7, 7}), true, 1e-5, 4);
  batchnorm_case(cases, "train_ghost_hw1", in({8, 5, 1, 1}), true, 1e-5, 2);
  batchnorm_case(cases, "train_ghost_hw1_channels_last", in({8, 5, 1, 1}, CL), true, 1e-5, 2);
  batchnorm_case(cases, "eval", in({2, 3, 4, 5}), false);
  batchnorm_case(cases, "eval_channels_last", in({2, 4, 3, 3}, CL), false);
  // The fused epilogues: both layouts, ghost groups, eval, and a residual in another layout than x.
  batchnorm_relu_case(cases, "train", in({3, 4, 5, 6}), std::nullopt, true);
  batchnorm_relu_case(cases, "train_ghost_channels_last", in({4, 3, 2, 3}, CL), std::nullopt, true, 2);
  batchnorm_relu_case(cases, "eval", in({2, 3, 4, 5}), std::nullopt, false);
  batchnorm_relu_case(cases, "eval_channels_last", in({2, 4, 3, 3}, CL), std::nullopt, false);
  batchnorm_relu_case(cases, "train", in({3, 4, 5, 6}), in({3, 4, 5, 6}, C, -0.5, 0.5), true);
  batchnorm_relu_case(cases, "train_ghost_channels_last", in({4, 3, 2, 3}, CL), in({4, 3, 2, 3}, CL, -0.5, 0.5),
                      true, 2);
  batchnorm_relu_case(cases, "train_x_nhwc_residual_nchw", in({2, 5, 3, 4}, CL), in({2, 5, 3, 4}, C, -0.5, 0.5),
                      true);
  batchnorm_relu_case(cases, "eval_residual_strided", in({2, 3, 4, 5}), in({2, 3, 4, 5}, S, -0.5, 0.5), false);
  batchnorm_relu_case(cases, "eval_channels_last", in({2, 4, 3, 3}, CL), in({2, 4, 3, 3}, CL, -0.5, 0.5), false);

  pooling_case(cases, "maxpool2d", "k3_s2_p1", in({2, 3, 7, 8}), [](const Tensor& x) { return maxpool2d(x); });
  pooling_case(cases, "maxpool2d", "channels_last", in({2, 4, 6, 5}, CL), [](const Tensor& x) { return maxpool2d(x); });
  pooling_case(cases, "maxpool2d", "k2_s2_p0", in({1, 2, 5, 5}), [](const Tensor& x) { return maxpool2d(x, 2, 2, 0); });
  pooling_case(cases, "maxpool2d", "k3_s1_overlapping", in({1, 2, 4, 5}),
               [](const Tensor& x) { return maxpool2d(x, 3, 1, 1); });
  pooling_case(cases, "avgpool_global", "nchw", in({2, 3, 4, 5}), [](const Tensor& x) { return avgpool_global(x); });
  pooling_case(cases, "avgpool_global", "channels_last", in({2, 5, 3, 3}, CL),
               [](const Tensor& x) { return avgpool_global(x); });
  pooling_case(cases, "avgpool_global", "1x1", in({3, 4, 1, 1}), [](const Tensor& x) { return avgpool_global(x); });
  region_avgpool_case(cases, "nchw_5_regions", in({2, 3, 3, 4}), 5);
  region_avgpool_case(cases, "channels_last_odd", in({3, 7, 2, 3}, CL), 7);
  region_avgpool_case(cases, "strided_x", in({2, 4, 3, 3}, S), 4);

  auto lin = [](const Inputs& x) { return linear(x[0], x[1], x.size() > 2 ? x[2] : Tensor()); };
  cases.push_back({"linear", "bias", {in({4, 6}), in({3, 6}), in({3})}, lin});
  cases.push_back({"linear", "no_bias", {in({5, 2}), in({7, 2})}, lin});
  cases.push_back({"linear", "transposed_input", {in({4, 6}, T), in({3, 6}), in({3})}, lin});

  auto l2n = [](double eps) { return [eps](const Tensor& x) { return l2_normalize(x, eps); }; };
  unary_case(cases, "l2_normalize", "rows_5x7", in({5, 7}), l2n(1e-12));
  unary_case(cases, "l2_normalize", "odd_dim_1031", in({3, 1031}), l2n(1e-12));
  unary_case(cases, "l2_normalize", "transposed", in({4, 6}, T), l2n(1e-12));
  unary_case(cases, "l2_normalize", "one_row_1d", in({9}), l2n(1e-12));
  // Norms ~0.01: small, yet far above eps, so the gradient (~1/norm) is still the smooth branch.
  unary_case(cases, "l2_normalize", "small_norm", in({4, 5}, C, -1e-2, 1e-2), l2n(1e-12));
  // Every norm (at most sqrt(7) 0.1 = 0.26) under eps = 0.5: the clamp branch, y = x / eps.
  // (An exactly zero row cannot be finite-differenced: a step of 1e-6 puts its norm above 1e-12.)
  unary_case(cases, "l2_normalize", "norm_below_eps", in({3, 7}, C, -0.1, 0.1), l2n(0.5));

  infonce_case(cases, "n5_d6_k7_hard2_alpha2", in({5, 6}), 7, 2, 2.0, 0.2);
  infonce_case(cases, "no_hard_negatives", in({4, 6}), 9, 0, 1.0, 0.1);
  infonce_case(cases, "odd_queue_1031", in({3, 5}), 1031, 1, 2.0, 0.2);
  infonce_case(cases, "transposed_q", in({4, 6}, T), 8, 1, 0.5, 0.2);

  nt_xent_case(cases, "b3_d6_hard2_alpha2", in({6, 6}), 2, 2.0, 0.2);
  nt_xent_case(cases, "no_hard_negatives", in({8, 5}), 0, 1.0, 0.1);
  nt_xent_case(cases, "one_image_hard3", in({2, 4}), 3, 1.5, 0.5);
  // 2B = 70 rows: more than two 32-row tiles of the backward's pair kernel, the last one partial.
  nt_xent_case(cases, "b35_d9_hard1_partial_tiles", in({70, 9}, C, -0.5, 0.5), 1, 2.0, 0.2);
  nt_xent_case(cases, "odd_dim_1031", in({6, 1031}, C, -0.1, 0.1), 2, 2.0, 0.2);
  nt_xent_case(cases, "transposed_z", in({8, 6}, T), 1, 0.5, 0.2);
  nt_xent_case(cases, "strided_z", in({6, 5}, S), 2, 1.0, 0.3);

  cross_entropy_case(cases, "rows_5x7", in({5, 7}), {6, 0, 3, 3, 1});
  cross_entropy_case(cases, "odd_classes_1031", in({3, 1031}), {1030, 0, 517});
  cross_entropy_case(cases, "transposed_logits", in({4, 6}, T), {2, 5, 0, 2});
  cross_entropy_case(cases, "strided_logits", in({6, 5}, S), {4, 1, 0, 2, 3, 1});
  // Logits spread over +-30: rows whose softmax is nearly one-hot, so the labelled column's
  // gradient p - 1 is close to 0 or to -1 and the others span many orders of magnitude.
  cross_entropy_case(cases, "wide_range_logits", in({4, 9}, C, -30.0, 30.0), {0, 8, 4, 7});
  // One class: every row's loss and gradient are exactly 0.
  cross_entropy_case(cases, "one_class", in({3, 1}), {0, 0, 0});
  cross_entropy_case(cases, "one_row", in({1, 11}), {10});

  flat_update_case(cases, "momentum_update", "m0999_odd_1031", {in({1031}), in({1031})}, momentum_update_run(0.999));
  flat_update_case(cases, "momentum_update", "m09_strided_query", {in({6, 5}), in({6, 5}, S)},
                   momentum_update_run(0.9));
  SgdStepOptions moco_sgd;  // lr 0.015, momentum 0.9, weight decay 1e-4: MoCo v2's
  flat_update_case(cases, "sgd_step", "first_then_second_1031", {in({1031}), in({1031}, C, -0.1, 0.1)},
                   sgd_steps_run(moco_sgd, 2));
  SgdStepOptions nesterov = moco_sgd;
  nesterov.nesterov = true;
  flat_update_case(cases, "sgd_step", "nesterov_with_buffer", {in({5, 7}), in({5, 7}), in({5, 7})},
                   sgd_steps_run(nesterov, 2));
  SgdStepOptions dampened = moco_sgd;
  dampened.dampening = 0.1;
  dampened.weight_decay = 5e-4;
  flat_update_case(cases, "sgd_step", "dampening_strided_grads", {in({6, 4}), in({6, 4}, S), in({6, 4})},
                   sgd_steps_run(dampened, 2));
  SgdStepOptions plain_sgd = moco_sgd;
  plain_sgd.momentum = 0.0;
  flat_update_case(cases, "sgd_step", "no_momentum", {in({33}), in({33})}, sgd_steps_run(plain_sgd, 2));
  // LARS: odd lengths, a gap, an excluded segment, many chunks of 64; then the default chunks (a
  // segment of three, two of one) with a momentum buffer to start from and strided gradients.
  lars_step_case(cases, "odd_segments_chunk64_1031", {in({1031}), in({1031}, C, -0.1, 0.1)},
                 {{0, 517, true}, {517, 3, false}, {523, 301, true}, {824, 207, true}}, 64, 3);
  lars_step_case(cases, "default_chunks_buffer_strided_grads_17415",
                 {in({17415}), in({17415}, S, -0.1, 0.1), in({17415}, C, -0.01, 0.01)},
                 {{0, 16390, true}, {16390, 1, false}, {16400, 1015, true}}, LarsPlan::kDefaultChunk, 2);

  // D = 5, K = 12, N = 4: columns 8..11, then 0..3 (the wrap), the pointer ending at 4; the second
  // keys a transposed view (copied contiguous at the boundary). Then D = 131 (not a multiple of a
  // block) with N = K = 3: every enqueue rewrites the whole queue and the pointer stays at 0.
  for (const DType dtype : {DType::f32, DType::f64}) {
    const std::string type = dtype == DType::f32 ? "_f32" : "_f64";
    queue_enqueue_case(cases, "wrap_d5_k12_n4" + type, {in({5, 12}), in({4, 5}), in({4, 5}, T)}, 8, dtype);
    queue_enqueue_case(cases, "whole_queue_d131_k3_n3" + type, {in({131, 3}), in({3, 131}, S), in({3, 131})}, 0,
                       dtype);
  }

  index_select_case(cases, "permutation_5x3x2x2", in({5, 3, 2, 2}), {3, 0, 4, 1, 2});
  index_select_case(cases, "repeated_index", in({4, 3}), {2, 0, 2});
  index_select_case(cases, "strided_input", in({6, 5}, S), {5, 1, 1, 0});
  index_select_case(cases, "1d_rows_odd_1031", in({1031}), {1030, 0, 517, 517, 3});

  for (const std::string op : {"gaussian_blur", "high_pass"}) {
    gaussian_filter_case(cases, op, "k5_sigma1_5_2x3x13x12", in({2, 3, 13, 12}), 5, 1.5);
    gaussian_filter_case(cases, op, "k11_sigma5_1x3x40x37", in({1, 3, 40, 37}), 11, 5.0);
    gaussian_filter_case(cases, op, "k3_strided_2x2x6x7", in({2, 2, 6, 7}, S), 3, 0.8);
  }
  saliency_mask_case(cases, "hp_pos_6x3x28x28_grid7", in({6, 3, 28, 28}), 7, MaskFill::Noise, MaskMode::Positive,
                     false);
  saliency_mask_case(cases, "hp_neg_quirks_6x3x28x28", in({6, 3, 28, 28}), 7, MaskFill::Noise, MaskMode::Negative,
                     true);
  saliency_mask_case(cases, "blur_pos_uneven_cells_3x3x30x26", in({3, 3, 30, 26}), 4, MaskFill::Blur,
                     MaskMode::Positive, false);
  saliency_mask_case(cases, "mean_neg_strided_4x3x16x16", in({4, 3, 16, 16}, S), 4, MaskFill::Mean,
                     MaskMode::Negative, false);
  saliency_mask_case(cases, "hp_pos_stream_offset3_scale16_5x3x28x28", in({5, 3, 28, 28}), 7, MaskFill::Noise,
                     MaskMode::Positive, false, 3);
  saliency_mask_case(cases, "blur_neg_quirks_stream_offset_large_4x3x20x20", in({4, 3, 20, 20}), 5, MaskFill::Blur,
                     MaskMode::Negative, true, int64_t{1} << 40);
  saliency_foreground_case(cases, "threshold_300x7x7", in({300, 7, 7}), ForegroundRule::Threshold);
  saliency_foreground_case(cases, "row_sorted_quirk_5x4x4", in({5, 4, 4}), ForegroundRule::RowSortedQuirk);
  saliency_foreground_case(cases, "threshold_strided_6x2x2", in({6, 2, 2}, S), ForegroundRule::Threshold);
  return cases;
}

}  // namespace engine::testing
