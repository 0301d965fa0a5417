// cmd_inspect.cpp - `moco inspect`: runs a ResNet on one input and records what every module
// produced (and, with --backward, the gradient of every parameter), so that a student can look
// inside and a performance engineer can diff the engine against PyTorch layer by layer.
//
//   moco inspect --arch resnet50 [--weights W.safetensors] (--input X.safetensors | --input-shape 2,3,224,224)
//                [--dump OUT.safetensors] [--train] [--backward] [--seed S] [--device cpu|cuda]
//
// Output keys: the module path (conv1, bn1, layer1.0.conv1, ..., avgpool, fc); a module that runs
// more than once in one forward (a block's shared ReLU) adds "#2", "#3" for the later calls;
// with --backward "grad.<parameter name>" for the gradient of sum(final output).
#include <fmt/format.h>

#include <map>
#include <sstream>

#include "engine/autograd.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "layers/resnet.h"
#include "ops/reduce_dim.h"
#include "ssl/run/resnet_file.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace moco_cli {

namespace {

using engine::Tensor;

struct InspectOptions {
  std::string arch = "resnet50";
  std::string weights, input, input_shape, dump, save_weights;
  std::string device = "cpu";
  int64_t num_classes = 0;  // 0: from the weights, else 1000
  bool small_stem = false, train = false, backward = false;
  uint64_t seed = 0;
};

engine::Shape parse_shape(const std::string& text) {
  engine::Shape shape;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    try {
      shape.push_back(std::stoll(part));
    } catch (const std::exception&) {
      ENGINE_THROW("--input-shape: '{}' is not a list of integers like 2,3,224,224", text);
    }
  }
  ENGINE_CHECK(shape.size() == 4 && shape[1] == 3 && shape[0] > 0 && shape[2] > 0 && shape[3] > 0,
               "--input-shape: expected N,3,H,W, found '{}'", text);
  return shape;
}

Tensor load_input(const InspectOptions& opt) {
  ENGINE_CHECK(opt.input.empty() != opt.input_shape.empty(),
               "moco inspect: give either --input FILE (a safetensors file with an `input` tensor) or "
               "--input-shape N,3,H,W (standard normal values from --seed)");
  if (!opt.input.empty()) {
    const engine::SafetensorsFile file = engine::load_safetensors(opt.input);
    const Tensor& x = file.at("input");
    ENGINE_CHECK(x.dim() == 4 && x.size(1) == 3, "{}: `input` must be (N, 3, H, W), found {}", opt.input, x.str());
    return x.to(engine::DType::f32);
  }
  Tensor x = Tensor::empty(parse_shape(opt.input_shape));
  engine::Generator gen(opt.seed, /*stream=*/0x1A9E7);
  engine::normal_(x, gen);
  return x;
}

std::shared_ptr<engine::nn::ResNet> build_model(const InspectOptions& opt) {
  engine::nn::ResNetConfig config;
  config.arch = opt.arch;
  config.stem = opt.small_stem ? engine::nn::ResNetStem::SmallImage : engine::nn::ResNetStem::ImageNet;
  config.num_classes = opt.num_classes > 0 ? opt.num_classes : 1000;
  if (opt.weights.empty()) return engine::nn::make_resnet(config, opt.seed);

  const engine::SafetensorsFile file = engine::load_safetensors(opt.weights);
  // Nothing is built that the file could not hold (its stem, its largest weights, its head).
  engine::ssl::check_resnet_fits_file(file, "", config.width, opt.weights);
  // The head's size and the stem come from the file unless the flags say otherwise.
  if (opt.num_classes == 0 && file.contains("fc.weight")) {
    const engine::Tensor& fc = file.at("fc.weight");
    const int64_t features = engine::nn::resnet_feature_dim(config);
    ENGINE_CHECK(fc.dim() == 2 && fc.size(1) == features && fc.size(0) >= 1,
                 "{}: fc.weight is {}, expected (classes, {}) for a {}", opt.weights, engine::shape_str(fc.shape()),
                 features, config.arch);
    config.num_classes = fc.size(0);
  }
  if (file.at("conv1.weight").size(-1) == 3) config.stem = engine::nn::ResNetStem::SmallImage;
  auto model = engine::nn::make_resnet(config, opt.seed);
  engine::NamedTensors state = file.tensors;
  // A backbone without its head (`moco export`) keeps the model's own fc, as torchvision's
  // load_state_dict(strict=False) would; the strict load still checks every other key.
  if (!file.contains("fc.weight") && !file.contains("fc.bias"))
    for (const auto& [name, t] : model->state_dict())
      if (name.rfind("fc.", 0) == 0) state.emplace_back(name, t.clone());
  model->load_state_dict(state, /*strict=*/true);
  return model;
}

