// part_probe.cpp - see part_probe.h.
#include "ssl/eval/part_probe.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <vector>

#include "data/codec.h"
#include "data/image_folder.h"
#include "data/loader.h"
#include "data/part_masks.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/log.h"
#include "engine/parallel_for.h"
#include "layers/lr_schedule.h"
#include "layers/optimizer.h"
#include "ops/cross_entropy.h"
#include "ops/index_select.h"
#include "ops/pooling.h"
#include "ssl/eval/accuracy.h"
#include "ssl/eval/features.h"

namespace engine::ssl {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kProbeOrderStream = 0x5052'0000'0000'0000ull;  // "PR" + epoch: the classifier's batch order
constexpr uint64_t kProbeInitStream = 0x5052'4900'0000'0000ull;   // "PRI": its initial weights

// The parts of one image that the probe pools: (R, g, g) weights and their type labels.
struct ImageParts {
  std::vector<float> weights;   // R x g x g
  std::vector<int64_t> labels;  // R
  int64_t tiny = 0;
};

ImageParts parts_of(const data::Sample& sample, const std::string& class_name, const std::string& root,
                    const std::string& split, const data::PartTable& table, const data::AugmentConfig& eval, int stride,
                    double min_cells) {
  const std::vector<uint8_t> bytes = data::read_file_bytes(sample.path);
  const data::ImageHeader header = data::read_image_header(bytes, sample.path);
  const data::Image mask =
      data::read_part_mask(data::part_mask_path(root, split, sample.path), header.width, header.height, sample.path);
  const data::PartCellShares shares = data::part_cell_shares(data::part_mask_view(mask, eval), stride);
  const size_t g2 = static_cast<size_t>(shares.grid) * static_cast<size_t>(shares.grid);
  ImageParts out;
  for (size_t k = 0; k < shares.ids.size(); ++k) {
    const int64_t label = table.label(class_name, shares.ids[k]);
    ENGINE_CHECK(label >= 0,
                 "the part mask of {} holds id {}, which {} does not list for class {}: add a line \"{} {} <name>\" "
                 "or relabel the mask (0 is background, 255 unlabelled)",
                 sample.path, shares.ids[k], data::part_table_path(root), class_name, class_name, shares.ids[k]);
    if (shares.cells(k) < min_cells) {
      ++out.tiny;
      continue;
    }
    out.weights.insert(out.weights.end(), shares.shares.begin() + static_cast<std::ptrdiff_t>(k * g2),
                       shares.shares.begin() + static_cast<std::ptrdiff_t>((k + 1) * g2));
    out.labels.push_back(label);
  }
  return out;
}

void check_same_classes(const data::ImageFolder& train, const data::ImageFolder& val, const std::string& root) {
  const std::vector<std::string>& a = train.classes();
  const std::vector<std::string>& b = val.classes();
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
    ENGINE_CHECK(i < a.size() && i < b.size() && a[i] == b[i],
                 "probe: train/ and val/ of {} hold different classes: class {} is '{}' in train/ and '{}' in val/; both "
                 "splits need the same class folders, so that a label means the same in both",
                 root, i, i < a.size() ? a[i] : "(none)", i < b.size() ? b[i] : "(none)");
}

void check_masks_exist(const std::string& root, const std::string& split, const data::ImageFolder& folder) {
  for (const data::Sample& sample : folder.samples()) {
    const std::string mask = data::part_mask_path(root, split, sample.path);
    ENGINE_CHECK(fs::exists(mask),
                 "no part mask for {}: expected {} (data/part_masks.h); every image of train/ and val/ needs one for "
                 "--level part or both",
                 sample.path, mask);
  }
}

// Appends rows (r, C) to a growing host matrix kept as a vector of blocks.
struct Rows {
  std::vector<Tensor> blocks;
  std::vector<int64_t> labels;
  Tensor matrix(int64_t C) const {
    int64_t n = 0;
    for (const Tensor& b : blocks) n += b.size(0);
    Tensor out = Tensor::empty({n, C}, DType::f32);
    int64_t row = 0;
    for (const Tensor& b : blocks) {
      out.slice(0, row, row + b.size(0)).copy_(b);
      row += b.size(0);
    }
    return out;
  }
};

class SplitExtractor {
 public:
  SplitExtractor(nn::ResNet& net, const PartProbeConfig& c, const data::PartTable* table, int64_t size, bool high_pass)
      : net_(net), c_(c), table_(table), eval_(data::eval_transform(static_cast<int>(size))), high_pass_(high_pass),
        grid_(static_cast<int>(net.stage_map_side(size, c.stage))), stride_(static_cast<int>(net.stage_stride(c.stage))) {}

