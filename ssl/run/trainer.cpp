// trainer.cpp - see trainer.h.
#include "ssl/run/trainer.h"

#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>

#include "data/image_folder.h"
#include "data/loader.h"
#include "engine/check.h"
#include "engine/log.h"
#include "engine/progress.h"
#include "layers/data_parallel.h"
#include "layers/lr_schedule.h"
#include "layers/optimizer.h"
#include "ops/elementwise_binary.h"
#include "ops/reduce_dim.h"
#include "ssl/eval/classifier_accuracy.h"
#include "ssl/eval/knn.h"
#include "ssl/masking/mask_picture.h"
#include "ssl/run/run_dir.h"

namespace engine::ssl {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// What the steps leave on the device for the log, summed there and read by the host once per
// print interval (and before every checkpoint), so a step never waits for the GPU:
//   sums (5,) f64 = [loss, top-1 rows, top-5 rows, foreground share, the last step's loss]
// (the first four summed over the steps since the last read; f64 keeps the counts exact).
// A loss that is not finite makes the sum not finite, which the read catches.
struct DeviceSums {
  Tensor sums;          // undefined when no step is pending
  Tensor first_loss;    // the run's first loss, kept until it has been read
  int64_t first_step = 0, steps = 0;  // the pending steps: [first_step, first_step + steps)
  int64_t first_batch = 0, rows = 0;
};

// One read of DeviceSums: the values of `steps` steps of `rows` rows in all.
struct StepValues {
  int64_t steps = 0, rows = 0;
  double loss_sum = 0, correct1 = 0, correct5 = 0, fg_ratio_sum = 0, last_loss = 0;
};

// Sums over some steps: the epoch's, or the window since the last logged step. The host knows the
// counts and times at once; the values computed on the device arrive at each read.
struct Meter {
  int64_t steps = 0, images = 0;
  int64_t read_steps = 0, read_rows = 0;  // the steps whose values have been read
  uint64_t host_reads = 0;  // reads of tensor values by the host during the steps (engine/tensor.h)
  double loss_sum = 0, correct1 = 0, correct5 = 0, seconds = 0, wait_seconds = 0, fg_ratio_sum = 0;
  void add_step(int64_t images_in_step, double step_seconds, double wait) {
    ++steps;
    images += images_in_step;
    seconds += step_seconds;
    wait_seconds += wait;
  }
  void add_values(const StepValues& v) {
    read_steps += v.steps;
    read_rows += v.rows;
    loss_sum += v.loss_sum;
    correct1 += v.correct1;
    correct5 += v.correct5;
    fg_ratio_sum += v.fg_ratio_sum;
  }
  double loss() const { return read_steps ? loss_sum / static_cast<double>(read_steps) : 0.0; }
  double fg_ratio() const { return read_steps ? fg_ratio_sum / static_cast<double>(read_steps) : 0.0; }
  double acc1() const { return read_rows ? 100.0 * correct1 / static_cast<double>(read_rows) : 0.0; }
  double acc5() const { return read_rows ? 100.0 * correct5 / static_cast<double>(read_rows) : 0.0; }
  double images_per_second() const { return seconds > 0 ? static_cast<double>(images) / seconds : 0.0; }
  double data_wait_share() const { return seconds > 0 ? wait_seconds / seconds : 0.0; }
};

class Trainer {
 public:
  explicit Trainer(const PretrainConfig& config)
      : c_(config),
        world_(config.world ? *config.world : local_collectives()),
        root_(world_.is_root()),
        command_(config.method == Method::Supervised ? "supervised" : "pretrain") {}
  PretrainResult run();

