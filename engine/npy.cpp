// npy.cpp - see npy.h.
#include "engine/npy.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <bit>

#include "engine/check.h"
#include "engine/file_io.h"

namespace engine {

namespace {

const char* npy_descr(DType dtype) {
  switch (dtype) {
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::i32: return "<i4";
    case DType::i64: return "<i8";
    default: ENGINE_THROW("npy: tensors of dtype {} are not written; convert to f32, f64, i32 or i64", dtype_name(dtype));
  }
}

}  // namespace

std::string npy_bytes(const Tensor& t) {
  static_assert(std::endian::native == std::endian::little, "npy: the values are written in the host's byte order");
  // Python's tuple syntax: (), (3,), (3, 4).
  std::string shape = t.dim() == 1 ? fmt::format("{},", t.size(0)) : fmt::format("{}", fmt::join(t.shape(), ", "));
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", npy_descr(t.dtype()), shape);
  // magic (6) + version (2) + header length (2) + header, ending in '\n', a multiple of 64 bytes.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  ENGINE_CHECK(header.size() <= 65535, "npy: a shape of {} dimensions does not fit a version 1.0 header", t.dim());
  const Tensor host = t.to(Device::cpu()).contiguous();
  const size_t data_bytes = static_cast<size_t>(host.numel()) * dtype_size(host.dtype());
  std::string out;
  out.reserve(10 + header.size() + data_bytes);
  out.append("\x93NUMPY", 6);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(static_cast<const char*>(host.data_ptr()), data_bytes);
  return out;
}

void save_npy(const std::string& path, const Tensor& t) { write_file_atomic(path, npy_bytes(t)); }

}  // namespace engine
