// op_cases.cpp - the conformance cases. Every op of ops/op_list.def needs at least one; cases
// cover odd sizes (not multiples of a CUDA block), size-1 dims, broadcasting, and inputs that are
// transposed or strided views rather than contiguous tensors.
#include "tests/ops/op_cases.h"

#include "ops/ops.h"

namespace engine::testing {

namespace {

using Inputs = std::vector<Tensor>;
constexpr Layout C = Layout::Contiguous, T = Layout::Transposed, S = Layout::Strided;

InputSpec in(Shape shape, Layout layout = C, double low = -1.0, double high = 1.0) {
  return InputSpec{std::move(shape), low, high, layout, 0.0};
}

void binary_cases(std::vector<OpCase>& cases, const std::string& op, Tensor (*fn)(const Tensor&, const Tensor&),
                  double b_low, double b_high) {
  auto run = [fn](const Inputs& x) { return fn(x[0], x[1]); };
  cases.push_back({op, "same_shape", {in({3, 5}), in({3, 5}, C, b_low, b_high)}, run});
  cases.push_back({op, "broadcast_leading", {in({4, 3, 5}), in({5}, C, b_low, b_high)}, run});
  cases.push_back({op, "broadcast_first_operand", {in({1, 5}), in({4, 5}, C, b_low, b_high)}, run});
  cases.push_back({op, "transposed_and_strided", {in({3, 5}, T), in({3, 5}, S, b_low, b_high)}, run});
  cases.push_back({op, "odd_size_1031", {in({1031}), in({1031}, C, b_low, b_high)}, run});
}

void unary_case(std::vector<OpCase>& cases, const std::string& op, const std::string& label, InputSpec spec,
                std::function<Tensor(const Tensor&)> fn) {
  cases.push_back({op, label, {std::move(spec)}, [fn](const Inputs& x) { return fn(x[0]); }});
}

}  // namespace

std::vector<OpCase> all_op_cases() {
  std::vector<OpCase> cases;

  binary_cases(cases, "add", add, -1.0, 1.0);
  binary_cases(cases, "sub", sub, -1.0, 1.0);
  binary_cases(cases, "mul", mul, -1.0, 1.0);
  binary_cases(cases, "div", div, 0.5, 2.0);  // divisor kept away from zero

  unary_case(cases, "add_scalar", "contiguous", in({3, 4}), [](const Tensor& x) { return add_scalar(x, 2.5); });
  unary_case(cases, "add_scalar", "transposed", in({3, 4}, T), [](const Tensor& x) { return add_scalar(x, -0.75); });
  unary_case(cases, "mul_scalar", "contiguous", in({1031}), [](const Tensor& x) { return mul_scalar(x, -1.5); });
  unary_case(cases, "mul_scalar", "strided", in({4, 3}, S), [](const Tensor& x) { return mul_scalar(x, 3.0); });

  // relu: inputs kept 0.01 away from the kink, where finite differences are meaningless.
  InputSpec relu_in = in({6, 7});
  relu_in.avoid_zero = 0.01;
  unary_case(cases, "relu", "contiguous", relu_in, [](const Tensor& x) { return relu(x); });
  relu_in.shape = {1031};
  unary_case(cases, "relu", "odd_size_1031", relu_in, [](const Tensor& x) { return relu(x); });
  relu_in.shape = {5, 3};
  relu_in.layout = T;
  unary_case(cases, "relu", "transposed", relu_in, [](const Tensor& x) { return relu(x); });

  unary_case(cases, "exp", "contiguous", in({4, 5}, C, -2.0, 2.0), [](const Tensor& x) { return exp(x); });
  unary_case(cases, "exp", "strided", in({3, 5}, S, -2.0, 2.0), [](const Tensor& x) { return exp(x); });
  unary_case(cases, "log", "contiguous", in({4, 5}, C, 0.5, 2.0), [](const Tensor& x) { return log(x); });
  unary_case(cases, "log", "transposed", in({2, 9}, T, 0.5, 2.0), [](const Tensor& x) { return log(x); });

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
  return cases;
}

}  // namespace engine::testing