 private:
  void check_flags() const;
  void build();
  void build_supervised();  // the classifier of the training folder's classes, and the validation folder
  void resume_if_asked();
  // Trains the rest of `epoch`; false when --max-steps stopped it.
  bool train_epoch(int64_t epoch);
  void train_step(data::Batch& batch, double lr, Meter& epoch_meter, Meter& window);
  // The device work of a step: forward, backward, the optimizer step; returns its DeviceSums row
  // (5,) f64. What a CUDA graph captures (step_graph.h), so it reads the step's number and the
  // learning rate from the device.
  Tensor step_on_device(const TrainingBatch& views, const data::Batch& batch);
  // Reads what the pending steps left on the device into both meters; stops the run when the
  // loss was not finite. Called at print steps and before every checkpoint.
  void read_device_sums(double lr, Meter& epoch_meter, Meter& window);
  void log_window(int64_t epoch, int64_t batch_index, double lr, Meter& window);
  void log_epoch(int64_t epoch, double lr, const Meter& meter);
  void run_knn_monitor(int64_t epoch);
  // Supervised: the classifier on DATA/val, logged and written as the "final" metrics entry.
  void run_final_validation();
  void save(const std::string& path);
  RunIdentity run_identity() const {
    return {c_.batch_size,        c_.seed, c_.args_json, c_.strategy, optimizer_name(c_.optimizer),
            world_.world_size() * method_->bn_groups(), world_.world_size()};
  }
  void write_masking_picture(int64_t epoch, const data::Batch& batch, const MaskedBatch& masked);
  // MoCo's published hard negatives (O7): index lists made on the host each step, so no CUDA graph.
  bool host_indexed_hard_negatives() const {
    return c_.method == Method::MocoV2 && c_.moco.reference_quirks && c_.strategy != MaskStrategy::None &&
           c_.num_nonsem > 0;
  }
  std::string checkpoint_path(const std::string& name) const { return run_dir_->checkpoint(name).string(); }

