// mask_preview.cpp - see mask_preview.h.
#include "tools/mask_preview.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "data/augment.h"
#include "engine/check.h"
#include "engine/serialize.h"
#include "layers/layers.h"
#include "ssl/run/checkpoint.h"
#include "ssl/methods/moco.h"
#include "tools/cli_common.h"

namespace moco_cli {

namespace {

namespace ssl = engine::ssl;

// A `moco pretrain` checkpoint's saliency encoder (MoCo's encoder_k, SimCLR's encoder; training
// mode) on `device`; `description` receives what it is, for messages.
std::shared_ptr<engine::nn::ResNet> load_checkpoint_saliency_encoder(const std::string& path, engine::Device device,
                                                                     std::string& description) {
  ENGINE_CHECK(std::filesystem::is_regular_file(path),
               "--checkpoint {}: no such file; give a `moco pretrain` checkpoint such as "
               "SAVE_DIR/checkpoints/last.safetensors, or leave --checkpoint out for a freshly initialised key "
               "encoder",
               path);
  const ssl::PretrainedRun loaded = ssl::load_pretrained(path, device);
  engine::nn::ResNet& encoder = loaded.method->saliency_encoder();
  auto position = [&](const char* key) {
    auto it = loaded.metadata.find(key);
    return it == loaded.metadata.end() ? std::string("?") : it->second;
  };
  const ssl::Method method = loaded.method->method();
  description = fmt::format("{} of {} ({}{}, epoch {}, step {}, trained with --strategy {})",
                            method == ssl::Method::SimClr       ? "the SimCLR encoder"
                            : method == ssl::Method::Supervised ? "the supervised classifier"
                                                                : "encoder_k",
                            path, encoder.config().arch,
                            encoder.config().stem == engine::nn::ResNetStem::SmallImage ? " small stem" : "",
                            position("epoch"), position("step"), ssl::mask_strategy_name(loaded.strategy));
  // One BatchNorm group whatever the run used: the preview's batch need not split into its groups.
  engine::nn::set_ghost_batchnorm(encoder, 1, engine::GhostRunningStats::FirstGroup);
  // The method stays alive as long as its encoder is used.
  return std::shared_ptr<engine::nn::ResNet>(loaded.method, &encoder);
}

}  // namespace

MaskPreview make_mask_preview(const MaskPreviewOptions& o) {
  namespace data = engine::data;
  const engine::Device device = engine::resolve_device(o.device);
  ssl::MaskingConfig mc;
  mc.strategy = ssl::parse_mask_strategy(o.strategy);
  ENGINE_CHECK(mc.strategy != ssl::MaskStrategy::None,
               "--strategy none: there is no masking to show; choose hp, blur or mean");
  mc.saliency = ssl::parse_saliency_source(o.saliency);
  mc.num_nonsem = o.num_nonsem;
  mc.reference_quirks = o.reference_quirks;
  mc.seed = o.seed;

  // The folder first: its errors come before any model is built.
  MaskPreview out;
  out.dataset = std::make_shared<data::ImageFolder>(data::resolve_split(o.data, o.split));
  std::shared_ptr<engine::nn::ResNet> key_encoder;
  if (!o.checkpoint.empty()) {
    key_encoder = load_checkpoint_saliency_encoder(o.checkpoint, device, out.key_encoder);
  } else {
    ssl::EncoderShape shape;
    shape.arch = o.arch;
    shape.small_stem = o.small_stem;
    key_encoder = ssl::make_encoder(shape, o.seed);
    key_encoder->to(device);
    out.key_encoder = fmt::format("a freshly initialised {}{} (seed {}; --checkpoint gives a trained one)", o.arch,
                                  o.small_stem ? " small stem" : "", o.seed);
  }
  const ssl::SaliencyGuidedMasking masking(mc, device);

  data::LoaderOptions lo;
  lo.batch_size = o.n;
  lo.views = 2;
  lo.workers = o.workers;
  lo.seed = o.seed;
  lo.shuffle = o.shuffle;
  lo.fast_decode = o.fast_decode;
  lo.device = device;
  data::Loader loader(out.dataset, data::mocov2_augment(o.size), lo);
  loader.start_epoch(o.epoch);
  out.batch = *loader.next();
  // A CPU batch aliases the loader's slot; its own copies outlive the loader.
  for (engine::Tensor& view : out.batch.views) view = view.clone();
  out.batch.labels = out.batch.labels.clone();

  const engine::Tensor& q = out.batch.views[0];
  const engine::Tensor& k = out.batch.views[1];
  out.masked = masking.mask(q, k, masking.encoder_input(q), masking.encoder_input(k), engine::Tensor(), *key_encoder,
                            /*step=*/0);
  return out;
}

std::vector<CLI::Option*> add_masking_flags(CLI::App& cmd, MaskPreviewOptions& o) {
  return {
      cmd.add_option("--strategy", o.strategy,
                     "the masking: hp (high-passed inputs, noise fill), blur (fill from the strongly blurred view) or "
                     "mean (the view's channel means)")
          ->capture_default_str()
          ->check(CLI::IsMember({"none", "hp", "blur", "mean"})),
      cmd.add_option("--saliency", o.saliency,
                     "where the saliency maps come from: momentum or online (the checkpoint's own saliency "
                     "encoder), pretrained:FILE (a frozen torchvision-named ResNet safetensors, or a `moco pretrain` "
                     "checkpoint's online encoder), or none (every cell foreground)")
          ->capture_default_str(),
      cmd.add_option("--num-nonsem", o.num_nonsem, "hard negatives per image (masked copies of the key view)")
          ->capture_default_str()
          ->check(CLI::Range(0, 16)),
      cmd.add_flag("--reference-quirks", o.reference_quirks,
                   "the published code's foreground rule and masking oddities (docs/METHOD.md section 11)"),
      cmd.add_option("--checkpoint", o.checkpoint,
                     "a `moco pretrain` checkpoint whose saliency encoder (MoCo's encoder_k, SimCLR's encoder) makes "
                     "the maps (its own architecture; without it a freshly initialised --arch)"),
      cmd.add_option("-a,--arch", o.arch, "the key encoder's architecture when no --checkpoint is given")
          ->capture_default_str()
          ->check(CLI::IsMember(engine::nn::resnet_arch_names())),
      cmd.add_flag("--small-stem", o.small_stem, "3x3 stride-1 stem without max-pool (no --checkpoint)"),
      cmd.add_option("--device", o.device, "where the encoders and the masking run: auto, cpu, cuda or cuda:N")
          ->capture_default_str(),
  };
}

}  // namespace moco_cli