  ProbeFeatures extract(const std::string& split, std::shared_ptr<const data::ImageFolder> dataset) const;

 private:
  nn::ResNet& net_;
  const PartProbeConfig& c_;
  const data::PartTable* table_;  // null: object level only
  data::AugmentConfig eval_;
  bool high_pass_;
  int grid_, stride_;  // the map's cells per side, and the view pixels per cell
};

ProbeFeatures SplitExtractor::extract(const std::string& split, std::shared_ptr<const data::ImageFolder> dataset) const {
  data::LoaderOptions lo;
  lo.batch_size = static_cast<int>(c_.batch_size);
  lo.workers = c_.workers;
  lo.views = 1;
  lo.shuffle = false;
  lo.drop_last = false;
  lo.device = c_.device;
  data::Loader loader(dataset, eval_, lo);
  loader.start_epoch(0);
  const int64_t C = net_.stage_channels(c_.stage);
  Rows objects, parts;
  ProbeFeatures out;
  NoGradGuard no_grad;
  while (auto batch = loader.next()) {
    const int64_t b = batch->size();
    const Tensor map = net_.stage_map(backbone_input(batch->views[0], high_pass_), c_.stage);  // (b, C, g, g)
    // Pooled in the map's dtype (bf16 under --precision bf16), kept in f32.
    objects.blocks.push_back(avgpool_global(map).to(DType::f32).to(Device::cpu()));           // (b, C)
    const std::vector<int64_t> labels = batch->labels.to(Device::cpu()).to_vector<int64_t>();
    objects.labels.insert(objects.labels.end(), labels.begin(), labels.end());
    if (!table_) continue;
    // Each image's parts, read and measured by the decoding threads' count of workers.
    const int64_t* index = batch->indices.data<int64_t>();
    std::vector<ImageParts> image_parts(static_cast<size_t>(b));
    parallel_for(b, std::max(1, c_.workers), [&](int64_t i) {
      const data::Sample& sample = (*dataset)[index[i]];
      image_parts[static_cast<size_t>(i)] = parts_of(sample, dataset->classes()[static_cast<size_t>(sample.label)],
                                                     c_.data, split, *table_, eval_, stride_, c_.min_part_cells);
    });
    std::vector<float> weights;
    std::vector<int64_t> image;
    for (int64_t i = 0; i < b; ++i) {
      const ImageParts& p = image_parts[static_cast<size_t>(i)];
      weights.insert(weights.end(), p.weights.begin(), p.weights.end());
      image.insert(image.end(), p.labels.size(), i);
      parts.labels.insert(parts.labels.end(), p.labels.begin(), p.labels.end());
      out.tiny_parts += p.tiny;
    }
    const int64_t R = static_cast<int64_t>(image.size());
    if (R == 0) continue;
    const Tensor w = Tensor::from_vector(weights, {R, grid_, grid_}).to(c_.device);         // (R, g, g)
    parts.blocks.push_back(
        region_avgpool(map, w, Tensor::from_vector(image, {R})).to(DType::f32).to(Device::cpu()));  // (R, C)
  }
  const auto as_tensor = [](const std::vector<int64_t>& v) {
    return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  };
  out.classes = dataset->classes();
  out.object = objects.matrix(C);
  out.object_labels = as_tensor(objects.labels);
  if (table_) {
    out.part = parts.matrix(C);
    out.part_labels = as_tensor(parts.labels);
  }
  return out;
}

// Per-dimension mean and 1 / std of the training rows, applied to any rows: (x - mean) / std. A
// dimension that is constant on train/ (a dead ReLU channel) gets std 1, so it stays 0.
struct Standardizer {
  std::vector<double> mean, inv_std;
  explicit Standardizer(const Tensor& train) {
    const int64_t N = train.size(0), C = train.size(1);
    const float* x = train.data<float>();
    mean.assign(static_cast<size_t>(C), 0.0);
    inv_std.assign(static_cast<size_t>(C), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) mean[static_cast<size_t>(c)] += x[n * C + c];
    for (double& m : mean) m /= static_cast<double>(std::max<int64_t>(N, 1));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const double d = x[n * C + c] - mean[static_cast<size_t>(c)];
        inv_std[static_cast<size_t>(c)] += d * d;
      }
    for (double& v : inv_std) {
      const double std = std::sqrt(v / static_cast<double>(std::max<int64_t>(N, 1)));
      v = std > 1e-12 ? 1.0 / std : 1.0;
    }
  }
  Tensor apply(const Tensor& rows) const {
    const int64_t N = rows.size(0), C = rows.size(1);
    Tensor out = Tensor::empty({N, C}, DType::f32);
    const float* x = rows.data<float>();
    float* y = out.data<float>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        y[n * C + c] = static_cast<float>((x[n * C + c] - mean[static_cast<size_t>(c)]) * inv_std[static_cast<size_t>(c)]);
    return out;
  }
};

