// lincls.cpp - see lincls.h.
#include "ssl/eval/lincls.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>

#include "data/image_folder.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/file_io.h"
#include "engine/log.h"
#include "engine/progress.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "layers/data_parallel.h"
#include "layers/layers.h"
#include "layers/lr_schedule.h"
#include "layers/optimizer.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise_unary.h"
#include "ops/index_select.h"
#include "ssl/eval/accuracy.h"
#include "ssl/run/checkpoint.h"
#include "ssl/eval/features.h"
#include "ssl/run/run_dir.h"

namespace engine::ssl {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kClassifierInitStream = 0x4C49'0000'0000'0001ull;  // "LI": fc's N(0, 0.01) draw
constexpr uint64_t kCachedOrderStream = 0x4C49'0000'0001'0000ull;     // + epoch: --cached-features order
constexpr const char* kOptimizerPrefix = "optimizer.";

// The training images' mean loss and accuracy, as the reference's AverageMeter (weighted by images).
struct EpochMeter {
  double loss_sum = 0;  // the sum over the images of their loss
  TopkCounts counts;    // counts.total: the images
  double loss() const { return counts.total ? loss_sum / static_cast<double>(counts.total) : 0.0; }

  // The meter of every rank's images (an all-reduce: every rank calls it).
  EpochMeter over_ranks(Collectives& world) const {
    if (world.world_size() == 1) return *this;
    Tensor sums = Tensor::from_vector(std::vector<double>{loss_sum, static_cast<double>(counts.correct1),
                                                          static_cast<double>(counts.correct5),
                                                          static_cast<double>(counts.total)},
                                      {4});
    world.all_reduce(sums, Reduction::Sum);
    const double* v = sums.data<double>();  // counts below 2^53 are exact in f64
    EpochMeter all;
    all.loss_sum = v[0];
    all.counts = {static_cast<int64_t>(v[1]), static_cast<int64_t>(v[2]), static_cast<int64_t>(v[3])};
    return all;
  }
};

class LinearProbe {
 public:
  explicit LinearProbe(const LinclsConfig& config)
      : c_(config), world_(config.world ? *config.world : local_collectives()), root_(world_.is_root()) {}
  LinclsResult run();

 private:
  void check_flags() const;
  void build();
  void resume_if_asked();
  // What a resumed run must share with its checkpoint, as one JSON line.
  std::string protocol() const;
  EpochMeter train_epoch(int64_t epoch, double lr);
  EpochMeter train_cached_epoch(int64_t epoch, double lr);
  void train_step(const Tensor& features, const Tensor& labels, int64_t global_images, double lr, EpochMeter& meter);
  TopkCounts validate();
  void check_backbone_frozen(const char* when) const;
  void save(const std::string& path, int64_t epochs_done) const;

