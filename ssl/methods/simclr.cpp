// simclr.cpp - see simclr.h. Shape letters: N images, D embedding dim, n_h hard negatives per image,
// G BatchNorm groups (bn_groups), b = N / G images per group.
#include "ssl/methods/simclr.h"

#include <map>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/cuda_graph.h"
#include "layers/data_parallel.h"
#include "layers/layers.h"
#include "ops/index_select.h"
#include "ops/l2_normalize.h"
#include "ops/nt_xent.h"

namespace engine::ssl {

namespace {

void check_views(const Tensor& a, const Tensor& b, int64_t groups) {
  ENGINE_CHECK(a.dim() == 4 && a.shape() == b.shape(),
               "SimCLR: the two views must be two (N, 3, H, W) batches of one shape, found {} and {}", a.str(), b.str());
  ENGINE_CHECK(a.size(0) % groups == 0,
               "SimCLR: the batch of {} images does not split into {} BatchNorm groups; use a batch that is a multiple "
               "of --bn-groups",
               a.size(0), groups);
}

// Keeps a network's BatchNorm running statistics through forwards that must not move them: a copy
// on entry, written back on exit (a few thousand values for ResNet-50, on the device).
class KeepRunningStatistics {
 public:
  explicit KeepRunningStatistics(nn::Module& net) {
    for (auto& [name, buffer] : net.named_buffers()) saved_.emplace_back(buffer, buffer.clone());
    // In a captured step (--cuda-graphs) the device buffers are saved and restored by the graph's
    // copies; the host ones (BatchNorm's num_batches_tracked) by the host effects each replay
    // repeats (engine/cuda_graph.h), in this order: save, the forwards' counts, restore.
    repeat_on_replay([saved = saved_]() mutable {
      for (auto& [buffer, copy] : saved)
        if (buffer.device().is_cpu()) copy.copy_(buffer);
    });
  }
  ~KeepRunningStatistics() {
    for (auto& [buffer, copy] : saved_) buffer.copy_(copy);
    repeat_on_replay([saved = saved_]() mutable {
      for (auto& [buffer, copy] : saved)
        if (buffer.device().is_cpu()) buffer.copy_(copy);
    });
  }
  KeepRunningStatistics(const KeepRunningStatistics&) = delete;
  KeepRunningStatistics& operator=(const KeepRunningStatistics&) = delete;