// The val/ share of the training split's most frequent label.
double chance_top1(const Tensor& train_labels, const Tensor& test_labels, int64_t classes) {
  std::vector<int64_t> counts(static_cast<size_t>(classes), 0);
  for (int64_t label : train_labels.to_vector<int64_t>()) ++counts[static_cast<size_t>(label)];
  const int64_t majority = std::max_element(counts.begin(), counts.end()) - counts.begin();
  const std::vector<int64_t> test = test_labels.to_vector<int64_t>();
  if (test.empty()) return 0.0;
  return 100.0 * static_cast<double>(std::count(test.begin(), test.end(), majority)) / static_cast<double>(test.size());
}

ProbeLevelResult probe_level(const Tensor& train, const Tensor& train_labels, const Tensor& val,
                             const Tensor& val_labels, int64_t classes, const PartProbeConfig& c, const char* level) {
  ENGINE_CHECK(train.size(0) > 0 && val.size(0) > 0,
               "probe: the {} level has no {} rows to {}; {}", level, train.size(0) == 0 ? "training" : "validation",
               train.size(0) == 0 ? "train on" : "test", std::string(level) == "part"
                   ? "every part was under --min-part-cells, or the masks label nothing: lower it or use --stage layer3"
                   : "the split has no image");
  ProbeLevelResult r;
  r.train_rows = train.size(0);
  r.val_rows = val.size(0);
  r.classes = classes;
  r.top1 = linear_probe_top1(train, train_labels, val, val_labels, classes, c.classifier, c.device);
  r.chance = chance_top1(train_labels, val_labels, classes);
  return r;
}

}  // namespace

ProbeLevel parse_probe_level(const std::string& text) {
  if (text == "object") return ProbeLevel::Object;
  if (text == "part") return ProbeLevel::Part;
  if (text == "both") return ProbeLevel::Both;
  ENGINE_THROW("--level: expected object, part or both, found '{}'", text.substr(0, 60));
}

int parse_probe_stage(const std::string& text) {
  if (text == "layer3") return 3;
  if (text == "layer4") return 4;
  ENGINE_THROW("--stage: expected layer3 or layer4, found '{}'", text.substr(0, 60));
}

