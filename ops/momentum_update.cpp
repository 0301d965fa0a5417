// momentum_update.cpp - checks and dispatch of the key encoder's moving average (no autograd).
#include "ops/momentum_update.h"

namespace engine {

namespace {

// The query as the kernels read it: contiguous, and either the key itself or memory the update
// does not write (a view overlapping the key at another offset would read updated values).
Tensor readable_query(const Tensor& key, const Tensor& query) {
  const Tensor q = query.detach();
  if (!q.is_contiguous()) return q.contiguous();
  if (q.storage() == key.storage() && q.offset() != key.offset()) return q.clone();
  return q;
}

}  // namespace

void momentum_update(Tensor& key, const Tensor& query, double m) {
  check_defined(key, "momentum_update", "key");
  check_defined(query, "momentum_update", "query");
  check_same_shape(key, query, "momentum_update");
  check_same_dtype(key, query, "momentum_update");
  check_same_device(key, query, "momentum_update");
  check_inplace_allowed(key, "momentum_update");
  ENGINE_CHECK(key.is_contiguous(),
               "momentum_update: the key is updated in place and must be contiguous, found {} with strides {}; "
               "pass the flat parameter buffer (Module::flat_parameters()) or a contiguous tensor",
               key.str(), shape_str(key.strides()));
  ENGINE_CHECK(m >= 0.0 && m <= 1.0, "momentum_update: the momentum m must lie in [0, 1], found {}", m);
  const Tensor q = readable_query(key, query);
  dispatch_float(key.dtype(), "momentum_update", [&]<typename T>() {
    if (key.device().is_cpu()) {
      momentum_update_cpu<T>(key.data<T>(), q.data<T>(), key.numel(), m);
    } else {
      ENGINE_DISPATCH_CUDA(key.device(), "momentum_update",
                           momentum_update_cuda<T>(key.device().index, key.data<T>(), q.data<T>(), key.numel(), m));
    }
  });
}

}  // namespace engine
