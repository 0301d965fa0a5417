// random.cpp - CPU reference of the random fills and randperm, and the Tensor-level entry points.
#include "engine/random.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "engine/random_fill.h"

namespace engine {

void random_fill_cpu(void* out, DType dtype, int64_t n, const RandomParams& params) {
  dispatch_dtype(dtype, [&]<typename T>() {
    for (int64_t block = 0; block * 4 < n; ++block) random_fill_block(static_cast<T*>(out), n, block, params);
  });
}

void randperm_cpu(int64_t* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t first_block,
                  const int64_t* stream_offset) {
  const uint64_t moved = randperm_stream(stream, stream_offset);
  std::vector<std::pair<uint64_t, int64_t>> keyed(n);
  for (int64_t i = 0; i < n; ++i) keyed[i] = {randperm_key(i, seed, moved, first_block), i};
  std::sort(keyed.begin(), keyed.end());  // by key, then by index
  for (int64_t i = 0; i < n; ++i) out[i] = keyed[i].second;
}

void inverse_permutation_cpu(int64_t* inverse, const int64_t* perm, int64_t n) {
  for (int64_t i = 0; i < n; ++i) inverse[perm[i]] = i;
}

namespace {

void fill_random(Tensor& t, Generator& gen, RandomParams params, const char* what) {
  check_defined(t, what, "t");
  check_inplace_allowed(t, what);
  const bool integer_ok = params.kind == RandomKind::Bernoulli;
  ENGINE_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64 || (integer_ok && t.dtype() != DType::bf16),
               "{}: expected a tensor of dtype f32 or f64{}, found {}", what, integer_ok ? " (or u8/i32/i64)" : "",
               t.str());
  const int64_t n = t.numel();
  params.seed = gen.seed();
  params.stream = gen.stream();
  params.first_block = gen.reserve(static_cast<uint64_t>((n + 3) / 4));
  // Values follow the row-major order of the shape, whatever the strides.
  Tensor target = t.is_contiguous() ? t : Tensor::empty(t.shape(), t.dtype(), t.device());
  if (t.device().is_cpu()) {
    random_fill_cpu(target.data_ptr(), target.dtype(), n, params);
  } else {
    ENGINE_DISPATCH_CUDA(t.device(), what,
                         random_fill_cuda(t.device().index, target.data_ptr(), target.dtype(), n, params));
  }
  if (!target.is_same(t)) t.copy_(target);
}

}  // namespace

void uniform_(Tensor& t, Generator& gen, double low, double high) {
  ENGINE_CHECK(low <= high, "uniform_: expected low <= high, found [{}, {})", low, high);
  fill_random(t, gen, {RandomKind::Uniform, 0, 0, 0, low, high}, "uniform_");
}

void normal_(Tensor& t, Generator& gen, double mean, double std) {
  ENGINE_CHECK(std >= 0, "normal_: expected std >= 0, found {}", std);
  fill_random(t, gen, {RandomKind::Normal, 0, 0, 0, mean, std}, "normal_");
}

void bernoulli_(Tensor& t, Generator& gen, double p) {
  ENGINE_CHECK(p >= 0 && p <= 1, "bernoulli_: expected a probability in [0, 1], found {}", p);
  fill_random(t, gen, {RandomKind::Bernoulli, 0, 0, 0, p, 0.0}, "bernoulli_");
}

namespace {

// Both randperms: stream_offset null (0) or a checked one-element i64 on `device`.
Tensor randperm_with_offset(int64_t n, Generator& gen, Device device, const int64_t* stream_offset) {
  ENGINE_CHECK(n >= 0, "randperm: expected n >= 0, found {}", n);
  Tensor out = Tensor::empty({n}, DType::i64, device);
  const uint64_t first_block = gen.reserve(static_cast<uint64_t>((n + 1) / 2));
  if (device.is_cpu()) {
    randperm_cpu(out.data<int64_t>(), n, gen.seed(), gen.stream(), first_block, stream_offset);
  } else {
    ENGINE_DISPATCH_CUDA(device, "randperm",
                         randperm_cuda(device.index, out.data<int64_t>(), n, gen.seed(), gen.stream(), first_block,
                                       stream_offset));
  }
  return out;
}

}  // namespace

Tensor randperm(int64_t n, Generator& gen, Device device) { return randperm_with_offset(n, gen, device, nullptr); }

Tensor randperm(int64_t n, Generator& gen, Device device, const Tensor& stream_offset) {
  check_defined(stream_offset, "randperm", "stream_offset");
  ENGINE_CHECK(stream_offset.dtype() == DType::i64 && stream_offset.numel() == 1,
               "randperm: the stream offset must be a one-element i64 tensor, found {}; make it with "
               "Tensor::zeros({{1}}, DType::i64, device)",
               stream_offset.str());
  ENGINE_CHECK(stream_offset.device() == device,
               "randperm: the stream offset {} must be on the permutation's device {} (the kernel reads it there); "
               "make it on that device",
               stream_offset.str(), device.str());
  return randperm_with_offset(n, gen, device, stream_offset.data<int64_t>());
}

Tensor inverse_permutation(const Tensor& perm) {
  check_defined(perm, "inverse_permutation", "perm");
  ENGINE_CHECK(perm.dim() == 1 && perm.dtype() == DType::i64,
               "inverse_permutation: expected a 1-D i64 permutation (a randperm), found {}", perm.str());
  const Tensor p = perm.contiguous();
  const int64_t n = p.numel();
  Tensor out = Tensor::empty({n}, DType::i64, p.device());
  if (p.device().is_cpu()) {
    inverse_permutation_cpu(out.data<int64_t>(), p.data<int64_t>(), n);
  } else {
    ENGINE_DISPATCH_CUDA(p.device(), "inverse_permutation",
                         inverse_permutation_cuda(p.device().index, out.data<int64_t>(), p.data<int64_t>(), n));
  }
  return out;
}

}  // namespace engine
