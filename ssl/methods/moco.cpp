// moco.cpp - see moco.h. Shape letters: N images, D embedding dim, K queue length, n_h hard
// negatives per image, G virtual GPUs (bn_groups), b = N / G images per group.
#include "ssl/methods/moco.h"

#include <map>

#include "engine/autograd.h"
#include "engine/check.h"
#include "layers/layers.h"
#include "ops/index_select.h"
#include "ops/infonce.h"
#include "ops/l2_normalize.h"
#include "ops/momentum_update.h"
#include "ops/queue_enqueue.h"
#include "ssl/masking/saliency.h"

namespace engine::ssl {

namespace {

constexpr uint64_t kQueueStream = 0x51554555;  // "QUEU": the initial queue

// An i64 index tensor on the host: index_select checks it there and copies it to the device once.
Tensor index_tensor(const std::vector<int64_t>& values) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
}

// The entries of `state` under "prefix." with the prefix removed.
NamedTensors strip_prefix(const NamedTensors& state, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, tensor] : state)
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), tensor);
  return out;
}

void check_view_pair(const Tensor& query, const Tensor& key, int64_t groups) {
  ENGINE_CHECK(query.dim() == 4 && query.shape() == key.shape(),
               "MoCo: query and key views must be two (N, 3, H, W) batches of one shape, found {} and {}",
               query.str(), key.str());
  ENGINE_CHECK(query.size(0) % groups == 0,
               "MoCo: the batch of {} images does not split into {} BatchNorm groups; use a batch that is a "
               "multiple of the group count",
               query.size(0), groups);
}

}  // namespace

EncoderShape encoder_shape(const MocoConfig& config) {
  return {config.arch, config.small_stem, config.width, config.dim, config.mlp};
}

MoCo::MoCo(const MocoConfig& config, uint64_t seed, Device device, Collectives& world)
    : config_(config), seed_(seed), device_(device), world_(world) {
  ENGINE_CHECK(config.dim > 0 && config.queue_size > 0, "MoCo: --moco-dim ({}) and --moco-k ({}) must be positive",
               config.dim, config.queue_size);
  ENGINE_CHECK(config.momentum >= 0 && config.momentum <= 1, "MoCo: --moco-m must be in [0, 1], found {}",
               config.momentum);
  ENGINE_CHECK(config.temperature > 0, "MoCo: --moco-t must be positive, found {}", config.temperature);
  ENGINE_CHECK(config.bn_groups >= 1, "MoCo: the BatchNorm group count must be at least 1, found {}",
               config.bn_groups);
  encoder_q_ = make_encoder(encoder_shape(config), seed);
  encoder_k_ = make_encoder(encoder_shape(config), seed);
  encoder_k_->load_state_dict(encoder_q_->state_dict());  // f_k starts as an exact copy of f_q
  for (nn::ResNet* encoder : {encoder_q_.get(), encoder_k_.get()}) {
    nn::set_ghost_batchnorm(*encoder, config.bn_groups, GhostRunningStats::FirstGroup);
    encoder->flatten_parameters();
    encoder->to(device);
  }
  // The queue: i.i.d. N(0, 1), then every column (one negative key) scaled to unit length.
  Tensor queue = Tensor::empty({config.queue_size, config.dim});  // (K, D): rows are the columns
  Generator gen(seed, kQueueStream);
  normal_(queue, gen);
  queue_ = l2_normalize(queue).transpose(0, 1).contiguous().to(device);  // (D, K)
  queue_ptr_ = Tensor::zeros({1}, DType::i64, device);
}

Tensor MoCo::encode_query(const Tensor& images) {
  return l2_normalize(encoder_q_->forward(images));  // (N, D)
}

void MoCo::momentum_update_key_encoder() {
  NoGradGuard no_grad;
  Tensor key = encoder_k_->flat_parameters();
  momentum_update(key, encoder_q_->flat_parameters(), config_.momentum);
}

Tensor MoCo::encode_keys(const Tensor& images, ShuffleStream& shuffle, Tensor* saliency) {
  NoGradGuard no_grad;
  const int64_t N = images.size(0), W = world_.world_size(), first = world_.rank() * N;
  // Shuffle BN: a random permutation spreads the images of the global batch (every rank's, in rank
  // order) over the groups; undo it on the keys. Both are made on the images' device (the same
  // bits on the CPU, a GPU and every rank), so nothing crosses to or from the host.
  const Tensor all = world_.all_gather(images.contiguous());                 // (W N, 3, H, W)
  const Tensor perm = shuffle.step.defined() ? randperm(W * N, shuffle.gen, images.device(), shuffle.step)
                                              : randperm(W * N, shuffle.gen, images.device());  // (W N,)
  const Tensor inverse = inverse_permutation(perm);                           // (W N,)
  const Tensor shuffled = index_select(all, perm.slice(0, first, first + N), IndexCheck::Trusted);  // (N, 3, H, W)
  const Tensor features = encoder_k_->feature_map(shuffled);                 // (N, F, G, G), shuffled order
  const Tensor keys = l2_normalize(encoder_k_->head(features));              // (N, D), shuffled order
  const Tensor mine = inverse.slice(0, first, first + N);                    // where this rank's keys went
  if (saliency) *saliency = index_select(world_.all_gather(saliency_maps(features)), mine, IndexCheck::Trusted);
  return index_select(world_.all_gather(keys), mine, IndexCheck::Trusted);  // (N, D)
}

