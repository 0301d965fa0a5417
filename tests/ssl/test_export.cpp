// test_export.cpp - `moco export` (ssl/run/export.h): a checkpoint's query encoder under
// torchvision's exact key set (tests/fixtures/resnet_keys.txt, written by torchvision itself) with
// its values bit for bit and nothing else of the checkpoint; the pooled features of an exported
// ResNet-50 against the engine's and PyTorch's; detectron2's names by MoCo's rule; SimCLR and
// pre-seam checkpoints; refusals that say what is wrong.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/autograd.h"
#include "engine/log.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "layers/optimizer.h"
#include "layers/resnet.h"
#include "ssl/methods/moco.h"
#include "ssl/methods/simclr.h"
#include "ssl/run/checkpoint.h"
#include "ssl/run/export.h"
#include "ssl/run/resnet_file.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"
#include "tests/layers/fixture_weights.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::TempDir;

// Key, shape and dtype of one state-dict entry, as resnet_keys.txt writes them ("64x3x7x7" or
// "scalar"; "float32" or "int64").
struct KeyEntry {
  std::string name, shape, dtype;
  bool operator==(const KeyEntry&) const = default;
};

std::vector<KeyEntry> torchvision_keys(const std::string& arch) {
  std::ifstream in(testing::fixture_path("resnet_keys.txt"));
  EXPECT_TRUE(in) << "tests/fixtures/resnet_keys.txt is missing";
  std::vector<KeyEntry> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string a;
    KeyEntry e;
    fields >> a >> e.name >> e.shape >> e.dtype;
    if (a == arch) out.push_back(e);
  }
  return out;
}

KeyEntry entry_of(const std::string& name, const Tensor& t) {
  std::string shape;
  for (int64_t d : t.shape()) {
    if (!shape.empty()) shape += 'x';
    shape += std::to_string(d);
  }
  const DType dt = t.dtype();
  return {name, shape.empty() ? "scalar" : shape,
          dt == DType::f32 ? "float32" : dt == DType::i64 ? "int64" : std::string(dtype_name(dt))};
}

std::vector<KeyEntry> entries_of(const NamedTensors& tensors) {
  std::vector<KeyEntry> out;
  for (const auto& [name, t] : tensors) out.push_back(entry_of(name, t));
  return out;
}

// The same dtype, shape and bytes.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  if (a.dtype() == DType::i64) return a.to_vector<int64_t>() == b.to_vector<int64_t>();
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  return std::equal(x.begin(), x.end(), y.begin(), y.end(),
                    [](float u, float v) { return std::memcmp(&u, &v, sizeof u) == 0; });
}

// Collects the warnings logged while it lives.
class WarningCapture {
 public:
  WarningCapture() {
    previous_ = set_log_sink([this](LogLevel level, std::string_view message) {
      if (level == LogLevel::Warning) warnings.emplace_back(message);
    });
  }
  ~WarningCapture() { set_log_sink(previous_); }
  std::vector<std::string> warnings;

 private:
  LogSink previous_;
};

// Train-mode forwards of noise move `net`'s running statistics and counters, so that a checkpoint's
// query encoder differs from its key encoder (equal at construction) in every BatchNorm.
void move_running_statistics(nn::ResNet& net, int64_t side) {
  NoGradGuard no_grad;
  Generator gen(5);
  for (int i = 0; i < 2; ++i) {
    Tensor x = Tensor::empty({2, 3, side, side});
    normal_(x, gen);
    net.features(x);
  }
}

// A MoCo v2 checkpoint of a ResNet-18 of torchvision's width (64) and stem, written by the real
// save path; its encoder_q has moved away from encoder_k.
std::string mocov2_checkpoint(const fs::path& dir) {
  MocoConfig mc;
  mc.arch = "resnet18";
  mc.dim = 8;
  mc.queue_size = 16;
  mc.mlp = true;
  MoCo moco(mc, 11, Device::cpu());
  move_running_statistics(moco.encoder_q(), 32);
  nn::Sgd sgd(moco.encoder_q(), {});
  const std::string path = (dir / "mocov2.safetensors").string();
  save_checkpoint(path, moco, sgd, {2, 0, 7}, {4, 11, "{}", MaskStrategy::None});
  return path;
}

