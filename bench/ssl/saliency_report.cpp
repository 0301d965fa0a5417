// saliency_report.cpp - how well each saliency source finds the object, on the synthetic dataset
// whose true foreground is known (data/synth.h writes a mask per image).
//
//   saliency_report DATA --checkpoint CKPT [--split val] [--size 64] [--n 200] [--pretrained FILE]
//                        [--device cpu] [--random-draws 256] [--init-seed S]
//
// For n images of the split, spread evenly over it (so every class is seen): the evaluation view
// (Resize(size * 256 / 224) of the shorter side, CenterCrop(size), normalised, data/augment.h's
// eval_transform) and the true foreground mask put through the same resize (nearest neighbour)
// and crop. Each source's map (the channel sum of the final feature map, ssl/masking/saliency.h) gives the
// predicted foreground cells by the rule of METHOD.md 4.3; cell (r, c) covers the view's pixels
// [cell_start(r), cell_start(r + 1)) x [cell_start(c), cell_start(c + 1)) as the masking op does.
// Per image, with F the true-foreground pixels and P the pixels of the predicted cells:
//   |FG|/G^2    the predicted foreground ratio
//   precision   |F n P| / |P|, the share of the predicted cells' pixels that are object
//   recall      |F n P| / |F|, the share of the object inside the predicted cells
//   rnd prec, rnd rec   the same for a random split with the same number of cells, averaged over
//               --random-draws uniform draws: what the counts alone give, without any localisation
//   AUC         the chance that a cell which is mostly object (>= half its pixels) has a higher
//               map value than a cell which is mostly background (ties count half); 0.5 is chance.
//               It judges the map's ordering, so it is the same for both rules.
// and the base rate |F| / pixels. The table averages over images (recall over images whose view
// holds some object, AUC over images with cells of both kinds).
//
// Sources:
//   momentum     the checkpoint's key encoder f_k, what `--saliency momentum` uses
//   query        the checkpoint's query encoder f_q: what f_k drifts towards at rate 1 - m per step
//   random init  a fresh MoCo encoder from --init-seed (default: the checkpoint's seed, so it is the
//                very network the run started from)
//   pretrained   --pretrained FILE through load_localizer (eval mode), as `pretrained:FILE`
// Modes: "train" is BatchNorm on batch statistics, as the trainer runs f_k for the maps (batches of
// the run's batch size, its --bn-groups ghost groups, images in a fixed random order so a group mixes
// classes); "eval" uses the running statistics. Under a checkpoint of strategy hp the encoders see
// the high-passed view (METHOD.md 2.9) and the localizer the RGB view, as in training.
// Rules: "threshold" is METHOD.md 4.3's rule (the default), "row-sorted" the published code's O1.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/codec.h"
#include "data/image_folder.h"
#include "data/transforms.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/openmp_wait.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "ops/index_select.h"
#include "ops/saliency_mask_plan.h"
#include "ssl/run/checkpoint.h"
#include "ssl/masking/masking.h"
#include "ssl/methods/moco.h"
#include "ssl/masking/saliency.h"

using namespace engine;
namespace fs = std::filesystem;

