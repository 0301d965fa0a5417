// saliency_mask.cpp - checks and dispatch of the fused masking (see saliency_mask.h).
#include "ops/saliency_mask.h"

#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/reduce_dim.h"

namespace engine {

namespace {

// A defined stream offset must be what the kernels read, one i64 (saliency_mask checks its device).
// Its value is never read here, so a CUDA offset costs no host read.
void check_stream_offset(const Tensor& offset) {
  if (!offset.defined()) return;
  ENGINE_CHECK(offset.dtype() == DType::i64 && offset.numel() == 1,
               "saliency_mask: expected the stream offset to be a one-element i64 tensor, found {}; make it with "
               "Tensor::zeros({{1}}, DType::i64, x.device()) (or leave it undefined for no offset)",
               offset.str());
}

}  // namespace

SaliencyMaskParams saliency_mask_params(int64_t N, int64_t H, int64_t W, int64_t grid, const SaliencyMaskOptions& options) {
  SaliencyMaskParams p;
  p.N = N;
  p.C = 3;
  p.H = H;
  p.W = W;
  p.grid = grid;
  p.fill = options.fill;
  p.mode = options.mode;
  p.quirks = options.reference_quirks;
  p.seed = options.seed;
  p.stream = options.stream;
  check_stream_offset(options.stream_offset);
  p.stream_offset = options.stream_offset.defined() ? options.stream_offset.data<int64_t>() : nullptr;
  p.stream_offset_scale = options.stream_offset_scale;
  p.images_per_group = options.images_per_group;
  p.first_image = options.first_image;
  return p;
}

SaliencyMaskResult saliency_mask(const Tensor& x, const Tensor& foreground, const Tensor& blurred,
                                 const SaliencyMaskOptions& options) {
  check_defined(x, "saliency_mask", "x");
  check_defined(foreground, "saliency_mask", "foreground");
  ENGINE_CHECK(x.dim() == 4 && x.size(1) == 3 && x.dtype() == DType::f32,
               "saliency_mask: expected views x (N, 3, H, W) f32, found {}", x.str());
  ENGINE_CHECK(foreground.dim() == 3 && foreground.size(0) == x.size(0) && foreground.size(1) == foreground.size(2) &&
                   foreground.dtype() == DType::u8,
               "saliency_mask: expected foreground cells (N, G, G) u8 with N = {}, found {}", x.size(0),
               foreground.str());
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3), grid = foreground.size(1);
  ENGINE_CHECK(grid >= 1 && grid <= kSaliencyMaskMaxGrid && grid <= H && grid <= W,
               "saliency_mask: a {}x{} grid over {}x{} views is not supported (1 to {} cells per side, at most one "
               "cell per pixel)",
               grid, grid, H, W, kSaliencyMaskMaxGrid);
  ENGINE_CHECK(options.first_image >= 0, "saliency_mask: first_image must be >= 0, found {}", options.first_image);
  ENGINE_CHECK(options.images_per_group >= 0, "saliency_mask: images_per_group must be >= 0, found {}",
               options.images_per_group);
  ENGINE_CHECK(!autograd::needs_grad({&x}),
               "saliency_mask: x {} requires grad, but masking has no backward; detach x or run under NoGradGuard",
               x.str());
  const Device device = x.device();
  check_stream_offset(options.stream_offset);
  ENGINE_CHECK(!options.stream_offset.defined() || options.stream_offset.device() == device,
               "saliency_mask: expected the stream offset on the views' device {} (the masks are made there and read "
               "it there), found {}; make it on that device",
               device.str(), options.stream_offset.str());
  const Tensor xc = x.detach().contiguous();
  const Tensor fg = foreground.to(device).contiguous();

  SaliencyMaskParams p = saliency_mask_params(N, H, W, grid, options);

  Tensor fill;
  if (options.fill == MaskFill::Blur) {
    ENGINE_CHECK(blurred.defined() && blurred.shape() == x.shape() && blurred.dtype() == DType::f32,
                 "saliency_mask: the blur strategy needs the blurred views, (N, 3, H, W) f32 like x {}, found {}",
                 x.str(), blurred.defined() ? blurred.str() : "none");
    fill = blurred.detach().to(device).contiguous();
  } else if (options.fill == MaskFill::Mean) {
    // The channel means of the unmasked views, all taken before any pixel is replaced (METHOD.md 5.4).
    fill = mean(xc.view({N, 3, H * W}), 2).contiguous();  // (N, 3)
    p.fill_is_mean = true;
  }

  SaliencyMaskResult r{Tensor::empty(x.shape(), DType::f32, device), Tensor::empty({N, 3, grid, grid}, DType::u8, device),
                       Tensor::empty({N}, DType::u8, device)};
  const float* fill_ptr = fill.defined() ? fill.data<float>() : nullptr;
  if (device.is_cpu()) {
    saliency_mask_cpu(r.masked.data<float>(), r.cells.data<uint8_t>(), r.focal.data<uint8_t>(), xc.data<float>(),
                      fg.data<uint8_t>(), fill_ptr, p);
  } else {
    ENGINE_DISPATCH_CUDA(device, "saliency_mask",
                         saliency_mask_cuda(device.index, r.masked.data<float>(), r.cells.data<uint8_t>(),
                                            r.focal.data<uint8_t>(), xc.data<float>(), fg.data<uint8_t>(), fill_ptr,
                                            p));
  }
  return r;
}

}  // namespace engine