TEST(Export, AMocoCheckpointGivesTorchvisionsKeysWithTheQueryEncodersValues) {
  TempDir dir("export_mocov2");
  const std::string ckpt = mocov2_checkpoint(dir.path());
  WarningCapture capture;
  const ExportedBackbone e = export_backbone(ckpt, ExportFormat::Torchvision);
  EXPECT_TRUE(capture.warnings.empty()) << "torchvision's own resnet18 needs no warning: " << capture.warnings[0];

  // torchvision's resnet18 state dict, in its order, without the classifier.
  std::vector<KeyEntry> expected;
  for (const KeyEntry& k : torchvision_keys("resnet18"))
    if (!k.name.starts_with("fc.")) expected.push_back(k);
  ASSERT_EQ(expected.size(), 120u);  // 122 keys of resnet18 less fc.weight and fc.bias
  EXPECT_EQ(entries_of(e.tensors), expected);

  // Bit for bit encoder_q's, never encoder_k's (their running statistics differ), nothing else.
  const SafetensorsFile file = load_safetensors(ckpt);
  size_t differs_from_key_encoder = 0;
  for (const auto& [name, t] : e.tensors) {
    EXPECT_TRUE(same_bits(t, file.at("encoder_q." + name))) << name;
    differs_from_key_encoder += !same_bits(t, file.at("encoder_k." + name));
  }
  EXPECT_EQ(differs_from_key_encoder, 20u * 3) << "every BatchNorm's mean, variance and counter is encoder_q's";
  for (const auto& [name, t] : e.tensors)
    EXPECT_FALSE(name.starts_with("encoder") || name.starts_with("queue") || name.starts_with("fc.") ||
                 name.starts_with("optimizer"))
        << name;

  EXPECT_EQ(e.arch, "resnet18");
  EXPECT_EQ(e.metadata.at("export_format"), "torchvision");
  EXPECT_EQ(e.metadata.at("method"), "mocov2");
  EXPECT_EQ(e.metadata.at("epoch"), "2");
  EXPECT_EQ(e.metadata.at("step"), "7");
  EXPECT_EQ(e.metadata.at("width"), "64");
  EXPECT_EQ(e.metadata.at("small_stem"), "false");
  EXPECT_EQ(e.metadata.at("source_file"), ckpt);
  EXPECT_EQ(e.source, "encoder_q of a mocov2 checkpoint (epoch 2, step 7)");
  EXPECT_EQ(e.metadata.count("__author__"), 0u);
  EXPECT_EQ(e.metadata.count("warning"), 0u);

  // Written and read back, the file is the same.
  const std::string out = (dir.path() / "r18.safetensors").string();
  write_export(out, e);
  const SafetensorsFile written = load_safetensors(out);
  EXPECT_EQ(entries_of(written.tensors), expected);
  EXPECT_EQ(written.metadata, e.metadata);
}

// PyTorch's ResNet-50 fixture: the fixture weights (tests/layers/fixture_weights.h), saved with
// torchvision's names, exported, loaded back as the engine's --pretrained files are, and run on
// the fixture's input: the pooled features are the original model's exactly, and PyTorch's
// (float64, tools/make_resnet_fixtures.py) to f32 accuracy.
TEST(Export, AnExportedResNet50GivesTheSamePooledFeaturesAsTheOriginalAndAsPyTorch) {
  TempDir dir("export_features");
  nn::ResNetConfig config;
  config.num_classes = 10;  // the fixture's classifier; it is not exported
  auto original = nn::make_resnet(config, 1);
  original->load_state_dict(testing::fixture_state_dict(*original), true);
  original->eval();
  const std::string weights = (dir.path() / "r50_torchvision.safetensors").string();
  save_safetensors(weights, original->state_dict(), {{"arch", "resnet50"}});

  const ExportedBackbone e = export_backbone(weights, ExportFormat::Torchvision);
  EXPECT_EQ(e.source, "a ResNet with torchvision's names");
  std::vector<KeyEntry> expected;
  for (const KeyEntry& k : torchvision_keys("resnet50"))
    if (!k.name.starts_with("fc.")) expected.push_back(k);
  EXPECT_EQ(entries_of(e.tensors), expected);
  const std::string out = (dir.path() / "r50_export.safetensors").string();
  write_export(out, e);

  auto exported = load_resnet_file(out, Device::cpu(), "");
  const Tensor input = testing::fixture_tensor("input0", {2, 3, 64, 64});
  Tensor ours, theirs;
  {
    NoGradGuard no_grad;
    ours = exported->features(input);
    theirs = original->features(input);
  }
  ASSERT_EQ(ours.shape(), (Shape{2, 2048}));
  EXPECT_TRUE(testing::all_close(ours, theirs, 0, 0)) << "the same weights give the same features";

  const SafetensorsFile ref = load_safetensors(testing::fixture_path("resnet50_64px.safetensors"));
  const double sum = ref.at("eval.sum.avgpool").item(), norm = ref.at("eval.norm.avgpool").item();
  double our_sum = 0, our_sq = 0;
  for (double v : ours.to_vector<double>()) {
    our_sum += v;
    our_sq += v * v;
  }
  // The fixture test's f32 tolerance for a module's output (tests/layers/test_resnet_fixtures.cpp).
  EXPECT_NEAR(std::sqrt(our_sq), norm, 1e-4 * norm);
  EXPECT_NEAR(our_sum, sum, 1e-4 * (std::fabs(sum) + norm));
}