  PretrainConfig c_;
  Collectives& world_;
  const bool root_;  // rank 0: writes the run directory and draws the progress line
  const char* command_;  // the command in messages: "pretrain" or "supervised"
  std::optional<RunDirectory> run_dir_;
  std::shared_ptr<data::ImageFolder> dataset_;
  std::shared_ptr<data::ImageFolder> val_set_;  // supervised with DATA/val: the final validation's images
  std::unique_ptr<data::Loader> loader_;
  std::unique_ptr<ContrastiveMethod> method_;
  std::unique_ptr<SaliencyGuidedMasking> masking_;  // none for --strategy none
  std::unique_ptr<nn::Optimizer> optimizer_;
  std::unique_ptr<nn::DataParallelGradients> gradients_;  // more than one rank only
  nn::LrSchedule schedule_;
  TrainingPosition position_;
  PretrainResult result_;
  DeviceSums pending_;
  bool ran_a_step_ = false;
  uint64_t host_reads_at_last_read_ = 0;  // host_read_count() after the last read of DeviceSums
  Tensor step_number_;  // (1) i64 on the device: position_.step, written before each step
  int64_t step_rows_ = 0;  // the rows of the loss of the last step that ran on the host
  // Last, so it goes first: its graph replays into the method's and the optimizer's memory.
  std::unique_ptr<StepGraph> step_graph_;
};

int64_t bn_groups_of(const PretrainConfig& c) {
  switch (c.method) {
    case Method::SimClr: return c.simclr.bn_groups;
    case Method::Supervised: return c.supervised.bn_groups;
    case Method::MocoV2: break;
  }
  return c.moco.bn_groups;
}

void Trainer::check_flags() const {
  ENGINE_CHECK(c_.batch_size >= 1, "{}: -b must be at least 1, found {}", command_, c_.batch_size);
  const int64_t W = world_.world_size();
  // --cuda-graphs on where the step cannot be captured is refused before anything is built.
  use_cuda_graphs(c_.cuda_graphs, why_step_cannot_be_captured(c_.device, W, host_indexed_hard_negatives()),
                  command_);
  ENGINE_CHECK(c_.batch_size % W == 0,
               "{}: -b {} is the global batch (as main_moco.py's), shared by {} processes, and does not divide "
               "by {}: use a multiple of {} (for example {})",
               command_, c_.batch_size, W, W, W, std::max<int64_t>(1, c_.batch_size / W) * W);
  if (c_.method == Method::MocoV2) {
    ENGINE_CHECK(c_.moco.queue_size % c_.batch_size == 0,
                 "{}: the queue length --moco-k {} is not a multiple of the batch size -b {}: every step "
                 "enqueues a whole batch of keys; choose --moco-k as a multiple of {} (for example {})",
                 command_, c_.moco.queue_size, c_.batch_size, c_.batch_size,
                 std::max<int64_t>(1, c_.moco.queue_size / c_.batch_size) * c_.batch_size);
  } else if (c_.method == Method::SimClr) {
    ENGINE_CHECK(c_.batch_size >= 2 || c_.num_nonsem > 0,
                 "{}: SimCLR with -b 1 has no negatives (each image's only partner is its other view); use a "
                 "batch of at least 2", command_);
  }
  const int64_t groups = bn_groups_of(c_);
  ENGINE_CHECK((c_.batch_size / W) % groups == 0,
               "{}: the batch of {} per process does not split into {} BatchNorm groups (--bn-groups, the groups "
               "within each process); use a batch that is a multiple of {}",
               command_, c_.batch_size / W, groups, groups * W);
  ENGINE_CHECK(c_.epochs >= 1, "{}: --epochs must be at least 1, found {}", command_, c_.epochs);
  ENGINE_CHECK(c_.image_size >= 16, "{}: --image-size {} is too small (at least 16)", command_, c_.image_size);
  ENGINE_CHECK(c_.lr > 0 && std::isfinite(c_.lr), "{}: --lr must be positive, found {}", command_, c_.lr);
  ENGINE_CHECK(c_.knn_every >= 0 && c_.knn_k >= 1 && c_.knn_t > 0,
               "{}: --knn-every ({}) must be >= 0, --knn-k ({}) >= 1 and --knn-t ({}) positive", command_, c_.knn_every,
               c_.knn_k, c_.knn_t);
  if (c_.knn_every > 0) {  // fail now, not after the first epoch
    const std::string knn_data = c_.knn_data.empty() ? c_.data : c_.knn_data;
    ENGINE_CHECK(fs::is_directory(fs::path(knn_data) / "train") && fs::is_directory(fs::path(knn_data) / "val"),
                 "{}: --knn-every needs a dataset root with train/ (the memory bank) and val/ (the queries); {} "
                 "has not both: give one with --knn-data",
                 command_, knn_data);
  }
  ENGINE_CHECK(c_.blur_sigma.size() == 2 && c_.blur_sigma[0] > 0 && c_.blur_sigma[1] >= c_.blur_sigma[0],
               "{}: --blur-sigma wants MIN,MAX with 0 < MIN <= MAX (the reference's 0.1,2 at 224 pixels), found "
               "{}",
               command_, fmt::join(c_.blur_sigma, ","));
  ENGINE_CHECK(c_.print_freq >= 1, "{}: --print-freq must be at least 1, found {}", command_, c_.print_freq);
  ENGINE_CHECK(c_.method != Method::Supervised || c_.strategy == MaskStrategy::None,
               "supervised: --strategy {} masks views for the contrastive methods' step (the masked query and its "
               "hard negatives); a supervised run trains on the labelled views as they are: use --strategy none",
               mask_strategy_name(c_.strategy));
  const SaliencySource& source = c_.saliency;
  ENGINE_CHECK(source.kind != SaliencySourceKind::Pretrained || fs::exists(source.file),
               "{}: --saliency pretrained:{}: no such file; give a ResNet converted with "
               "tools/convert_torchvision_resnet.py or a `moco pretrain` checkpoint",
               command_, source.file);
  if (c_.strategy != MaskStrategy::None) {
    const bool moco = c_.method == Method::MocoV2;
    ENGINE_CHECK(source.kind != (moco ? SaliencySourceKind::Online : SaliencySourceKind::Momentum),
                 "{}: --saliency {} is {}; with --method {} the method's own maps are --saliency {}",
                 command_, saliency_source_text(source),
                 moco ? "SimCLR's encoder, which MoCo does not have" : "MoCo's key encoder, which SimCLR does not have",
                 method_name(c_.method), moco ? "momentum" : "online");
  }
  ENGINE_CHECK(c_.num_nonsem >= 0, "{}: --num-nonsem must be >= 0, found {}", command_, c_.num_nonsem);
  ENGINE_CHECK(c_.strategy != MaskStrategy::None || c_.num_nonsem == 0,
               "{}: --num-nonsem {} asks for hard negatives, which are masked copies of the second view; choose "
               "a masking --strategy (hp, blur or mean), or use --num-nonsem 0 for the plain method",
               command_, c_.num_nonsem);
  ENGINE_CHECK(c_.optimizer != OptimizerKind::Lars || (c_.lars_eta > 0 && std::isfinite(c_.lars_eta)),
               "{}: --lars-eta must be positive, found {}", command_, c_.lars_eta);
}

void Trainer::build_supervised() {
  SupervisedConfig config = c_.supervised;
  const std::vector<std::string>& classes = dataset_->classes();
  config.num_classes = static_cast<int64_t>(classes.size());
  ENGINE_CHECK(config.num_classes >= 2,
               "supervised: {} holds one class ('{}'); a classifier needs at least 2: give a training folder with one "
               "subfolder per class (DATA/train/<class>/<image>)",
               dataset_->root(), classes.front());
  // A dataset root's val/; DATA given as an image folder has none (a class of it named "val" is not one).
  const fs::path val = fs::path(c_.data) / "val";
  if (fs::is_directory(fs::path(c_.data) / "train") && fs::is_directory(val)) {
    val_set_ = std::make_shared<data::ImageFolder>(val.string());
    const std::vector<std::string>& val_classes = val_set_->classes();
    size_t first = 0;  // the first class that differs
    while (first < classes.size() && first < val_classes.size() && classes[first] == val_classes[first]) ++first;
    ENGINE_CHECK(val_classes == classes,
                 "supervised: the classes of {} ({}) are not those of {} ({}): class {} is '{}' there and '{}' here, "
                 "so the validation top-1 would compare other labels; give val/ the training folder's class folders",
                 val.string(), val_classes.size(), dataset_->root(), classes.size(), first,
                 first < val_classes.size() ? val_classes[first] : "none",
                 first < classes.size() ? classes[first] : "none");
  }
  method_ = std::make_unique<Supervised>(config, c_.seed, c_.device);
}

void Trainer::build() {
  dataset_ = std::make_shared<data::ImageFolder>(data::resolve_split(c_.data, "train"));
  if (c_.method == Method::Supervised)
    build_supervised();
  else if (c_.method == Method::SimClr)
    method_ = std::make_unique<SimCLR>(c_.simclr, c_.seed, c_.device, world_);
  else
    method_ = std::make_unique<MoCo>(c_.moco, c_.seed, c_.device, world_);
  // --precision bf16 (engine/precision.h): the trunks of both encoders run bf16 activations; the
  // parameters, their gradients, the optimizer and the checkpoints stay f32.
  const ActivationFormat activations = activation_format(c_.precision, c_.device);
  method_->online_encoder().set_activations(activations);
  method_->saliency_encoder().set_activations(activations);
  data::LoaderOptions options;
  options.batch_size = static_cast<int>(c_.batch_size / world_.world_size());  // this rank's share
  options.rank = world_.rank();
  options.world_size = world_.world_size();
  options.workers = c_.workers;
  options.views = static_cast<int>(method_->views_per_image());
  options.seed = c_.seed;
  options.fast_decode = c_.fast_decode;
  options.device = c_.device;
  const int size = static_cast<int>(c_.image_size);
  data::AugmentConfig augment;
  if (c_.method == Method::Supervised) {
    augment = data::lincls_train_augment(size);  // torchvision's standard: RandomResizedCrop 0.08-1, flip
  } else {
    augment = c_.aug_plus ? data::mocov2_augment(size) : data::mocov1_augment(size);
    augment.blur_sigma_min = static_cast<float>(c_.blur_sigma[0]);
    augment.blur_sigma_max = static_cast<float>(c_.blur_sigma[1]);
  }
  loader_ = std::make_unique<data::Loader>(dataset_, augment, options);
  if (c_.strategy != MaskStrategy::None) {
    MaskingConfig mc;
    mc.strategy = c_.strategy;
    mc.saliency = c_.saliency;
    if (mc.saliency.kind == SaliencySourceKind::Own) mc.saliency.kind = method_->own_saliency_source();
    mc.num_nonsem = c_.num_nonsem;
    mc.bn_groups = method_->bn_groups();
    mc.reference_quirks = c_.moco.reference_quirks;
    mc.seed = c_.seed;
    mc.rank = world_.rank();
    masking_ = std::make_unique<SaliencyGuidedMasking>(mc, c_.device);
  }
  if (c_.optimizer == OptimizerKind::Lars)
    optimizer_ = std::make_unique<nn::Lars>(method_->online_encoder(),
                                            nn::LarsConfig{c_.momentum, c_.weight_decay, c_.lars_eta});
  else
    optimizer_ = std::make_unique<nn::Sgd>(method_->online_encoder(), nn::SgdConfig{c_.momentum, c_.weight_decay});
  if (world_.world_size() > 1)
    gradients_ = std::make_unique<nn::DataParallelGradients>(method_->online_encoder(), world_);
  const std::string no_graphs = why_step_cannot_be_captured(c_.device, world_.world_size(), host_indexed_hard_negatives());
  const bool graphs = use_cuda_graphs(c_.cuda_graphs, no_graphs, command_);
  if (c_.device.is_cuda() && c_.cuda_graphs == CudaGraphs::Auto && !graphs)
    log_info("{}: each step is launched kernel by kernel, without a CUDA graph: {}", command_, no_graphs);
  step_graph_ = std::make_unique<StepGraph>(c_.device, graphs);
  step_number_ = Tensor::zeros({1}, DType::i64, c_.device);
  schedule_.base_lr = c_.lr;
  schedule_.epochs = c_.epochs;
  schedule_.milestones = c_.schedule;
  schedule_.kind = c_.cos_per_step ? nn::LrScheduleKind::CosinePerStep
                                   : (c_.cos ? nn::LrScheduleKind::Cosine : nn::LrScheduleKind::Steps);
}

void Trainer::resume_if_asked() {
  const std::string& path = run_dir_->resume_path();
  if (!path.empty()) {
    position_ = load_checkpoint(path, *method_, *optimizer_, run_identity());
    result_.last_checkpoint = path;
    log_info("resumed from {}: epoch {}, batch {}, step {}", path, position_.epoch, position_.batch, position_.step);
  } else if (c_.resume == "auto") {
    log_info("--resume auto: no checkpoint in {} yet, starting from scratch", run_dir_->checkpoint("").string());
  }
  // Only now, past the refusal of an occupied folder, so a refused run leaves the other run's flags;
  // and after every rank has looked at the folder (open), so none sees rank 0's new files.
  world_.barrier();
  if (root_)
    run_dir_->start_logs(c_.args_json, path.empty() ? std::nullopt : std::optional<int64_t>(position_.step));
}

void Trainer::save(const std::string& path) {
  result_.last_checkpoint = path;  // every rank knows where the last checkpoint is, for messages
  if (!root_) return;
  save_checkpoint(path, *method_, *optimizer_, position_, run_identity());
  result_.last_checkpoint = path;
}

Tensor Trainer::step_on_device(const TrainingBatch& views, const data::Batch& batch) {
  ContrastiveOutput out;
  Tensor values = Tensor::zeros({5}, DType::f64, c_.device);  // this step's DeviceSums row
  if (masking_) {
    MaskedBatch masked;
    out = method_->train_forward(views, masking_.get(), position_.step, &masked);
    values.slice(0, 3, 4).copy_(mean(masked.fg_query.to(DType::f32)).view({1}));  // the share of foreground cells
    if (batch.index == 0) write_masking_picture(position_.epoch, batch, masked);  // the first batch of each epoch
  } else {
    out = method_->train_forward(views, nullptr, position_.step, nullptr);
  }
  values.slice(0, 0, 1).copy_(out.loss.detach().view({1}));
  values.slice(0, 1, 3).copy_(out.correct);
  method_->online_encoder().zero_grad();
  out.loss.backward();
  if (gradients_) gradients_->finish();  // the mean over the ranks
  optimizer_->step();
  step_rows_ = out.rows;  // set at capture only when graphed: it depends on the batch's shape alone
  return values;
}

void Trainer::train_step(data::Batch& batch, double lr, Meter& epoch_meter, Meter& window) {
  const auto start = Clock::now();
  if (c_.before_step) c_.before_step(position_.step, batch);
  // What changes from step to step goes to the device first, outside any captured graph.
  optimizer_->set_lr(lr);
  step_number_.fill_(static_cast<double>(position_.step));
  std::vector<Tensor> inputs = batch.views;  // views_per_image() x (N, 3, H, W), then labels (N)
  if (batch.labels.defined()) inputs.push_back(batch.labels);
  const size_t view_count = batch.views.size();
  // The outputs of a replay are the graph's own: `values` is copied before the next step.
  // The masked step draws the first batch of each epoch into a picture: that step reads from the
  // device, so it runs eagerly.
  const bool draws_picture = masking_ && batch.index == 0;
  const Tensor values = step_graph_->run(
      inputs,
      [&](const std::vector<Tensor>& in) {
        TrainingBatch views{
            {in.begin(), in.begin() + static_cast<std::ptrdiff_t>(view_count)}, Tensor(), step_number_};
        if (in.size() > view_count) views.labels = in[view_count];
        return std::vector<Tensor>{step_on_device(views, batch)};
      },
      draws_picture).front();
  if (step_graph_->replays() == 1 && result_.graph_replays == 0)
    log_info("{}: step {} was captured as a CUDA graph; the steps after it replay it", command_, position_.step);
  result_.graph_replays = step_graph_->replays();
  if (!ran_a_step_) pending_.first_loss = values.slice(0, 0, 1).clone();
  ran_a_step_ = true;
  if (!pending_.sums.defined()) {
    pending_.sums = values.clone();
    pending_.first_step = position_.step;
    pending_.first_batch = batch.index;
  } else {
    pending_.sums = add(pending_.sums, values);
  }
  pending_.sums.slice(0, 4, 5).copy_(values.slice(0, 0, 1));  // the last loss, not summed
  ++pending_.steps;
  pending_.rows += step_rows_;
  ++position_.step;
  position_.batch = batch.index + 1;
  const double seconds = seconds_between(start, Clock::now()) + batch.wait_seconds;
  const int64_t images = batch.size() * world_.world_size();  // the global batch
  epoch_meter.add_step(images, seconds, batch.wait_seconds);
  window.add_step(images, seconds, batch.wait_seconds);
}

void Trainer::read_device_sums(double lr, Meter& epoch_meter, Meter& window) {
  if (!pending_.sums.defined()) return;
  window.host_reads += host_read_count() - host_reads_at_last_read_;  // what the steps themselves read
  // The mean over the ranks (each rank's counts are of its own rows, so the mean keeps the shares).
  Tensor sums = pending_.sums.clone();
  world_.all_reduce(sums, Reduction::Average);
  const std::vector<double> v = sums.to_vector<double>();  // waits for the GPU, once
  const StepValues values{pending_.steps, pending_.rows, v[0], v[1], v[2], v[3], v[4]};
  const int64_t first = pending_.first_step, last = first + pending_.steps - 1;
  const int64_t first_batch = pending_.first_batch;
  if (pending_.first_loss.defined()) {  // once per run
    Tensor first_loss = pending_.first_loss.clone();
    world_.all_reduce(first_loss, Reduction::Average);
    result_.first_loss = first_loss.item();
  }
  pending_ = DeviceSums();
  if (!std::isfinite(values.loss_sum)) {
    const std::string where =
        first == last ? fmt::format("at epoch {}, batch {} (step {})", position_.epoch, first_batch, first)
                      : fmt::format("in steps {} to {} (epoch {}, batches {} to {})", first, last, position_.epoch,
                                    first_batch, first_batch + last - first);
    ENGINE_THROW("{}: the loss became {} {}, with lr {}; training stops here and nothing after the last good "
                 "checkpoint is saved. The last good checkpoint is {}. Resume from it with a lower --lr",
                 command_, std::isnan(values.loss_sum) ? "NaN" : "infinite", where, lr,
                 result_.last_checkpoint.empty() ? "none (no checkpoint was written yet)" : result_.last_checkpoint);
  }
  epoch_meter.add_values(values);
  window.add_values(values);
  result_.last_loss = values.last_loss;
  host_reads_at_last_read_ = host_read_count();
}

void Trainer::write_masking_picture(int64_t epoch, const data::Batch& batch, const MaskedBatch& masked) {
  if (!root_) return;  // rank 0's share of the batch
  MaskPictureOptions options;
  options.rows = 8;
  write_mask_picture((run_dir_->subfolder("images") / fmt::format("epoch_{:04d}.jpg", epoch)).string(), batch.views[0],
                     batch.views[1], masked, options);
}

void Trainer::log_window(int64_t epoch, int64_t batch_index, double lr, Meter& window) {
  nlohmann::ordered_json entry = {{"kind", "step"},
                                  {"epoch", epoch},
                                  {"step", position_.step},
                                  {"batch", batch_index},
                                  {"loss", window.loss()},
                                  {"acc1", window.acc1()},
                                  {"acc5", window.acc5()},
                                  {"lr", lr},
                                  {"img_per_s", window.images_per_second()},
                                  {"data_wait", window.data_wait_share()},
                                  {"host_reads", window.host_reads}};
  std::vector<TaggedValue> scalars = {{"loss", window.loss()},
                                      {"acc1", window.acc1()},
                                      {"acc5", window.acc5()},
                                      {"lr", lr},
                                      {"img_per_s", window.images_per_second()}};
  if (masking_) {  // the share of the query views' cells the saliency called foreground
    entry["fg_ratio"] = window.fg_ratio();
    scalars.push_back({"saliency/fg_ratio", window.fg_ratio()});
  }
  if (root_) {
    run_dir_->metrics().append(entry);
    run_dir_->tensorboard().add_scalars(position_.step, scalars);
  }
  window = Meter();
}

void Trainer::log_epoch(int64_t epoch, double lr, const Meter& meter) {
  if (!root_) return;
  run_dir_->metrics().append({{"kind", "epoch"},
                    {"epoch", epoch},
                    {"step", position_.step},
                    {"loss", meter.loss()},
                    {"acc1", meter.acc1()},
                    {"acc5", meter.acc5()},
                    {"lr", lr},
                    {"img_per_s", meter.images_per_second()},
                    {"data_wait", meter.data_wait_share()},
                    {"seconds", meter.seconds}});
  run_dir_->metrics().sync();
  run_dir_->tensorboard().add_scalars(position_.step, {{"epoch/loss", meter.loss()}, {"epoch/acc1", meter.acc1()}});
  run_dir_->tensorboard().flush();
}

void Trainer::run_knn_monitor(int64_t epoch) {
  nn::ResNet& encoder = method_->online_encoder();
  encoder.eval();  // running statistics (rank 0's, which extract_features broadcasts), none of them updated
  FeatureOptions fo;
  fo.batch_size = c_.batch_size / world_.world_size();  // this rank's share, as in training
  fo.workers = c_.workers;
  fo.seed = c_.seed;
  fo.high_pass = c_.strategy == MaskStrategy::Hp;  // the inputs it is trained on
  fo.device = c_.device;
  fo.world = &world_;  // the ranks share the images; every rank gets the counts of all
  KnnOptions ko;
  ko.k = c_.knn_k;
  ko.temperature = c_.knn_t;
  const auto start = Clock::now();
  const TopkCounts counts =
      knn_on_folders(encoder, c_.knn_data.empty() ? c_.data : c_.knn_data, c_.image_size, fo, ko);
  encoder.train();
  result_.last_knn_top1 = counts.top1();
  if (!root_) return;
  log_info("knn monitor after epoch {}: top-1 {:.2f}%, top-5 {:.2f}% (k {}, t {}; {:.0f} s)", epoch + 1,
             counts.top1(), counts.top5(), ko.k, ko.temperature, seconds_between(start, Clock::now()));
  run_dir_->metrics().append({{"kind", "knn"},
                    {"epoch", epoch},
                    {"step", position_.step},
                    {"knn_top1", counts.top1()},
                    {"knn_top5", counts.top5()}});
  run_dir_->metrics().sync();
  run_dir_->tensorboard().add_scalars(position_.step, {{"knn/top1", counts.top1()}, {"knn/top5", counts.top5()}});
  run_dir_->tensorboard().flush();
}

void Trainer::run_final_validation() {
  nn::ResNet& classifier = method_->online_encoder();
  classifier.eval();  // running statistics (rank 0's, which the feature extraction broadcasts), none updated
  FeatureOptions fo;
  fo.batch_size = c_.batch_size / world_.world_size();  // this rank's share, as in training
  fo.workers = c_.workers;
  fo.seed = c_.seed;
  fo.device = c_.device;
  fo.world = &world_;  // the ranks share the images; every rank gets the counts of all
  const auto start = Clock::now();
  const TopkCounts counts = classifier_accuracy(classifier, val_set_, c_.image_size, fo);
  classifier.train();
  result_.val_top1 = counts.top1();
  result_.val_top5 = counts.top5();
  if (!root_) return;
  log_info("validation of the classifier after step {} (epoch {}): top-1 {:.2f}%, top-5 {:.2f}% on {} images of {} "
           "({:.0f} s)",
           position_.step, position_.epoch, counts.top1(), counts.top5(), counts.total, val_set_->root(),
           seconds_between(start, Clock::now()));
  run_dir_->metrics().append({{"kind", "final"},
                              {"epoch", position_.epoch},
                              {"step", position_.step},
                              {"val_top1", counts.top1()},
                              {"val_top5", counts.top5()},
                              {"val_images", counts.total}});
  run_dir_->metrics().sync();
  run_dir_->tensorboard().add_scalars(position_.step, {{"val/top1", counts.top1()}, {"val/top5", counts.top5()}});
  run_dir_->tensorboard().flush();
}

bool Trainer::train_epoch(int64_t epoch) {
  const int64_t batches = loader_->batches_per_epoch();
  host_reads_at_last_read_ = host_read_count();  // what the epoch's start reads counts in its first window
  loader_->start_epoch(epoch, position_.batch);
  ProgressOptions progress_options;
  progress_options.print_freq = c_.print_freq;
  std::optional<ProgressLine> progress;  // rank 0's
  if (root_) progress.emplace(fmt::format("epoch {}/{}", epoch + 1, c_.epochs), batches, progress_options);
  Meter epoch_meter, window;
  double lr = schedule_.at(epoch, position_.batch, batches);
  while (auto batch = loader_->next()) {
    lr = schedule_.at(epoch, batch->index, batches);
    train_step(*batch, lr, epoch_meter, window);
    const bool last = batch->index + 1 == batches;
    if ((batch->index + 1) % c_.print_freq == 0 || last) {
      read_device_sums(lr, epoch_meter, window);
      log_window(epoch, batch->index, lr, window);
    }
    // The values of the last read: between print steps nothing is read from the device.
    const bool read = epoch_meter.read_steps > 0;
    if (progress)
      progress->update(batch->index + 1, {{"loss", read ? fmt::format("{:.4f}", epoch_meter.loss()) : "-"},
                                       {"acc1", read ? fmt::format("{:.1f}%", epoch_meter.acc1()) : "-"},
                                       {"acc5", read ? fmt::format("{:.1f}%", epoch_meter.acc5()) : "-"},
                                       {"", fmt::format("{:.0f} img/s", epoch_meter.images_per_second())},
                                       {"data", fmt::format("{:.0f}%", 100 * epoch_meter.data_wait_share())},
                                       {"lr", fmt::format("{:.4g}", lr)}});
    const bool stop = c_.max_steps > 0 && position_.step >= c_.max_steps;
    if (!last && (stop || (c_.save_freq_steps > 0 && position_.step % c_.save_freq_steps == 0))) {
      read_device_sums(lr, epoch_meter, window);  // a checkpoint only after a finite loss
      save(checkpoint_path("last.safetensors"));
      host_reads_at_last_read_ = host_read_count();  // the checkpoint's reads are not the steps'
    }
    if (stop && !last) {
      if (progress) progress->finish();
      log_info("stopped at --max-steps {} (epoch {}, batch {}); {} resumes from here", c_.max_steps, epoch,
                 position_.batch, result_.last_checkpoint);
      return false;
    }
  }
  if (progress) progress->finish();
  position_ = {epoch + 1, 0, position_.step};
  log_epoch(epoch, lr, epoch_meter);
  const std::string path = checkpoint_path(fmt::format("checkpoint_{:04d}.safetensors", epoch));
  save(path);
  if (root_) publish_as_last(path, checkpoint_path("last.safetensors"));
  if (c_.knn_every > 0 && (epoch + 1) % c_.knn_every == 0) run_knn_monitor(epoch);
  return !(c_.max_steps > 0 && position_.step >= c_.max_steps);
}

PretrainResult Trainer::run() {
  check_flags();
  run_dir_ = RunDirectory::open(c_.save_dir, c_.resume, command_);  // refuses an occupied folder first
  run_dir_->share_resume_path(world_);
  build();
  resume_if_asked();
  const bool reached_max_steps = c_.max_steps > 0 && position_.step >= c_.max_steps;
  if (reached_max_steps || position_.epoch >= c_.epochs) {
    // A finished run that is resumed (a job script run twice, a retry after the last save) stays
    // as it is: training even one more step would move it past what was asked.
    log_info("{}: the run in {} is finished ({} at step {}, epoch {}); nothing to train. Raise {} to "
             "train further",
             command_, c_.save_dir,
             reached_max_steps ? fmt::format("--max-steps {} reached", c_.max_steps)
                               : fmt::format("all {} epochs done", c_.epochs),
             position_.step, position_.epoch, reached_max_steps ? "--max-steps" : "--epochs");
    result_.position = position_;
    return result_;
  }
  log_info("{} {} {} ({} parameters) on {}: {} images, {} batches of {} per epoch, {} epochs, {} lr {} ({})",
           c_.method == Method::Supervised ? "training" : "pretraining", method_name(c_.method),
           method_->online_encoder().config().arch,
           method_->online_encoder().flat_parameters().numel(), c_.device.str(), dataset_->size(),
           loader_->batches_per_epoch(), c_.batch_size, c_.epochs, optimizer_name(c_.optimizer), c_.lr,
           schedule_.describe());
  while (position_.epoch < c_.epochs) {
    if (!train_epoch(position_.epoch)) break;
  }
  if (val_set_) run_final_validation();
  result_.position = position_;
  return result_;
}

}  // namespace

const char* optimizer_name(OptimizerKind kind) { return kind == OptimizerKind::Lars ? "lars" : "sgd"; }

PretrainResult pretrain(const PretrainConfig& config) { return Trainer(config).run(); }

}  // namespace engine::ssl
