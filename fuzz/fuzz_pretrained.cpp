// fuzz_pretrained.cpp - loading an encoder from a file a user downloaded: a `moco pretrain`
// checkpoint (load_pretrained: metadata, model flags, state-dict matching) and a ResNet state
// dict with torchvision's names (load_resnet_file, what lincls/knn --pretrained read). Damaged
// files, metadata that lies about the model, and tensors of the wrong shape or name are refused,
// and nothing is allocated beyond a small multiple of the file's size (libFuzzer's -rss_limit_mb).
#include "fuzz/fuzz_common.h"
#include "ssl/run/resnet_file.h"
#include "ssl/run/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = engine::fuzz::as_file(data, size, "pretrained.safetensors");
  engine::fuzz::expect_success_or_refusal([&] { engine::ssl::load_pretrained(path, engine::Device::cpu()); });
  engine::fuzz::expect_success_or_refusal(
      [&] { engine::ssl::load_resnet_file(path, engine::Device::cpu(), "--pretrained "); });
  return 0;
}