  LinclsConfig c_;
  Collectives& world_;
  const bool root_;  // rank 0: writes the run directory and draws the progress line
  std::optional<RunDirectory> run_dir_;
  Backbone backbone_;
  std::unique_ptr<FrozenStateCheck> frozen_;
  std::shared_ptr<data::ImageFolder> train_set_, val_set_;
  std::unique_ptr<data::Loader> train_loader_;  // the protocol's augmented images
  FeatureSet cached_train_;                     // --cached-features: every training image's, on every rank
  FeatureSet val_;                              // this rank's shard of val/
  std::shared_ptr<nn::Linear> fc_;
  std::unique_ptr<nn::DataParallelGradients> gradients_;  // distributed runs: averages fc's gradients
  std::unique_ptr<nn::Sgd> sgd_;
  nn::LrSchedule schedule_;
  LinclsResult result_;
  int64_t classes_ = 0;
  int64_t first_epoch_ = 0;
};

void LinearProbe::check_flags() const {
  ENGINE_CHECK(c_.batch_size >= 1, "lincls: -b must be at least 1, found {}", c_.batch_size);
  const int W = world_.world_size();
  ENGINE_CHECK(c_.batch_size % W == 0,
               "lincls: -b {} is the global batch, which the {} ranks share equally, but it does not divide by {}: "
               "give a multiple of {} (for example {})",
               c_.batch_size, W, W, W, (c_.batch_size / W + 1) * W);
  ENGINE_CHECK(c_.epochs >= 1, "lincls: --epochs must be at least 1, found {}", c_.epochs);
  ENGINE_CHECK(c_.lr > 0 && std::isfinite(c_.lr), "lincls: --lr must be positive, found {}", c_.lr);
  ENGINE_CHECK(c_.num_classes >= 0, "lincls: --n-classes must be >= 0 (0: the data's class count), found {}",
               c_.num_classes);
  ENGINE_CHECK(c_.image_size == 0 || c_.image_size >= 16, "lincls: --image-size {} is too small (at least 16)",
               c_.image_size);
}

void LinearProbe::build() {
  backbone_ = load_backbone(c_.backbone, c_.device);
  frozen_ = std::make_unique<FrozenStateCheck>(*backbone_.net);
  result_.backbone = backbone_.description;
  result_.image_size = evaluation_image_size(c_.image_size, backbone_);
  result_.high_pass = evaluation_high_pass(c_.high_pass, backbone_);
  const std::string train_root = data::resolve_split(c_.data, "train"), val_root = data::resolve_split(c_.data, "val");
  ENGINE_CHECK(train_root != val_root,
               "lincls: {} is an image folder without train/ and val/; the protocol trains on one split and reports "
               "on the other: give a dataset root holding both",
               c_.data);
  train_set_ = std::make_shared<data::ImageFolder>(train_root);
  val_set_ = std::make_shared<data::ImageFolder>(val_root);
  const int64_t found = static_cast<int64_t>(train_set_->classes().size());
  ENGINE_CHECK(train_set_->classes() == val_set_->classes(),
               "lincls: train/ has {} classes and val/ {}, or their names differ; the two splits must have the same "
               "class folders",
               found, val_set_->classes().size());
  ENGINE_CHECK(c_.num_classes == 0 || c_.num_classes >= found,
               "lincls: --n-classes {} is fewer than the {} classes of {}; omit it to use the data's count",
               c_.num_classes, found, train_set_->root());
  classes_ = c_.num_classes ? c_.num_classes : found;

  const int size = static_cast<int>(result_.image_size);
  const int64_t per_rank = c_.batch_size / world_.world_size();
  FeatureOptions fo;
  fo.batch_size = per_rank;
  fo.workers = c_.workers;
  fo.seed = c_.seed;
  fo.high_pass = result_.high_pass;
  fo.device = c_.device;
  fo.world = &world_;
  val_ = extract_shard_features(*backbone_.net, val_set_, data::eval_transform(size), fo);
  if (c_.cached_features) {
    cached_train_ = extract_features(*backbone_.net, train_set_, data::eval_transform(size), fo);
  } else {
    data::LoaderOptions lo;
    lo.batch_size = static_cast<int>(per_rank);
    lo.workers = c_.workers;
    lo.views = 1;
    lo.drop_last = false;  // as the reference's DataLoader
    lo.seed = c_.seed;
    lo.rank = world_.rank();
    lo.world_size = world_.world_size();
    lo.device = c_.device;
    train_loader_ = std::make_unique<data::Loader>(train_set_, data::lincls_train_augment(size), lo);
  }

  Generator gen(c_.seed, kClassifierInitStream);
  fc_ = std::make_shared<nn::Linear>(backbone_.net->feature_dim(), classes_, gen);
  {
    NoGradGuard no_grad;
    normal_(fc_->weight, gen, 0.0, 0.01);  // METHOD.md 9: N(0, 0.01^2), bias 0
    fc_->bias.zero_();
  }
  fc_->to(c_.device);
  fc_->flatten_parameters();
  if (world_.world_size() > 1) gradients_ = std::make_unique<nn::DataParallelGradients>(*fc_, world_);
  sgd_ = std::make_unique<nn::Sgd>(*fc_, nn::SgdConfig{c_.momentum, c_.weight_decay});
  schedule_.base_lr = c_.lr;
  schedule_.epochs = c_.epochs;
  schedule_.milestones = c_.schedule;
  schedule_.kind = nn::LrScheduleKind::Steps;
}

std::string LinearProbe::protocol() const {
  const nlohmann::ordered_json j = {{"backbone", backbone_.description},
                                    {"classes", classes_},
                                    {"image_size", result_.image_size},
                                    {"high_pass", result_.high_pass},
                                    {"cached_features", c_.cached_features},
                                    {"batch_size", c_.batch_size},
                                    {"seed", c_.seed}};
  return j.dump();
}

void LinearProbe::resume_if_asked() {
  const std::string& path = run_dir_->resume_path();
  if (!path.empty()) {
    const SafetensorsFile file = load_safetensors(path);
    const Metadata& m = file.metadata;
    ENGINE_CHECK(m.count("format") && m.at("format") == kLinclsCheckpointFormat,
                 "lincls: {} is not a `moco lincls` checkpoint (format '{}')", path,
                 m.count("format") ? m.at("format") : "none");
    const std::string saved = metadata_text(m, "protocol", path);
    ENGINE_CHECK(saved == protocol(),
                 "lincls: {} was trained with another backbone or protocol, so this run cannot continue it:\n  "
                 "checkpoint {}\n  this run   {}\nresume with the same --pretrained and flags",
                 path, saved, protocol());
    NamedTensors model, optimizer;
    for (const auto& [name, t] : file.tensors) {
      if (name.rfind(kOptimizerPrefix, 0) == 0) {
        optimizer.emplace_back(name.substr(std::string(kOptimizerPrefix).size()), t);
      } else {
        ENGINE_CHECK(name.rfind("fc.", 0) == 0, "lincls: {} holds '{}', which is not the classifier's", path, name);
        model.emplace_back(name.substr(std::string("fc.").size()), t);
      }
    }
    fc_->load_state_dict(model);
    sgd_->load_state_dict(optimizer, metadata_count(m, "sgd_steps", path));
    first_epoch_ = metadata_count(m, "epoch", path);
    result_.epochs_done = first_epoch_;
    result_.best_top1 = metadata_real(m, "best_top1", path);
    result_.best_top5 = metadata_real(m, "best_top5", path);
    result_.best_epoch = metadata_count(m, "best_epoch", path);
    result_.last_top1 = metadata_real(m, "last_top1", path);
    result_.last_top5 = metadata_real(m, "last_top5", path);
    log_info("resumed from {}: {} epochs done, best top-1 {:.2f}%", path, first_epoch_, result_.best_top1);
  }
  // Rank 0 writes the folder only after every rank has looked at it (open) and read its checkpoint.
  world_.barrier();
  // The epoch lines' "step" is the epochs done.
  if (root_) run_dir_->start_logs(c_.args_json, path.empty() ? std::nullopt : std::optional<int64_t>(first_epoch_));
}

void LinearProbe::save(const std::string& path, int64_t epochs_done) const {
  NamedTensors tensors;
  for (const auto& [name, t] : fc_->state_dict()) tensors.emplace_back("fc." + name, t);
  for (const auto& [name, t] : sgd_->state_dict()) tensors.emplace_back(kOptimizerPrefix + name, t);
  Metadata m = {{"format", kLinclsCheckpointFormat},
                {"pretrained", c_.backbone.pretrained},
                {"protocol", protocol()},
                {"epoch", std::to_string(epochs_done)},
                {"sgd_steps", std::to_string(sgd_->steps())},
                {"best_top1", fmt::format("{}", result_.best_top1)},
                {"best_top5", fmt::format("{}", result_.best_top5)},
                {"best_epoch", std::to_string(result_.best_epoch)},
                {"last_top1", fmt::format("{}", result_.last_top1)},
                {"last_top5", fmt::format("{}", result_.last_top5)},
                {"args", c_.args_json}};
  save_safetensors(path, tensors, m);
}

// One SGD step on a global batch of `global_images` images, of which this rank holds `features`
// (n, F) and `labels` (n) on the device; n is 0 (tensors undefined) for a rank past the end of the
// epoch's short last batch, which still joins the gradient average.
void LinearProbe::train_step(const Tensor& features, const Tensor& labels, int64_t global_images, double lr,
                             EpochMeter& meter) {
  fc_->zero_grad();
  const int64_t n = labels.defined() ? labels.numel() : 0;
  if (n > 0) {
    const Tensor logits = (*fc_)(features);              // (n, classes)
    const Tensor loss = cross_entropy(logits, labels);   // (): the mean over this rank's n images
    const double value = loss.item();
    ENGINE_CHECK(std::isfinite(value),
                 "lincls: the loss became {} (lr {}); the features may be too large for this learning rate: try a "
                 "smaller --lr",
                 value, lr);
    // The ranks' gradients are averaged (sum / W): weighting this rank's mean by n W / global_images
    // makes the average the gradient of the global batch's mean loss (weight 1 for a full batch).
    const double weight = static_cast<double>(n * world_.world_size()) / static_cast<double>(global_images);
    (loss * weight).backward();
    meter.loss_sum += value * static_cast<double>(n);
    meter.counts += topk_counts(logits.detach(), labels);
  }
  if (gradients_) gradients_->finish();
  sgd_->step(lr);
}

// --cached-features: the global batches of a new random order of the training features, each dealt
// to the ranks in slices of B / W as the loader deals images.
EpochMeter LinearProbe::train_cached_epoch(int64_t epoch, double lr) {
  EpochMeter meter;
  const int64_t N = cached_train_.features.size(0), per_rank = c_.batch_size / world_.world_size();
  Generator gen(c_.seed, kCachedOrderStream + static_cast<uint64_t>(epoch));
  const std::vector<int64_t> order = randperm(N, gen).to_vector<int64_t>();
  const int64_t* all_labels = cached_train_.labels.data<int64_t>();
  for (int64_t start = 0; start < N; start += c_.batch_size) {
    const int64_t end = std::min(N, start + c_.batch_size);
    const int64_t from = std::min(end, start + world_.rank() * per_rank), to = std::min(end, from + per_rank);
    const int64_t n = to - from;
    if (n == 0) {
      train_step(Tensor(), Tensor(), end - start, lr, meter);
      continue;
    }
    std::vector<int64_t> index(order.begin() + from, order.begin() + to), labels(index.size());
    for (size_t i = 0; i < index.size(); ++i) labels[i] = all_labels[index[i]];
    const Tensor features = index_select(cached_train_.features, Tensor::from_vector(index, {n}));  // (n, F)
    train_step(features, Tensor::from_vector(labels, {n}).to(c_.device), end - start, lr, meter);
  }
  return meter.over_ranks(world_);
}

EpochMeter LinearProbe::train_epoch(int64_t epoch, double lr) {
  if (c_.cached_features) return train_cached_epoch(epoch, lr);
  EpochMeter meter;
  // Every rank takes a step for each global batch, though the short last one may leave it none.
  const int64_t N = train_set_->size(), steps = (N + c_.batch_size - 1) / c_.batch_size;
  train_loader_->start_epoch(epoch);
  ProgressOptions po;
  po.print_freq = c_.print_freq;
  std::optional<ProgressLine> progress;  // rank 0's, of its own images
  if (root_) progress.emplace(fmt::format("lincls epoch {}/{}", epoch + 1, c_.epochs), steps, po);
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t global_images = std::min(c_.batch_size, N - step * c_.batch_size);
    std::optional<data::Batch> batch;
    if (step < train_loader_->batches_per_epoch()) batch = train_loader_->next();
    ENGINE_CHECK(step >= train_loader_->batches_per_epoch() || (batch && batch->index == step),
                 "lincls: the loader ended the epoch at batch {} of its {}", step, train_loader_->batches_per_epoch());
    if (!batch) {
      train_step(Tensor(), Tensor(), global_images, lr, meter);
      continue;
    }
    Tensor features;
    {
      NoGradGuard no_grad;
      features = backbone_.net->features(backbone_input(batch->views[0], result_.high_pass));  // (n, F)
    }
    train_step(features, batch->labels, global_images, lr, meter);
    if (progress)
      progress->update(step + 1, {{"loss", fmt::format("{:.4f}", meter.loss())},
                                  {"acc1", fmt::format("{:.1f}%", meter.counts.top1())},
                                  {"lr", fmt::format("{:.4g}", lr)}});
  }
  if (progress) progress->finish();
  return meter.over_ranks(world_);
}