Tensor MoCo::encode_hard_negatives(const Tensor& hard, ShuffleStream& shuffle) {
  NoGradGuard no_grad;
  ENGINE_CHECK(hard.dim() == 5, "MoCo: hard negatives must be (N, n_h, 3, H, W), found {}", hard.str());
  const int64_t N = hard.size(0), n_h = hard.size(1), D = config_.dim;
  Tensor out = Tensor::empty({N, n_h, D}, hard.dtype(), hard.device());  // (N, n_h, D)
  if (!config_.reference_quirks) {
    for (int64_t h = 0; h < n_h; ++h) {
      const Tensor views = hard.slice(1, h, h + 1).contiguous().view({N, hard.size(2), hard.size(3), hard.size(4)});
      out.slice(1, h, h + 1).copy_(encode_keys(views, shuffle).view({N, 1, D}));  // views (N, 3, H, W)
    }
    return out;
  }
  // The published code (O7): hard negative j of group g is image j of the group's (first)
  // hard-negative view, encoded in a batch of one per group, and shared by the group's b queries.
  const Tensor flat = hard.contiguous().view({N * n_h, hard.size(2), hard.size(3), hard.size(4)});
  const int64_t G = config_.bn_groups, b = N / G;
  ENGINE_CHECK(n_h <= b, "MoCo: with --reference-quirks, hard negative j is image j of each group, so --num-nonsem "
               "({}) cannot exceed the images per group ({})", n_h, b);
  for (int64_t j = 0; j < n_h; ++j) {
    std::vector<int64_t> firsts(static_cast<size_t>(G)), owner(static_cast<size_t>(N));
    for (int64_t g = 0; g < G; ++g) firsts[static_cast<size_t>(g)] = (g * b + j) * n_h;
    for (int64_t i = 0; i < N; ++i) owner[static_cast<size_t>(i)] = i / b;
    // G images in G groups: BatchNorm over one image each. Shuffling them would change nothing.
    const Tensor t = l2_normalize(encoder_k_->forward(index_select(flat, index_tensor(firsts))));
    out.slice(1, j, j + 1).copy_(index_select(t, index_tensor(owner)).view({N, 1, D}));
  }
  return out;
}

void MoCo::dequeue_and_enqueue(const Tensor& keys) {
  const int64_t N = keys.size(0), K = config_.queue_size;
  ENGINE_CHECK(keys.dim() == 2 && keys.size(1) == config_.dim, "MoCo: keys must be (N, {}), found {}", config_.dim,
               keys.str());
  ENGINE_CHECK(K % N == 0, "MoCo: the queue length --moco-k {} must be a multiple of the global batch size {}", K, N);
  // Columns [ptr, ptr + N) take the keys and ptr moves on, both on the device: the pointer is
  // read there, so a captured step (--cuda-graphs) enqueues where the queue stands at each replay.
  queue_enqueue(queue_, keys, queue_ptr_);
}

ContrastiveOutput MoCo::forward(const Tensor& query, const Tensor& key, const Tensor& hard, ShuffleStream& shuffle) {
  check_view_pair(query, key, config_.bn_groups);
  const Tensor q = encode_query(query);  // (N, D), recorded for backward
  momentum_update_key_encoder();
  const Tensor k = encode_keys(key, shuffle);                                          // (N, D)
  const Tensor t = hard.defined() ? encode_hard_negatives(hard, shuffle) : Tensor();  // (N, n_h, D)
  return contrast(q, k, t);
}

