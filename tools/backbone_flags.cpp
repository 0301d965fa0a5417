// backbone_flags.cpp - see backbone_flags.h.
#include "tools/backbone_flags.h"

#include "layers/resnet.h"

namespace moco_cli {

engine::ssl::BackboneSpec BackboneFlags::spec() const {
  engine::ssl::BackboneSpec s;
  s.pretrained = pretrained;
  s.random_config.arch = arch;
  s.random_config.stem = small_stem ? engine::nn::ResNetStem::SmallImage : engine::nn::ResNetStem::ImageNet;
  s.random_config.width = width;
  s.random_seed = seed;
  return s;
}

void add_backbone_flags(CLI::App* cmd, BackboneFlags& flags) {
  cmd->add_option("--pretrained", flags.pretrained,
                  "a `moco pretrain` or `moco supervised` checkpoint (its online encoder without the head: MoCo's "
                  "encoder_q, SimCLR's encoder, the supervised network), a ResNet safetensors file with torchvision's names, or 'random': an untrained encoder of "
                  "the architecture below, the baseline")
      ->required();
  cmd->add_option("-a,--arch", flags.arch, "with --pretrained random: the encoder")
      ->capture_default_str()
      ->check(CLI::IsMember(engine::nn::resnet_arch_names()));
  cmd->add_flag("--small-stem", flags.small_stem, "with --pretrained random: the 3x3 stride-1 stem without max-pool");
  cmd->add_option("--width", flags.width, "with --pretrained random: channels of the stem and layer1")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cmd->add_option("--seed", flags.seed, "seed of the random encoder's initialisation and of every data draw")
      ->capture_default_str();
}

}  // namespace moco_cli