TEST(Export, Detectron2NamesFollowMocosConversionRule) {
  const std::vector<std::pair<std::string, std::string>> table = {
      {"conv1.weight", "stem.conv1.weight"},
      {"bn1.weight", "stem.conv1.norm.weight"},
      {"bn1.running_mean", "stem.conv1.norm.running_mean"},
      {"bn1.num_batches_tracked", "stem.conv1.norm.num_batches_tracked"},
      {"layer1.0.conv1.weight", "res2.0.conv1.weight"},
      {"layer1.0.bn1.weight", "res2.0.conv1.norm.weight"},
      {"layer1.0.downsample.0.weight", "res2.0.shortcut.weight"},
      {"layer1.0.downsample.1.bias", "res2.0.shortcut.norm.bias"},
      {"layer2.3.bn2.running_var", "res3.3.conv2.norm.running_var"},
      {"layer3.5.conv3.weight", "res4.5.conv3.weight"},
      {"layer4.0.downsample.1.running_mean", "res5.0.shortcut.norm.running_mean"},
      {"layer4.2.bn3.running_var", "res5.2.conv3.norm.running_var"},
      {"fc.weight", "stem.fc.weight"},  // MoCo's script would keep the head there; we do not export it
  };
  for (const auto& [torchvision, detectron2] : table) EXPECT_EQ(detectron2_name(torchvision), detectron2);

  // Over every key of torchvision's ResNet-50 and ResNet-18: distinct names, all under stem or
  // res2..res5, none of torchvision's words left.
  for (const std::string arch : {"resnet18", "resnet50"}) {
    std::set<std::string> names;
    for (const KeyEntry& k : torchvision_keys(arch)) {
      const std::string d = detectron2_name(k.name);
      names.insert(d);
      EXPECT_TRUE(d.starts_with("stem.") || (d.starts_with("res") && d[3] >= '2' && d[3] <= '5' && d[4] == '.'))
          << d;
      for (const char* gone : {"layer", "bn", "downsample"}) EXPECT_EQ(d.find(gone), std::string::npos) << d;
    }
    EXPECT_EQ(names.size(), torchvision_keys(arch).size()) << arch;
  }
}

TEST(Export, Detectron2ExportRenamesTheTorchvisionExportAndCarriesMocosFlags) {
  TempDir dir("export_detectron2");
  const std::string ckpt = mocov2_checkpoint(dir.path());
  const ExportedBackbone tv = export_backbone(ckpt, ExportFormat::Torchvision);
  const ExportedBackbone d2 = export_backbone(ckpt, ExportFormat::Detectron2);
  ASSERT_EQ(d2.tensors.size(), tv.tensors.size());
  for (size_t i = 0; i < tv.tensors.size(); ++i) {
    EXPECT_EQ(d2.tensors[i].first, detectron2_name(tv.tensors[i].first));
    EXPECT_TRUE(same_bits(d2.tensors[i].second, tv.tensors[i].second)) << tv.tensors[i].first;
  }
  EXPECT_EQ(d2.tensors.front().first, "stem.conv1.weight");
  EXPECT_EQ(d2.tensors.back().first, "res5.1.conv2.norm.num_batches_tracked");
  EXPECT_EQ(d2.metadata.at("__author__"), "MOCO");
  EXPECT_EQ(d2.metadata.at("matching_heuristics"), "True");
  EXPECT_EQ(d2.metadata.at("export_format"), "detectron2");
}

TEST(Export, ASimclrCheckpointExportsItsEncoderAndWarnsWhatTorchvisionNeeds) {
  TempDir dir("export_simclr");
  SimclrConfig sc;
  sc.arch = "resnet18";
  sc.small_stem = true;
  sc.width = 8;
  sc.dim = 8;
  SimCLR simclr(sc, 3, Device::cpu());
  move_running_statistics(simclr.encoder(), 16);
  nn::Sgd sgd(simclr.encoder(), {});
  const std::string ckpt = (dir.path() / "simclr.safetensors").string();
  save_checkpoint(ckpt, simclr, sgd, {1, 0, 3}, {4, 3, "{}", MaskStrategy::Hp, "sgd"});

  WarningCapture capture;
  const ExportedBackbone e = export_backbone(ckpt, ExportFormat::Torchvision);
  const SafetensorsFile file = load_safetensors(ckpt);
  size_t expected = 0;
  for (const auto& [name, t] : file.tensors) expected += name.starts_with("encoder.") && !name.starts_with("encoder.fc.");
  EXPECT_EQ(e.tensors.size(), expected);
  for (const auto& [name, t] : e.tensors) EXPECT_TRUE(same_bits(t, file.at("encoder." + name))) << name;
  EXPECT_EQ(e.metadata.at("method"), "simclr");
  EXPECT_EQ(e.source, "encoder of a simclr checkpoint (epoch 1, step 3)");

  ASSERT_EQ(capture.warnings.size(), 1u);
  const std::string& w = capture.warnings[0];
  for (const char* says : {"torchvision.models.resnet18()", "width 8", "planes 8/16/32/64",
                           "model.conv1 = torch.nn.Conv2d(3, 8, 3, 1, 1, bias=False)", "model.maxpool = torch.nn.Identity()"})
    EXPECT_NE(w.find(says), std::string::npos) << "'" << says << "' not in: " << w;
  EXPECT_NE(e.metadata.at("warning").find("resnet18"), std::string::npos);
}