namespace {

struct ReportArgs {
  std::string data, checkpoint, pretrained, split = "val", device = "cpu";
  int size = 64;
  int64_t n = 200;
  int random_draws = 256;
  int64_t init_seed = -1;  // -1: the checkpoint's seed
};

// PIL's NEAREST resize of a one-channel mask: output pixel x takes input pixel floor((x + 0.5) * in / out).
data::Image resize_nearest(const data::Image& in, int out_width, int out_height) {
  data::Image out(out_width, out_height, 1);
  for (int y = 0; y < out_height; ++y) {
    const int sy = std::min(in.height - 1, static_cast<int>((y + 0.5) * in.height / out_height));
    for (int x = 0; x < out_width; ++x) {
      const int sx = std::min(in.width - 1, static_cast<int>((x + 0.5) * in.width / out_width));
      out.at(x, y) = in.at(sx, sy, 0);
    }
  }
  return out;
}

// One evaluation image: its true-foreground pixel count per grid cell.
struct TruthCells {
  std::vector<int64_t> object, pixels;  // G * G: object pixels and all pixels of each cell
  int64_t object_total = 0, pixel_total = 0;
};

struct EvalSet {
  Tensor views;                    // (n, 3, S, S) normalised
  std::vector<data::Image> masks;  // S x S, 1 channel, 255 = object
};

EvalSet load_eval_set(const ReportArgs& a) {
  const std::string root = data::resolve_split(a.data, a.split);
  const data::ImageFolder folder(root);
  const fs::path mask_root = fs::path(a.data) / "masks" / a.split;
  ENGINE_CHECK(fs::is_directory(mask_root),
               "{}: no foreground masks; DATA must be a `moco synth` output (it writes masks/<split>/)",
               mask_root.string());
  const int64_t n = std::min<int64_t>(a.n, folder.size());
  const data::AugmentConfig eval = data::eval_transform(a.size);
  EvalSet set;
  set.views = Tensor::empty({n, 3, a.size, a.size});
  for (int64_t i = 0; i < n; ++i) {
    const data::Sample& sample = folder[i * folder.size() / n];  // evenly spread: every class
    const fs::path relative = fs::relative(sample.path, root);
    const fs::path mask_path = mask_root / relative.parent_path() / (relative.stem().string() + "_fg.png");
    const data::Image image = data::read_image(sample.path);
    const data::Image mask = data::read_image(mask_path.string());  // gray, replicated to RGB
    ENGINE_CHECK(mask.width == image.width && mask.height == image.height,
                 "{}: the mask is {}x{} but its image {} is {}x{}", mask_path.string(), mask.width, mask.height,
                 sample.path, image.width, image.height);
    const data::Image resized = data::resize_shorter_side(image, eval.resize_size);
    const data::CropBox box = data::center_crop_box(resized.width, resized.height, a.size);
    data::to_normalized_chw(data::crop(resized, box), eval.norm, set.views.data<float>() + i * 3 * a.size * a.size);
    set.masks.push_back(data::crop(resize_nearest(mask, resized.width, resized.height), box));
  }
  return set;
}

std::vector<TruthCells> truth_cells(const EvalSet& set, int64_t grid) {
  std::vector<TruthCells> out;
  for (const data::Image& mask : set.masks) {
    TruthCells t;
    t.object.assign(static_cast<size_t>(grid * grid), 0);
    t.pixels.assign(static_cast<size_t>(grid * grid), 0);
    for (int y = 0; y < mask.height; ++y) {
      for (int x = 0; x < mask.width; ++x) {
        const int64_t cell = cell_of(y, mask.height, grid) * grid + cell_of(x, mask.width, grid);
        const bool object = mask.at(x, y) >= 128;
        t.object[static_cast<size_t>(cell)] += object;
        t.pixels[static_cast<size_t>(cell)] += 1;
        t.object_total += object;
        t.pixel_total += 1;
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

enum class BnMode { Train, Eval };

// The saliency maps (n, G, G) of `inputs` on the host. Train mode runs batches of `batch` images
// (a multiple of the ghost groups) in the order `order`, the last one topped up from the start.
std::vector<float> saliency_of(nn::ResNet& net, const Tensor& inputs, BnMode mode, int64_t batch,
                               const std::vector<int64_t>& order, Device device) {
  NoGradGuard no_grad;
  const int64_t n = inputs.size(0);
  net.train(mode == BnMode::Train);
  std::vector<float> maps;
  if (mode == BnMode::Eval) {
    for (int64_t start = 0; start < n; start += batch) {
      const Tensor part = inputs.slice(0, start, std::min(n, start + batch)).contiguous().to(device);
      const std::vector<float> m = ssl::saliency_maps(net.feature_map(part)).to_vector<float>();
      maps.insert(maps.end(), m.begin(), m.end());
    }
    return maps;
  }
  std::vector<float> by_order;
  for (int64_t start = 0; start < n; start += batch) {
    std::vector<int64_t> rows;
    for (int64_t j = 0; j < batch; ++j) rows.push_back(order[static_cast<size_t>((start + j) % n)]);
    const Tensor part = index_select(inputs, Tensor::from_vector(rows, {batch})).to(device);
    const std::vector<float> m = ssl::saliency_maps(net.feature_map(part)).to_vector<float>();
    const int64_t kept = std::min(batch, n - start);  // the top-up images are dropped
    by_order.insert(by_order.end(), m.begin(), m.begin() + kept * (static_cast<int64_t>(m.size()) / batch));
  }
  const int64_t cells = static_cast<int64_t>(by_order.size()) / n;
  maps.resize(by_order.size());
  for (int64_t i = 0; i < n; ++i)
    std::copy_n(by_order.begin() + i * cells, cells, maps.begin() + order[static_cast<size_t>(i)] * cells);
  return maps;
}

struct Scores {
  double ratio = 0, precision = 0, recall = 0, random_precision = 0, random_recall = 0, auc = 0;
  int64_t images = 0, recall_images = 0, auc_images = 0;
};

// Precision and recall of one set of predicted cells.
void score_cells(const TruthCells& t, const std::vector<uint8_t>& predicted, double& precision, double& recall) {
  int64_t hit = 0, area = 0;
  for (size_t c = 0; c < predicted.size(); ++c) {
    if (!predicted[c]) continue;
    hit += t.object[c];
    area += t.pixels[c];
  }
  precision = area > 0 ? static_cast<double>(hit) / static_cast<double>(area) : 0.0;
  recall = t.object_total > 0 ? static_cast<double>(hit) / static_cast<double>(t.object_total) : 0.0;
}

// Mann-Whitney AUC of the map between mostly-object and mostly-background cells; -1 when one kind is missing.
double cell_auc(const TruthCells& t, const float* map) {
  std::vector<float> object, background;
  for (size_t c = 0; c < t.pixels.size(); ++c) (2 * t.object[c] >= t.pixels[c] ? object : background).push_back(map[c]);
  if (object.empty() || background.empty()) return -1;
  double wins = 0;
  for (float o : object)
    for (float b : background) wins += o > b ? 1.0 : (o == b ? 0.5 : 0.0);
  return wins / static_cast<double>(object.size() * background.size());
}

// The per-image counts of a rule's cells, for the random split of the same sizes.
std::vector<int64_t> foreground_counts(const std::vector<float>& maps, int64_t n, int64_t grid,
                                       ForegroundRule rule) {
  std::vector<int64_t> counts;
  for (int64_t i = 0; i < n; ++i)
    counts.push_back(ssl::foreground_cells(maps.data() + i * grid * grid, grid, rule).count);
  return counts;
}

// The random split: `counts[i]` cells of image i drawn uniformly (the engine's shuffle), precision
// and recall averaged over draws.
void random_split_scores(const std::vector<TruthCells>& truth, const std::vector<int64_t>& counts, int draws,
                         uint64_t seed, std::vector<double>& precision, std::vector<double>& recall) {
  Generator gen(seed);
  precision.assign(truth.size(), 0.0);
  recall.assign(truth.size(), 0.0);
  for (size_t i = 0; i < truth.size(); ++i) {
    const size_t cells = truth[i].pixels.size();
    std::vector<size_t> index(cells);
    for (size_t c = 0; c < cells; ++c) index[c] = c;
    for (int d = 0; d < draws; ++d) {
      shuffle(index, gen);
      std::vector<uint8_t> predicted(cells, 0);
      for (int64_t k = 0; k < counts[i]; ++k) predicted[index[static_cast<size_t>(k)]] = 1;
      double p = 0, r = 0;
      score_cells(truth[i], predicted, p, r);
      precision[i] += p / draws;
      recall[i] += r / draws;
    }
  }
}

Scores score_maps(const std::vector<TruthCells>& truth, const std::vector<float>& maps, int64_t grid,
                  ForegroundRule rule, int draws) {
  const int64_t n = static_cast<int64_t>(truth.size());
  std::vector<ssl::ForegroundCells> foreground;
  std::vector<int64_t> counts;
  for (int64_t i = 0; i < n; ++i) {
    foreground.push_back(ssl::foreground_cells(maps.data() + i * grid * grid, grid, rule));
    counts.push_back(foreground.back().count);
  }
  std::vector<double> random_precision, random_recall;
  random_split_scores(truth, counts, draws, 17, random_precision, random_recall);
  Scores s;
  for (int64_t i = 0; i < n; ++i) {
    const float* map = maps.data() + i * grid * grid;
    const TruthCells& t = truth[static_cast<size_t>(i)];
    const ssl::ForegroundCells& fg = foreground[static_cast<size_t>(i)];
    double p = 0, r = 0;
    score_cells(t, fg.foreground, p, r);
    s.ratio += fg.ratio;
    s.precision += p;
    s.random_precision += random_precision[static_cast<size_t>(i)];
    ++s.images;
    if (t.object_total > 0) {
      s.recall += r;
      s.random_recall += random_recall[static_cast<size_t>(i)];
      ++s.recall_images;
    }
    if (const double auc = cell_auc(t, map); auc >= 0) {
      s.auc += auc;
      ++s.auc_images;
    }
  }
  const double images = static_cast<double>(s.images),
               with_object = static_cast<double>(std::max<int64_t>(1, s.recall_images));
  s.ratio /= images;
  s.precision /= images;
  s.random_precision /= images;
  s.recall /= with_object;
  s.random_recall /= with_object;
  s.auc /= static_cast<double>(std::max<int64_t>(1, s.auc_images));
  return s;
}

void print_header() {
  fmt::print("{:<24} {:<5} {:<10} {:>8} {:>9} {:>7} {:>9} {:>8} {:>6}\n", "source", "bn", "rule", "|FG|/G^2",
             "precision", "recall", "rnd prec", "rnd rec", "AUC");
}

void print_row(const std::string& source, const std::string& mode, const std::string& rule, const Scores& s) {
  fmt::print("{:<24} {:<5} {:<10} {:>8.3f} {:>9.3f} {:>7.3f} {:>9.3f} {:>8.3f} {:>6.3f}\n", source, mode, rule, s.ratio,
             s.precision, s.recall, s.random_precision, s.random_recall, s.auc);
}

void run_report(const ReportArgs& a) {
  const Device device = Device::parse(a.device);
  const ssl::PretrainedRun run = ssl::load_pretrained(a.checkpoint, device);
  auto* moco = dynamic_cast<ssl::MoCo*>(run.method.get());
  ENGINE_CHECK(moco, "{}: a {} checkpoint; the report compares MoCo's key encoder with a fresh one, so give a "
               "--method mocov2 checkpoint", a.checkpoint, ssl::method_name(run.method->method()));
  const ssl::MocoConfig& config = moco->config();
  const int64_t step = std::stoll(run.metadata.at("step"));
  ENGINE_CHECK(run.batch_size % config.bn_groups == 0, "{}: batch {} does not split into {} BatchNorm groups",
               a.checkpoint, run.batch_size, config.bn_groups);
  ssl::MoCo& trained = *moco;
  const uint64_t init_seed = a.init_seed >= 0 ? static_cast<uint64_t>(a.init_seed) : run.seed;
  ssl::MoCo fresh(config, init_seed, device);

  const EvalSet set = load_eval_set(a);
  const int64_t n = set.views.size(0);
  const int64_t grid = trained.encoder_k().feature_map_side(a.size);
  const std::vector<TruthCells> truth = truth_cells(set, grid);

  // The encoders' input: high-passed under hp (METHOD.md 2.9), else the view itself.
  ssl::MaskingConfig input_config;
  input_config.strategy = run.strategy;
  input_config.saliency.kind = ssl::SaliencySourceKind::None;
  const Tensor inputs = ssl::SaliencyGuidedMasking(input_config, Device::cpu()).encoder_input(set.views);

  Generator order_gen(init_seed, 0x5A4C);  // a fixed order for the train-mode batches
  const std::vector<int64_t> order = randperm(n, order_gen).to_vector<int64_t>();
  double base_rate = 0;
  for (const TruthCells& t : truth)
    base_rate += static_cast<double>(t.object_total) / static_cast<double>(t.pixel_total);
  base_rate /= static_cast<double>(n);

  fmt::print("saliency report: {} images of {}/{} at {} px (eval resize {} + center crop), grid {}x{} ({} px cells)\n",
             n, a.data, a.split, a.size, data::eval_transform(a.size).resize_size, grid, grid, a.size / grid);
  fmt::print(
      "checkpoint {}: step {}, {}{}{}, batch {} in {} BN groups, strategy {}, seed {}; random init from seed {}\n",
      a.checkpoint, step, config.arch, config.small_stem ? " small-stem" : "", config.mlp ? " mlp" : "",
      run.batch_size, config.bn_groups, ssl::mask_strategy_name(run.strategy), run.seed, init_seed);
  fmt::print("true-foreground share of the views (base rate): {:.3f}; random splits: {} draws per image\n\n", base_rate,
             a.random_draws);
  print_header();

  const std::vector<std::pair<ForegroundRule, const char*>> rules = {
      {ForegroundRule::Threshold, "threshold"}, {ForegroundRule::RowSortedQuirk, "row-sorted"}};
  auto report = [&](const std::string& source, const std::string& mode, const std::vector<float>& maps) {
    for (const auto& [rule, rule_name] : rules)
      print_row(source, mode, rule_name, score_maps(truth, maps, grid, rule, a.random_draws));
  };
  std::vector<float> momentum_train;
  struct Source {
    std::string name;
    nn::ResNet* net;
  };
  const std::vector<Source> sources = {{fmt::format("momentum f_k (step {})", step), &trained.encoder_k()},
                                       {fmt::format("query f_q (step {})", step), &trained.encoder_q()},
                                       {"random init", &fresh.encoder_k()}};
  for (const Source& s : sources) {
    // Eval first: a train-mode forward updates the running statistics.
    report(s.name, "eval", saliency_of(*s.net, inputs, BnMode::Eval, run.batch_size, order, device));
    std::vector<float> maps = saliency_of(*s.net, inputs, BnMode::Train, run.batch_size, order, device);
    report(s.name, "train", maps);
    if (momentum_train.empty()) momentum_train = std::move(maps);
  }
  if (!a.pretrained.empty()) {
    const std::shared_ptr<nn::ResNet> localizer = ssl::load_localizer(a.pretrained, device);
    ENGINE_CHECK(localizer->feature_map_side(a.size) == grid,
                 "the localizer's grid at {} px is {}, the checkpoint's {}: the rows would not compare", a.size,
                 localizer->feature_map_side(a.size), grid);
    report("pretrained", "eval", saliency_of(*localizer, set.views, BnMode::Eval, run.batch_size, order, device));
  }

  // The random split with the counts the trainer's source (momentum, train mode, threshold) picked.
  const std::vector<int64_t> counts = foreground_counts(momentum_train, n, grid, ForegroundRule::Threshold);
  std::vector<double> precision, recall;
  random_split_scores(truth, counts, a.random_draws, 17, precision, recall);
  Scores r;
  for (size_t i = 0; i < truth.size(); ++i) {
    r.ratio += static_cast<double>(counts[i]) / static_cast<double>(grid * grid * n);
    r.precision += precision[i] / static_cast<double>(n);
    if (truth[i].object_total > 0) {
      r.recall += recall[i];
      ++r.recall_images;
    }
  }
  r.recall /= static_cast<double>(std::max<int64_t>(1, r.recall_images));
  r.random_precision = r.precision;
  r.random_recall = r.recall;
  r.auc = 0.5;
  print_row("random split", "-", "f_k counts", r);
}

}  // namespace

int main(int argc, char** argv) {
  use_passive_openmp_wait(argv);
  ReportArgs a;
  CLI::App app{"saliency_report: how well each saliency source finds the synthetic dataset's true foreground"};
  app.add_option("DATA", a.data, "a `moco synth` output (with masks/)")->required();
  app.add_option("--checkpoint", a.checkpoint, "a `moco pretrain` checkpoint")->required();
  app.add_option("--split", a.split, "train or val")->capture_default_str();
  app.add_option("--size", a.size, "view side in pixels")->capture_default_str()->check(CLI::Range(16, 4096));
  app.add_option("--n", a.n, "images, spread evenly over the split")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--pretrained", a.pretrained,
                 "a localizer for the pretrained source (torchvision names or a checkpoint)");
  app.add_option("--device", a.device, "cpu or cuda[:i]")->capture_default_str();
  app.add_option("--random-draws", a.random_draws, "random splits per image")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--init-seed", a.init_seed, "seed of the random-init encoder (default: the checkpoint's)");
  try {
    app.parse(argc, argv);
    run_report(a);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