void run_inspect(const InspectOptions& opt) {
  const engine::Device device = engine::resolve_device(opt.device);
  auto model = build_model(opt);
  model->to(device);
  model->train(opt.train);
  const Tensor x = load_input(opt).to(device);  // (N, 3, H, W)

  engine::NamedTensors records;
  std::map<std::string, int> calls;
  for (auto& [path, module] : model->named_modules()) {
    if (path.empty()) continue;
    module->output_hook = [&records, &calls, path = path](const Tensor& y) {
      const int k = ++calls[path];
      records.emplace_back(k == 1 ? path : fmt::format("{}#{}", path, k), y.detach());
    };
  }
  Tensor out;
  if (opt.backward) {
    out = (*model)(x);
    engine::sum(out).backward();
  } else {
    engine::NoGradGuard no_grad;
    out = (*model)(x);
  }
  if (opt.backward)
    for (const auto& [name, p] : model->named_parameters()) records.emplace_back("grad." + name, p.grad());

  fmt::print("{} ({} mode) on {} input {} -> output {}\n", opt.arch, opt.train ? "train" : "eval", device.str(),
             engine::shape_str(x.shape()), engine::shape_str(out.shape()));
  size_t width = 4;
  for (const auto& [name, t] : records) width = std::max(width, name.size());
  for (const auto& [name, t] : records) {
    const std::vector<double> v = t.to_vector<double>();
    double sum = 0, sq = 0;
    for (double e : v) {
      sum += e;
      sq += e * e;
    }
    fmt::print("  {:<{}} {:<22} mean {:>11.4e}  rms {:>10.4e}\n", name, width, engine::shape_str(t.shape()),
               sum / double(v.size()), std::sqrt(sq / double(v.size())));
  }
  const engine::Metadata meta = {{"arch", opt.arch},
                                 {"mode", opt.train ? "train" : "eval"},
                                 {"weights", opt.weights.empty() ? fmt::format("engine init, seed {}", opt.seed)
                                                                 : opt.weights},
                                 {"input_shape", engine::shape_str(x.shape())}};
  if (!opt.dump.empty()) {
    records.insert(records.begin(), {"input", x});
    engine::save_safetensors(opt.dump, records, meta);
    fmt::print("wrote {} tensors to {}\n", records.size(), opt.dump);
  }
  if (!opt.save_weights.empty()) {
    engine::save_safetensors(opt.save_weights, model->state_dict(), meta);
    fmt::print("wrote the model's state dict to {}\n", opt.save_weights);
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Run a ResNet on one input and record every module's output and gradient");
  auto opt = std::make_shared<InspectOptions>();
  cmd->add_option("-a,--arch", opt->arch, "resnet18, resnet34 or resnet50")
      ->capture_default_str()
      ->check(CLI::IsMember(engine::nn::resnet_arch_names()));
  cmd->add_option("--weights", opt->weights,
                  "a safetensors state dict (torchvision names; without fc.*, as `moco export` writes, the model "
                  "keeps its own fc); default: the engine's init");
  cmd->add_option("--input", opt->input, "a safetensors file whose tensor `input` is (N, 3, H, W)");
  cmd->add_option("--input-shape", opt->input_shape, "instead of --input: N,3,H,W standard normal values from --seed");
  cmd->add_option("--dump", opt->dump, "write the input, every module's output and the gradients here");
  cmd->add_option("--save-weights", opt->save_weights, "write the model's state dict here (to load it elsewhere)");
  cmd->add_option("--num-classes", opt->num_classes, "classifier size (default: from --weights, else 1000)");
  cmd->add_flag("--small-stem", opt->small_stem, "3x3 stride-1 stem without max-pool, for 32-96 pixel images");
  cmd->add_flag("--train", opt->train, "train mode: BatchNorm uses batch statistics (and updates running ones)");
  cmd->add_flag("--backward", opt->backward, "also record grad.<name>, the gradient of sum(output)");
  cmd->add_option("--seed", opt->seed, "seed of the engine's initialisation and of --input-shape")->capture_default_str();
  cmd->add_option("--device", opt->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  cmd->callback([opt] { run_inspect(*opt); });
}

}  // namespace moco_cli
