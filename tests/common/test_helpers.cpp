// test_helpers.cpp - close comparison, input makers and the finite-difference gradient check.
#include "tests/common/test_helpers.h"

#include <fmt/format.h>

#include <cmath>

#include "engine/autograd.h"

namespace engine::testing {

::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double atol, double rtol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shapes differ: " << actual.str() << " vs " << expected.str();
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  int64_t bad = 0, worst = -1;
  double worst_excess = 0.0;
  std::string first;
  for (size_t i = 0; i < a.size(); ++i) {
    const double diff = std::fabs(a[i] - e[i]), allowed = atol + rtol * std::fabs(e[i]);
    const bool ok = diff <= allowed || (std::isnan(a[i]) && std::isnan(e[i]));
    if (ok) continue;
    if (bad < 5) first += fmt::format("\n  [{}] actual {:.9g} expected {:.9g} (diff {:.3g} > {:.3g})", i, a[i], e[i], diff, allowed);
    if (worst < 0 || diff - allowed > worst_excess) {
      worst = static_cast<int64_t>(i);
      worst_excess = diff - allowed;
    }
    ++bad;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << fmt::format("{} of {} elements differ beyond atol {} + rtol {}; worst at [{}]:{}",
                                                      bad, a.size(), atol, rtol, worst, first);
}

Tensor make_input(const InputSpec& spec, uint64_t seed, DType dtype, Device device) {
  Shape storage_shape = spec.shape;
  if (spec.layout == Layout::Transposed) {
    EXPECT_GE(spec.shape.size(), 2u) << "a transposed input needs two dims";
    std::swap(storage_shape[storage_shape.size() - 1], storage_shape[storage_shape.size() - 2]);
  }
  if (spec.layout == Layout::Strided) storage_shape[0] *= 2;

  Tensor base = Tensor::empty(storage_shape, DType::f64);
  Generator gen(seed, /*stream=*/0xC0FFEE);
  uniform_(base, gen, spec.low, spec.high);
  if (spec.avoid_zero > 0) {
    double* p = base.data<double>();
    for (int64_t i = 0; i < base.numel(); ++i)
      if (std::fabs(p[i]) < spec.avoid_zero) p[i] = p[i] < 0 ? -spec.avoid_zero : spec.avoid_zero;
  }
  Tensor stored = base.to(dtype).to(device);
  switch (spec.layout) {
    case Layout::Contiguous: return stored;
    case Layout::Transposed: return stored.transpose(-1, -2);
    case Layout::Strided: return stored.slice(0, 0, storage_shape[0], 2);
    case Layout::ChannelsLast: return stored.contiguous(MemoryFormat::NHWC);
  }
  return stored;
}

namespace {

// Storage offset of the i-th element (row-major over the shape) of a view.
int64_t element_offset(const Tensor& t, int64_t i) {
  int64_t off = 0;
  for (int64_t k = t.dim() - 1; k >= 0; --k) {
    off += (i % t.size(k)) * t.stride(k);
    i /= t.size(k);
  }
  return off;
}

double weighted_sum(const Tensor& out, const std::vector<double>& w) {
  const std::vector<double> v = out.to_vector<double>();
  double s = 0.0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}

}  // namespace

::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     std::vector<Tensor> inputs, double eps, double tol) {
  for (Tensor& x : inputs) {
    if (x.dtype() != DType::f64 || !x.device().is_cpu())
      return ::testing::AssertionFailure() << "gradcheck needs f64 CPU inputs, found " << x.str();
    x.requires_grad_(true);
  }
  const Tensor out = f(inputs);
  Tensor weights = Tensor::empty(out.shape(), DType::f64);
  Generator gen(7, 0x5EED);
  uniform_(weights, gen, -1.0, 1.0);
  const std::vector<double> w = weights.to_vector<double>();
  out.backward(weights);

  std::string report;
  int failures = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor analytic_grad = inputs[k].grad();
    if (!analytic_grad.defined()) return ::testing::AssertionFailure() << "input " << k << " received no gradient";
    const std::vector<double> analytic = analytic_grad.to_vector<double>();
    double* data = static_cast<double*>(inputs[k].data_ptr());
    NoGradGuard no_grad;
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      double& x = data[element_offset(inputs[k], i)];
      const double saved = x;
      x = saved + eps;
      const double plus = weighted_sum(f(inputs), w);
      x = saved - eps;
      const double minus = weighted_sum(f(inputs), w);
      x = saved;
      const double numeric = (plus - minus) / (2 * eps);
      const double scale = std::max({std::fabs(analytic[i]), std::fabs(numeric), 1.0});
      if (std::fabs(analytic[i] - numeric) > tol * scale) {
        if (failures++ < 5)
          report += fmt::format("\n  input {} element {}: analytic {:.12g}, numeric {:.12g}", k, i, analytic[i], numeric);
      }
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failures << " gradient elements differ from finite differences (tol " << tol
                                       << "):" << report;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace engine::testing