 private:
  std::vector<std::pair<Tensor, Tensor>> saved_;  // (the module's buffer, its value on entry)
};

// z (2N, D) of this rank, its a's then its b's -> (2 W N, D) in NT-Xent's order over the global
// batch (every rank's a's, then every rank's b's), with gradient; z itself for one rank.
Tensor gather_views(const Tensor& z, Collectives& world) {
  const int64_t W = world.world_size(), N = z.size(0) / 2;
  if (W == 1) return z;
  const Tensor all = nn::all_gather_rows(z, world);  // (W 2N, D), rank order
  std::vector<int64_t> order(static_cast<size_t>(2 * W * N));  // global NT-Xent row -> row of `all`
  for (int64_t r = 0; r < W; ++r)
    for (int64_t i = 0; i < N; ++i) {
      order[static_cast<size_t>(r * N + i)] = r * 2 * N + i;
      order[static_cast<size_t>(W * N + r * N + i)] = r * 2 * N + N + i;
    }
  return index_select(all, Tensor::from_vector(order, {2 * W * N}));
}

}  // namespace

EncoderShape encoder_shape(const SimclrConfig& config) {
  return {config.arch, config.small_stem, config.width, config.dim, /*mlp=*/true};
}

SimCLR::SimCLR(const SimclrConfig& config, uint64_t seed, Device device, Collectives& world)
    : config_(config), world_(world) {
  ENGINE_CHECK(config.dim > 0, "SimCLR: --simclr-dim must be positive, found {}", config.dim);
  ENGINE_CHECK(config.temperature > 0, "SimCLR: --simclr-t must be positive, found {}", config.temperature);
  ENGINE_CHECK(config.bn_groups >= 1, "SimCLR: the BatchNorm group count must be at least 1, found {}",
               config.bn_groups);
  encoder_ = make_encoder(encoder_shape(config), seed);
  nn::set_ghost_batchnorm(*encoder_, config.bn_groups, GhostRunningStats::FirstGroup);
  encoder_->flatten_parameters();
  encoder_->to(device);
}

Tensor SimCLR::encode_views(const Tensor& a, const Tensor& b) {
  const int64_t N = a.size(0), G = config_.bn_groups, per_group = N / G;
  if (G == 1) {
    // Global BatchNorm: the 2N images in one batch, a's then b's, which is already NT-Xent's order.
    Tensor both = Tensor::empty({2 * N, a.size(1), a.size(2), a.size(3)}, a.dtype(), a.device());  // (2N, 3, H, W)
    both.slice(0, 0, N).copy_(a);
    both.slice(0, N, 2 * N).copy_(b);
    return l2_normalize(encoder_->forward(both));  // (2N, D)
  }
  // Group g holds a's and then b's images g*b .. (g+1)*b - 1, so each group normalises both views of
  // its images together; the rows come back to NT-Xent's order (all a, then all b) afterwards.
  Tensor grouped = Tensor::empty({2 * N, a.size(1), a.size(2), a.size(3)}, a.dtype(), a.device());  // (2N, 3, H, W)
  for (int64_t g = 0; g < G; ++g) {
    const int64_t first = g * per_group, at = 2 * first;
    grouped.slice(0, at, at + per_group).copy_(a.slice(0, first, first + per_group));
    grouped.slice(0, at + per_group, at + 2 * per_group).copy_(b.slice(0, first, first + per_group));
  }
  const Tensor z = l2_normalize(encoder_->forward(grouped));  // (2N, D), grouped order: [group][view][image]
  // Back to NT-Xent's order [view][group][image] by a transpose, with no index list from the host
  // (a captured step, --cuda-graphs, copies nothing from it).
  const int64_t D = z.size(1);
  return z.view({G, 2, per_group, D}).transpose(0, 1).contiguous().view({2 * N, D});  // (2N, D)
}

Tensor SimCLR::encode_hard_negatives(const Tensor& hard) {
  NoGradGuard no_grad;
  ENGINE_CHECK(hard.dim() == 5, "SimCLR: hard negatives must be (N, n_h, 3, H, W), found {}", hard.str());
  const int64_t N = hard.size(0), n_h = hard.size(1), D = config_.dim;
  KeepRunningStatistics keep(*encoder_);
  Tensor out = Tensor::empty({N, n_h, D}, hard.dtype(), hard.device());  // (N, n_h, D)
  for (int64_t h = 0; h < n_h; ++h) {
    // Copy h of every image, a batch of N in the same G groups (N/G images each, where the views'
    // forward has 2N/G: both views of N/G images).
    const Tensor views = hard.slice(1, h, h + 1).contiguous().view({N, hard.size(2), hard.size(3), hard.size(4)});
    out.slice(1, h, h + 1).copy_(l2_normalize(encoder_->forward(views)).view({N, 1, D}));
  }
  return out;
}

ContrastiveOutput SimCLR::contrast(const Tensor& z, const Tensor& t) const {
  NtXentOptions opt;
  opt.temperature = config_.temperature;
  opt.alpha = config_.alpha;
  const Tensor t_all = t.defined() ? world_.all_gather(t.contiguous()) : Tensor();  // (W N, n_h, D)
  const NtXentResult r = nt_xent(gather_views(z, world_), t_all, opt);
  return {r.loss, r.correct, r.rows};
}

ContrastiveOutput SimCLR::forward(const Tensor& view1, const Tensor& view2) {
  check_views(view1, view2, config_.bn_groups);
  return contrast(encode_views(view1, view2), Tensor());
}

ContrastiveOutput SimCLR::forward_masked(const Tensor& view1, const Tensor& view2, const SaliencyGuidedMasking& masking,
                                         int64_t step, MaskedBatch* record, const Tensor& step_number) {
  check_views(view1, view2, config_.bn_groups);
  const Tensor input1 = masking.encoder_input(view1);  // (N, 3, H, W), high-passed under hp
  const Tensor input2 = masking.encoder_input(view2);  // (N, 3, H, W)
  MaskedBatch masked;
  {
    // The maps of both views from the encoder as it is now (two no-grad forwards; none for the
    // pretrained and none sources), then the masked view 1 and the hard-negative views.
    KeepRunningStatistics keep(*encoder_);
    masked = masking.mask(view1, view2, input1, input2, Tensor(), *encoder_, step, step_number);
  }
  const Tensor z = encode_views(masked.query, input2);  // (2N, D), recorded
  const Tensor t = masked.hard_negative.defined() ? encode_hard_negatives(masked.hard_negative) : Tensor();  // (N, n_h, D)
  if (record) *record = std::move(masked);
  return contrast(z, t);
}

ContrastiveOutput SimCLR::train_forward(const TrainingBatch& batch, const SaliencyGuidedMasking* masking, int64_t step,
                                        MaskedBatch* record) {
  check_batch_views(batch, views_per_image(), "SimCLR");
  const Tensor& view1 = batch.views[0];  // (N, 3, H, W)
  const Tensor& view2 = batch.views[1];  // (N, 3, H, W)
  if (masking) return forward_masked(view1, view2, *masking, step, record, batch.step_number);
  return forward(view1, view2);
}

NamedTensors SimCLR::state_dict() const {
  NamedTensors out;
  for (const auto& [name, t] : encoder_->state_dict()) out.emplace_back("encoder." + name, t);
  return out;
}

void SimCLR::load_state_dict(const NamedTensors& state) {
  const std::string prefix = "encoder.";
  NamedTensors own;
  for (const auto& [name, t] : state) {
    ENGINE_CHECK(name.rfind(prefix, 0) == 0,
                 "SimCLR: a state holds encoder.* only, found '{}'; is this a checkpoint of another method?",
                 name.substr(0, 80));
    own.emplace_back(name.substr(prefix.size()), t);
  }
  encoder_->load_state_dict(own);
}

Metadata SimCLR::model_metadata() const {
  return {{"method", method_name(Method::SimClr)},
          {"arch", config_.arch},
          {"small_stem", config_.small_stem ? "true" : "false"},
          {"width", std::to_string(config_.width)},
          {"simclr_dim", std::to_string(config_.dim)},
          {"mlp", "true"}};
}

}  // namespace engine::ssl