// A MoCo v2 checkpoint written before the method seam (no "method" in its metadata) exports as MoCo v2.
TEST(Export, ACheckpointFromBeforeTheMethodSeamExportsAsMocoV2) {
  const std::string fixture = testing::fixture_path("checkpoints/mocov2_hp_before_method_seam.safetensors");
  WarningCapture capture;  // width 2, small stem: warned, and not what this test is about
  const ExportedBackbone e = export_backbone(fixture, ExportFormat::Detectron2);
  EXPECT_EQ(e.metadata.at("method"), "mocov2");
  EXPECT_EQ(e.tensors.size(), 120u);
  EXPECT_EQ(e.tensors[0].first, "stem.conv1.weight");
}

// Some converters drop the counters: they are written as 0, what PyTorch's BatchNorm loads then.
TEST(Export, AFileWithoutBatchCountersExportsThemAsZero) {
  TempDir dir("export_no_counters");
  nn::ResNetConfig config;
  config.arch = "resnet18";
  auto net = nn::make_resnet(config, 2);
  NamedTensors state;
  for (const auto& [name, t] : net->state_dict())
    if (name.find("num_batches_tracked") == std::string::npos) state.emplace_back(name, t);
  const std::string path = (dir.path() / "no_counters.safetensors").string();
  save_safetensors(path, state);
  const ExportedBackbone e = export_backbone(path, ExportFormat::Torchvision);
  size_t counters = 0;
  for (const auto& [name, t] : e.tensors) {
    if (name.find("num_batches_tracked") == std::string::npos) continue;
    ++counters;
    EXPECT_EQ(t.to_vector<int64_t>(), std::vector<int64_t>{0}) << name;
  }
  EXPECT_EQ(counters, 20u);
  EXPECT_NE(e.metadata.at("num_batches_tracked").find("20 counters the source lacked written as 0"),
            std::string::npos);
}

TEST(Export, RefusesWhatIsNotAResNetWithAMessage) {
  TempDir dir("export_refusals");
  const std::string missing = (dir.path() / "no_such.safetensors").string();
  EXPECT_NE(error_of([&] { export_backbone(missing, ExportFormat::Torchvision); }).find("no_such.safetensors: no such file"),
            std::string::npos);

  const std::string other = (dir.path() / "other.safetensors").string();
  save_safetensors(other, {{"x", Tensor::zeros({3})}});
  const std::string not_resnet = error_of([&] { export_backbone(other, ExportFormat::Torchvision); });
  EXPECT_NE(not_resnet.find("other.safetensors: not a ResNet state dict (no conv1.weight)"), std::string::npos)
      << not_resnet;

  // One backbone tensor short: the file and the missing key are named.
  nn::ResNetConfig config;
  config.arch = "resnet18";
  auto net = nn::make_resnet(config, 2);
  NamedTensors state;
  for (const auto& [name, t] : net->state_dict())
    if (name != "layer2.1.bn2.running_var") state.emplace_back(name, t);
  const std::string short_one = (dir.path() / "short.safetensors").string();
  save_safetensors(short_one, state);
  const std::string incomplete = error_of([&] { export_backbone(short_one, ExportFormat::Torchvision); });
  EXPECT_NE(incomplete.find("short.safetensors: the tensors do not make a complete resnet18 of width 64"),
            std::string::npos)
      << incomplete;
  EXPECT_NE(incomplete.find("missing keys (1): layer2.1.bn2.running_var"), std::string::npos) << incomplete;

  const std::string format = error_of([] { parse_export_format("onnx"); });
  EXPECT_NE(format.find("--format 'onnx' is not an export format; expected torchvision"), std::string::npos) << format;
  EXPECT_NE(format.find("detectron2"), std::string::npos) << format;
  EXPECT_EQ(parse_export_format("detectron2"), ExportFormat::Detectron2);
  EXPECT_EQ(parse_export_format("torchvision"), ExportFormat::Torchvision);
}

}  // namespace
}  // namespace engine::ssl
