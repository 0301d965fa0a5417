// resnet_file.h - a ResNet read from a safetensors file that may come from anyone: torchvision's
// names (conv1.weight, layer1.0.conv1.weight, ..., fc.*; tools/convert_torchvision_resnet.py
// converts a .pth), or a `moco pretrain` or `moco supervised` checkpoint, whose online encoder is
// under encoder_q. (MoCo v2) or encoder. (SimCLR, supervised). Used by evaluation (--pretrained), the masking's localizer
// (--saliency pretrained:FILE) and `moco inspect --weights`.
//
// Every shape is checked before a model is allocated, so a damaged or hostile file is refused with
// a message, never a crash or a huge allocation (the fuzzers feed these functions).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/device.h"
#include "engine/serialize.h"
#include "layers/resnet.h"

namespace engine::ssl {

// Eval mode (BatchNorm's running statistics, never updated) and no parameter requires grad.
void freeze(nn::Module& net);

// Reads `path` (a safetensors file); `flag` names the command-line option it came from, for messages.
SafetensorsFile read_resnet_file(const std::string& path, const std::string& flag);

// Where `file`'s ResNet is: "encoder_q." (a MoCo v2 checkpoint's query encoder), "encoder." (a
// SimCLR checkpoint's encoder, or a supervised one's classifier), or "" (torchvision's names, no
// prefix).
std::string resnet_prefix(const SafetensorsFile& file);

// The ResNet `file` holds, frozen (eval mode, no gradients) on `device`: the architecture, stem
// and width are read from its shapes; the head is dropped (the model keeps its own, unused fc).
std::shared_ptr<nn::ResNet> frozen_resnet_from_file(const SafetensorsFile& file, const std::string& path,
                                                    Device device, const std::string& flag);

// read_resnet_file, then frozen_resnet_from_file.
std::shared_ptr<nn::ResNet> load_resnet_file(const std::string& path, Device device, const std::string& flag);

// Refuses a file whose tensors could not hold the ResNet its metadata or shapes describe, before
// that model is allocated: `prefix`conv1.weight must be (width, 3, k, k) and
// `prefix`layer4.0.conv2.weight, the largest kind of weight, (8 width, 8 width, 3, 3). Every
// weight of a ResNet is at most a few times that one, so what a file makes us allocate stays within
// a small multiple of its own size, whatever its metadata claims.
void check_resnet_fits_file(const SafetensorsFile& file, const std::string& prefix, int64_t width,
                            const std::string& path);


// Refuses, naming the file, a tensor `name` that is missing or not of shape `expected`; `says`
// names what needs it ("a ResNet of width 64").
void check_tensor_shape(const SafetensorsFile& file, const std::string& name, const Shape& expected,
                        const std::string& path, const char* says);

}  // namespace engine::ssl
