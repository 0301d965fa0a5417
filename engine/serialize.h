// serialize.h - safetensors files: named tensors plus a string-to-string metadata map.
//
// The format (https://huggingface.co/docs/safetensors):
//     [8 bytes]  N, the header length, unsigned little-endian
//     [N bytes]  a JSON object: for each tensor name {"dtype": "F32", "shape": [2, 3],
//                "data_offsets": [begin, end]}, plus an optional "__metadata__" object whose
//                values are strings; padded with spaces
//     [rest]     the tensor bytes, row-major, little-endian; offsets are relative to this section
// The reader is strict, because checkpoints come from other programs and from crashes: a file
// that is truncated, has an oversized or malformed header, an unknown dtype, a byte range that
// does not match its shape, lies outside the data or overlaps another, or leaves a hole, is
// refused with a message naming the file and the problem. It never reads out of bounds.
//
// Dtypes: F32, F64, BF16, U8, I32, I64 (the engine's). Tensors are written from any device and
// layout (copied to contiguous host memory first) and read into contiguous CPU tensors.
// The writer is atomic (write_file_atomic in file_io.h: `path.tmp`, fsync, rename), so a crash
// mid-write leaves the previous file intact.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace engine {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  NamedTensors tensors;  // in the order of their data offsets
  Metadata metadata;
  // The tensor called `name`; throws, listing a few names the file has, when it is absent.
  const Tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const;
};

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});
SafetensorsFile load_safetensors(const std::string& path);

// The same on bytes in memory (what the file functions use; the tests feed it damaged files).
std::string encode_safetensors(const NamedTensors& tensors, const Metadata& metadata = {});
SafetensorsFile decode_safetensors(const std::string& bytes, const std::string& source = "<memory>");

// "F32" and back; the parser throws for a name the engine cannot hold.
std::string safetensors_dtype_name(DType dtype);
DType parse_safetensors_dtype(const std::string& name, const std::string& source);

}  // namespace engine