ContrastiveOutput MoCo::forward_masked(const Tensor& query_view, const Tensor& key_view,
                                const SaliencyGuidedMasking& masking, int64_t step, ShuffleStream& shuffle,
                                MaskedBatch* record) {
  check_view_pair(query_view, key_view, config_.bn_groups);
  const Tensor query_input = masking.encoder_input(query_view);  // (N, 3, H, W), high-passed under hp
  const Tensor key_input = masking.encoder_input(key_view);      // (N, 3, H, W)
  // f_k moves first: f_q does not depend on it, and the keys' layer4 maps are then the current
  // key encoder's view of k, ready for the momentum saliency source.
  momentum_update_key_encoder();
  Tensor key_saliency;                                                                        // (N, G, G)
  const Tensor k = encode_keys(key_input, shuffle, masking.wants_key_saliency() ? &key_saliency : nullptr);  // (N, D)
  MaskedBatch masked =
      masking.mask(query_view, key_view, query_input, key_input, key_saliency, *encoder_k_, step, shuffle.step);
  const Tensor q = encode_query(masked.query);                                                // (N, D), recorded
  const Tensor t = masked.hard_negative.defined() ? encode_hard_negatives(masked.hard_negative, shuffle)
                                                  : Tensor();                                 // (N, n_h, D)
  if (record) *record = std::move(masked);
  return contrast(q, k, t);
}

ContrastiveOutput MoCo::train_forward(const TrainingBatch& batch, const SaliencyGuidedMasking* masking, int64_t step,
                                      MaskedBatch* record) {
  check_batch_views(batch, views_per_image(), "MoCo");
  const Tensor& query = batch.views[0];  // (N, 3, H, W)
  const Tensor& key = batch.views[1];    // (N, 3, H, W)
  // The shuffle-BN stream of (seed, step), the step added on the device (a captured step's number
  // changes at every replay).
  ShuffleStream shuffle{Generator(seed_, kShuffleBnStreamBase),
                        batch.step_number.defined()
                            ? batch.step_number
                            : Tensor::full({1}, static_cast<double>(step), DType::i64, query.device())};
  if (masking) return forward_masked(query, key, *masking, step, shuffle, record);
  return forward(query, key, Tensor(), shuffle);
}

Metadata MoCo::model_metadata() const {
  return {{"method", method_name(Method::MocoV2)},
          {"arch", config_.arch},
          {"small_stem", config_.small_stem ? "true" : "false"},
          {"width", std::to_string(config_.width)},
          {"moco_dim", std::to_string(config_.dim)},
          {"moco_k", std::to_string(config_.queue_size)},
          {"mlp", config_.mlp ? "true" : "false"}};
}

ContrastiveOutput MoCo::contrast(const Tensor& q, const Tensor& k, const Tensor& t) {
  // The logits use the queue as it was before this batch; the backward needs those values after
  // the enqueue below has overwritten N columns, so the op gets its own copy (as the reference's
  // queue.clone().detach()).
  InfoNceOptions opt;
  opt.temperature = config_.temperature;
  opt.alpha = config_.alpha;
  const InfoNceResult r = infonce(q, k, queue_.clone(), t, opt);
  dequeue_and_enqueue(world_.all_gather(k));  // (W N, D): every rank's keys, in rank order
  return {r.loss, r.correct, r.rows};
}

NamedTensors MoCo::state_dict() const {
  NamedTensors out;
  for (const auto& [name, t] : encoder_q_->state_dict()) out.emplace_back("encoder_q." + name, t);
  for (const auto& [name, t] : encoder_k_->state_dict()) out.emplace_back("encoder_k." + name, t);
  out.emplace_back("queue", queue_);
  out.emplace_back("queue_ptr", queue_ptr_);
  return out;
}

void MoCo::load_state_dict(const NamedTensors& state) {
  std::map<std::string, Tensor> rest;
  for (const auto& [name, t] : state)
    if (name.rfind("encoder_q.", 0) != 0 && name.rfind("encoder_k.", 0) != 0) rest.emplace(name, t);
  ENGINE_CHECK(rest.count("queue") && rest.count("queue_ptr") && rest.size() == 2,
               "MoCo: a state needs encoder_q.*, encoder_k.*, queue and queue_ptr and nothing else; found {} other "
               "entries{}",
               rest.size(), rest.count("queue") ? "" : " and no queue");
  const Tensor& queue = rest.at("queue");
  ENGINE_CHECK(queue.shape() == queue_.shape(),
               "MoCo: the saved queue is {} but this model's is {} (--moco-dim x --moco-k); use the flags the "
               "checkpoint was trained with",
               shape_str(queue.shape()), shape_str(queue_.shape()));
  const int64_t ptr = static_cast<int64_t>(rest.at("queue_ptr").item());
  ENGINE_CHECK(ptr >= 0 && ptr < config_.queue_size, "MoCo: queue_ptr {} is outside the queue of {}", ptr,
               config_.queue_size);
  encoder_q_->load_state_dict(strip_prefix(state, "encoder_q."));
  encoder_k_->load_state_dict(strip_prefix(state, "encoder_k."));
  queue_.copy_(queue);
  queue_ptr_.fill_(static_cast<double>(ptr));
}

}  // namespace engine::ssl
