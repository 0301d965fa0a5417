// export.h - a pretrained backbone written for PyTorch users (`moco export`): the ResNet of a
// `moco pretrain` checkpoint (MoCo v2's query encoder encoder_q., SimCLR's encoder.) or of a
// torchvision-named file, without its head, as one safetensors file in one of two namings.
//
//   torchvision   torchvision's own state-dict names (conv1.weight, bn1.running_mean,
//                 layer1.0.downsample.1.weight, ...): `torchvision.models.resnet50()` loads it with
//                 strict=False and reports only fc.weight and fc.bias missing, as MoCo's
//                 main_lincls.py loads MoCo's encoder_q.
//   detectron2    the names MoCo's moco/detection/convert-pretrain-to-detectron2.py gives the same
//                 tensors (detectron2_name below); the metadata carries that script's
//                 __author__ = MOCO and matching_heuristics = True. detectron2's
//                 DetectionCheckpointer reads a pickle: README "Exporting the backbone" shows the
//                 lines that turn this file into one.
//
// What is exported: every tensor of torchvision's ResNet except fc.* (MoCo's script keeps the head
// as stem.fc.*, which detectron2 ignores; we leave it out in both namings), in torchvision's key
// order, with PyTorch's layout (OIHW convolution weights): parameters and running statistics as
// f32, num_batches_tracked as i64 scalars. Values are the file's own, bit for bit.
//
// The input is checked as evaluation checks a --pretrained file (ssl/run/resnet_file.h: shapes
// before anything is allocated, then a strict load), so a damaged or hostile file is refused with
// a message. A file without num_batches_tracked counters (some converters drop them) exports them
// as 0, which is what PyTorch's BatchNorm puts in when a state dict lacks them; the metadata says
// so. A model torchvision's constructors cannot build as they are (the small 3x3 stem, or a width
// other than 64) still exports, with a warning (engine/log.h) naming the change it needs.
#pragma once

#include <string>

#include "engine/serialize.h"

namespace engine::ssl {

enum class ExportFormat { Torchvision, Detectron2 };

// "torchvision" or "detectron2"; anything else is refused with the two accepted names.
ExportFormat parse_export_format(const std::string& text);
const char* export_format_name(ExportFormat format);

// MoCo's conversion rule for one torchvision key: "stem." before a key outside layer1..4;
// layer1..layer4 -> res2..res5; bn1/bn2/bn3 -> conv1.norm/conv2.norm/conv3.norm; downsample.0 ->
// shortcut and downsample.1 -> shortcut.norm. E.g. layer1.0.downsample.1.running_var ->
// res2.0.shortcut.norm.running_var, bn1.weight -> stem.conv1.norm.weight.
std::string detectron2_name(const std::string& torchvision_key);

struct ExportedBackbone {
  NamedTensors tensors;  // in torchvision's key order, named for the format
  Metadata metadata;     // what it is and where it came from (see export_backbone)
  std::string arch;      // resnet18, resnet34 or resnet50
  std::string source;    // one phrase: "encoder_q of a mocov2 checkpoint (epoch 1, step 3)", ...
};

// The backbone held by the safetensors file `path`, named for `format`. Metadata: "export_format",
// "arch", "width", "small_stem", "source_file", "source" (as above), "excluded" (fc.*), and for a
// checkpoint "method", "epoch", "step"; for detectron2 also "__author__" and "matching_heuristics".
// Refuses a missing file and one that holds no complete ResNet, naming the file and what it lacks.
ExportedBackbone export_backbone(const std::string& path, ExportFormat format);

// Writes `exported` to `out` atomically (engine/file_io.h).
void write_export(const std::string& out, const ExportedBackbone& exported);

}  // namespace engine::ssl