TopkCounts LinearProbe::validate() {
  TopkCounts mine;  // a rank past the end of a small val/ has no images
  if (val_.features.size(0) > 0) {
    NoGradGuard no_grad;
    mine = topk_counts((*fc_)(val_.features), val_.labels);
  }
  return sum_over_ranks(mine, world_);
}

void LinearProbe::check_backbone_frozen(const char* when) const {
  const std::vector<std::string> changed = frozen_->changed(*backbone_.net);
  ENGINE_CHECK(changed.empty(),
               "lincls: the backbone changed {} ({} tensors, the first {}); the protocol trains fc only, so this "
               "result would be meaningless. This is a bug: please report it",
               when, changed.size(), changed.empty() ? "" : changed.front());
}

LinclsResult LinearProbe::run() {
  check_flags();
  run_dir_ = RunDirectory::open(c_.save_dir, c_.resume, "lincls");  // refuses an occupied folder first
  run_dir_->share_resume_path(world_);
  build();
  resume_if_asked();
  log_info("lincls: {} on {}{}: {} classes, {} training and {} validation images at {} px{}, {} epochs, lr {} ({}){}",
             backbone_.description, c_.device.str(),
             world_.world_size() > 1 ? fmt::format(" and {} ranks in all", world_.world_size()) : "", classes_,
             train_set_->size(), val_set_->size(), result_.image_size, result_.high_pass ? ", high-passed" : "",
             c_.epochs, c_.lr, schedule_.describe(),
             c_.cached_features ? ", cached features (not the paper's protocol)" : "");
  for (int64_t epoch = first_epoch_; epoch < c_.epochs; ++epoch) {
    const auto start = Clock::now();
    const double lr = schedule_.at(epoch);
    const EpochMeter train = train_epoch(epoch, lr);
    if (epoch == first_epoch_) check_backbone_frozen("during the first epoch");
    const TopkCounts val = validate();
    result_.last_top1 = val.top1();
    result_.last_top5 = val.top5();
    const bool best = result_.best_epoch < 0 || val.top1() > result_.best_top1;
    if (best) {
      result_.best_top1 = val.top1();
      result_.best_top5 = val.top5();
      result_.best_epoch = epoch;
    }
    result_.epochs_done = epoch + 1;
    if (!root_) continue;
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    run_dir_->metrics().append({{"kind", "epoch"},
                      {"epoch", epoch},
                      {"step", epoch + 1},
                      {"lr", lr},
                      {"train_loss", train.loss()},
                      {"train_top1", train.counts.top1()},
                      {"val_top1", val.top1()},
                      {"val_top5", val.top5()},
                      {"best_top1", result_.best_top1},
                      {"seconds", seconds}});
    run_dir_->metrics().sync();
    run_dir_->tensorboard().add_scalars(epoch + 1, {{"lincls/train_loss", train.loss()},
                                          {"lincls/val_top1", val.top1()},
                                          {"lincls/val_top5", val.top5()},
                                          {"lincls/lr", lr}});
    run_dir_->tensorboard().flush();
    log_info("epoch {:>3}/{}: loss {:.4f}, train top-1 {:.2f}%, val top-1 {:.2f}% top-5 {:.2f}% (best {:.2f}%){}",
               epoch + 1, c_.epochs, train.loss(), train.counts.top1(), val.top1(), val.top5(), result_.best_top1,
               c_.cached_features ? "" : fmt::format(", {:.0f} s", seconds));
    save(run_dir_->last_checkpoint().string(), epoch + 1);
    if (best) save(run_dir_->checkpoint("best.safetensors").string(), epoch + 1);
  }
  check_backbone_frozen("during training");
  result_.backbone_state = backbone_.net->state_dict();
  if (!root_) return result_;
  const nlohmann::ordered_json final_entry = {{"kind", "final"},
                                              {"best_top1", result_.best_top1},
                                              {"best_top5", result_.best_top5},
                                              {"best_epoch", result_.best_epoch},
                                              {"last_top1", result_.last_top1},
                                              {"last_top5", result_.last_top5},
                                              {"backbone", result_.backbone},
                                              {"image_size", result_.image_size},
                                              {"high_pass", result_.high_pass},
                                              {"cached_features", c_.cached_features}};
  run_dir_->metrics().append(final_entry);
  run_dir_->metrics().sync();
  write_file_atomic((run_dir_->root() / "result.json").string(), final_entry.dump(2) + "\n");
  return result_;
}

}  // namespace

LinclsResult linear_classification(const LinclsConfig& config) { return LinearProbe(config).run(); }

}  // namespace engine::ssl
