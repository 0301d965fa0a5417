// saliency_foreground.cpp - checks and dispatch for saliency_foreground.
#include "ops/saliency_foreground.h"

#include "engine/check.h"

namespace engine {

Tensor saliency_foreground(const Tensor& maps, ForegroundRule rule) {
  check_defined(maps, "saliency_foreground", "maps");
  ENGINE_CHECK(maps.dim() == 3 && maps.size(1) == maps.size(2) && maps.size(1) >= 1 && maps.dtype() == DType::f32,
               "saliency_foreground: expected saliency maps (N, G, G) f32 with G >= 1, found {}", maps.str());
  const int64_t N = maps.size(0), grid = maps.size(1);
  const Tensor mc = maps.detach().contiguous();
  Tensor out = Tensor::empty({N, grid, grid}, DType::u8, maps.device());
  if (maps.device().is_cpu()) {
    saliency_foreground_cpu(out.data<uint8_t>(), mc.data<float>(), N, grid, rule);
  } else {
    ENGINE_DISPATCH_CUDA(maps.device(), "saliency_foreground",
                         saliency_foreground_cuda(maps.device().index, out.data<uint8_t>(), mc.data<float>(), N, grid,
                                                  rule));
  }
  return out;
}

}  // namespace engine