double linear_probe_top1(const Tensor& train, const Tensor& train_labels, const Tensor& test,
                         const Tensor& test_labels, int64_t classes, const LinearProbeOptions& o, Device device) {
  ENGINE_CHECK(o.epochs >= 1 && o.batch_size >= 1 && o.lr > 0,
               "probe: the classifier needs --probe-epochs >= 1, --probe-batch >= 1 and --probe-lr > 0");
  const Standardizer standardize(train);
  const Tensor x_train = standardize.apply(train).to(device), x_test = standardize.apply(test).to(device);  // (N, C)
  const std::vector<int64_t> labels = train_labels.to_vector<int64_t>();
  const int64_t N = x_train.size(0), C = x_train.size(1);
  Generator init(o.seed, kProbeInitStream);
  nn::Linear fc(C, classes, init);
  fc.to(device);
  fc.flatten_parameters();
  nn::Sgd sgd(fc, nn::SgdConfig{o.momentum, o.weight_decay});
  nn::LrSchedule schedule;
  schedule.base_lr = o.lr;
  schedule.epochs = o.epochs;
  schedule.kind = nn::LrScheduleKind::Cosine;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    Generator order_gen(o.seed, kProbeOrderStream + static_cast<uint64_t>(epoch));
    const std::vector<int64_t> order = randperm(N, order_gen).to_vector<int64_t>();
    const double lr = schedule.at(epoch, 0, 1);
    for (int64_t start = 0; start < N; start += o.batch_size) {
      const int64_t n = std::min(o.batch_size, N - start);
      std::vector<int64_t> index(order.begin() + start, order.begin() + start + n), y(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = labels[static_cast<size_t>(index[static_cast<size_t>(i)])];
      const Tensor rows = index_select(x_train, Tensor::from_vector(index, {n}).to(device));  // (n, C)
      fc.zero_grad();
      cross_entropy(fc(rows), Tensor::from_vector(y, {n}).to(device)).backward();  // the batch's mean loss
      sgd.step(lr);
    }
  }
  NoGradGuard no_grad;
  return topk_counts(fc(x_test), test_labels.to(device)).top1();
}

PartProbeResult probe_parts(const PartProbeConfig& c) {
  ENGINE_CHECK(c.stage == 3 || c.stage == 4, "probe: --stage is layer3 or layer4, found layer{}", c.stage);
  ENGINE_CHECK(c.min_part_cells >= 0 && std::isfinite(c.min_part_cells),
               "probe: --min-part-cells must be >= 0 (a part's area in cells of the stage's grid), found {}",
               c.min_part_cells);
  ENGINE_CHECK(c.batch_size >= 1, "probe: -b must be at least 1, found {}", c.batch_size);
  for (const char* split : {"train", "val"})
    ENGINE_CHECK(fs::is_directory(fs::path(c.data) / split),
                 "probe: {} has no {}/ folder; the probe trains on train/ and reports top-1 on val/ of a dataset root",
                 c.data, split);
  // Everything the files can refuse is checked before the first forward: the classes of both
  // splits, the table, and that every image has its mask.
  const auto train_set = std::make_shared<const data::ImageFolder>((fs::path(c.data) / "train").string());
  const auto val_set = std::make_shared<const data::ImageFolder>((fs::path(c.data) / "val").string());
  check_same_classes(*train_set, *val_set, c.data);
  const bool want_parts = c.level != ProbeLevel::Object;
  std::optional<data::PartTable> table;
  if (want_parts) {
    table = data::PartTable::read(data::part_table_path(c.data));
    check_masks_exist(c.data, "train", *train_set);
    check_masks_exist(c.data, "val", *val_set);
  }

  const Backbone backbone = load_backbone(c.backbone, c.device);
  PartProbeResult result;
  result.backbone = backbone.description;
  result.image_size = evaluation_image_size(c.image_size, backbone);
  result.high_pass = evaluation_high_pass(c.high_pass, backbone);
  result.grid = backbone.net->stage_map_side(result.image_size, c.stage);
  result.stride = backbone.net->stage_stride(c.stage);
  result.channels = backbone.net->stage_channels(c.stage);
  ENGINE_CHECK(result.grid >= 1, "probe: layer{} of {} at {} px has no cell", c.stage, backbone.description,
               result.image_size);
  log_info("probe: {}, layer{} ({} channels, {}x{} cells) at {} px{}; levels: {}", backbone.description, c.stage,
           result.channels, result.grid, result.grid, result.image_size, result.high_pass ? ", high-passed inputs" : "",
           c.level == ProbeLevel::Both ? "object and part" : (want_parts ? "part" : "object"));
  const SplitExtractor extractor(*backbone.net, c, table ? &*table : nullptr, result.image_size, result.high_pass);
  const ProbeFeatures train = extractor.extract("train", train_set);
  const ProbeFeatures val = extractor.extract("val", val_set);
  result.tiny_parts = train.tiny_parts + val.tiny_parts;
  if (c.level != ProbeLevel::Part)
    result.object = probe_level(train.object, train.object_labels, val.object, val.object_labels,
                                static_cast<int64_t>(train.classes.size()), c, "object");
  if (want_parts)
    result.part = probe_level(train.part, train.part_labels, val.part, val.part_labels, table->size(), c, "part");
  return result;
}

}  // namespace engine::ssl
