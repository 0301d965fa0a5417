// serialize.cpp - the safetensors reader and writer (format in serialize.h).
#include "engine/serialize.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <tuple>
#include <nlohmann/json.hpp>

#include "engine/file_io.h"

namespace engine {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian bytes; this reader copies them as they are");

namespace {

using json = nlohmann::json;

// A header larger than this is refused before it is read (the reference implementation's limit).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {{DType::f32, "F32"}, {DType::f64, "F64"}, {DType::bf16, "BF16"},
                                     {DType::u8, "U8"},   {DType::i32, "I32"}, {DType::i64, "I64"}};

uint64_t read_le64(const char* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

// A non-negative integer that fits int64, or an error naming the field.
int64_t as_count(const json& v, const std::string& what, const std::string& source) {
  ENGINE_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
               "{}: {} must be a non-negative integer, found {}", source, what, v.dump());
  const uint64_t u = v.get<uint64_t>();
  ENGINE_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "{}: {} = {} is too large", source,
               what, u);
  return static_cast<int64_t>(u);
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  int64_t begin, end;
};

Entry parse_entry(const std::string& name, const json& info, const std::string& source) {
  ENGINE_CHECK(info.is_object() && info.contains("dtype") && info.contains("shape") && info.contains("data_offsets"),
               "{}: tensor '{}' needs an object with dtype, shape and data_offsets, found {}", source, name,
               info.dump().substr(0, 200));
  ENGINE_CHECK(info["dtype"].is_string(), "{}: tensor '{}': dtype must be a string", source, name);
  Entry e{name, parse_safetensors_dtype(info["dtype"].get<std::string>(), source), {}, 0, 0};
  const json& shape = info["shape"];
  ENGINE_CHECK(shape.is_array(), "{}: tensor '{}': shape must be an array, found {}", source, name, shape.dump());
  int64_t numel = 1;
  for (const json& d : shape) {
    const int64_t size = as_count(d, fmt::format("a dimension of tensor '{}'", name), source);
    ENGINE_CHECK(size == 0 || numel <= std::numeric_limits<int64_t>::max() / 16 / size,
                 "{}: tensor '{}' has too many elements ({})", source, name, shape.dump());
    numel *= size;
    e.shape.push_back(size);
  }
  const json& offsets = info["data_offsets"];
  ENGINE_CHECK(offsets.is_array() && offsets.size() == 2, "{}: tensor '{}': data_offsets must be [begin, end], found {}",
               source, name, offsets.dump());
  e.begin = as_count(offsets[0], "a data offset", source);
  e.end = as_count(offsets[1], "a data offset", source);
  const int64_t expected = numel * dtype_size(e.dtype);
  ENGINE_CHECK(e.end >= e.begin && e.end - e.begin == expected,
               "{}: tensor '{}' ({}, shape {}) needs {} bytes but its data_offsets [{}, {}] span {}", source, name,
               dtype_name(e.dtype), shape_str(e.shape), expected, e.begin, e.end, e.end - e.begin);
  return e;
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  for (const DTypeName& d : kDTypeNames)
    if (d.dtype == dtype) return d.name;
  ENGINE_THROW("safetensors: the engine has no safetensors name for dtype {}", dtype_name(dtype));
}

DType parse_safetensors_dtype(const std::string& name, const std::string& source) {
  for (const DTypeName& d : kDTypeNames)
    if (name == d.name) return d.dtype;
  ENGINE_THROW("{}: unsupported safetensors dtype '{}' (the engine reads F32, F64, BF16, U8, I32 and I64)", source,
               name);
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [key, t] : tensors)
    if (key == name) return t;
  std::string some;
  for (size_t k = 0; k < tensors.size() && k < 8; ++k) some += (k ? ", " : "") + tensors[k].first;
  ENGINE_THROW("no tensor named '{}' in this safetensors file; it has {} tensors ({}{})", name, tensors.size(), some,
               tensors.size() > 8 ? ", ..." : "");
}

bool SafetensorsFile::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& kv) { return kv.first == name; });
}

std::string encode_safetensors(const NamedTensors& tensors, const Metadata& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;  // contiguous CPU copies, in the order of the data section
  int64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    check_defined(t, "save_safetensors", name.c_str());
    ENGINE_CHECK(name != "__metadata__" && !header.contains(name), "save_safetensors: the name '{}' {}", name,
                 name == "__metadata__" ? "is reserved" : "is used twice");
    Tensor h = t.detach().to(Device::cpu()).contiguous();
    const int64_t nbytes = h.numel() * dtype_size(h.dtype());
    header[name] = {{"dtype", safetensors_dtype_name(h.dtype())},
                    {"shape", h.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    host.push_back(std::move(h));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  std::string bytes(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += text;
  bytes.reserve(bytes.size() + offset);
  for (const Tensor& h : host)
    bytes.append(static_cast<const char*>(h.data_ptr()), h.numel() * dtype_size(h.dtype()));
  return bytes;
}

SafetensorsFile decode_safetensors(const std::string& bytes, const std::string& source) {
  ENGINE_CHECK(bytes.size() >= 8, "{}: not a safetensors file: {} bytes, shorter than the 8-byte header length",
               source, bytes.size());
  const uint64_t header_len = read_le64(bytes.data());
  ENGINE_CHECK(header_len <= kMaxHeaderBytes,
               "{}: not a safetensors file or corrupt: the header claims {} bytes (the limit is {})", source,
               header_len, kMaxHeaderBytes);
  ENGINE_CHECK(header_len <= bytes.size() - 8,
               "{}: truncated: the header claims {} bytes but only {} follow the length field", source, header_len,
               bytes.size() - 8);
  // JSON allows a name twice in one object and nlohmann keeps the last; a safetensors file with
  // two tensors of one name (or a field given twice) is ambiguous, so it is refused.
  std::vector<std::set<std::string>> keys_of_open_objects;
  const json::parser_callback_t refuse_duplicates = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) keys_of_open_objects.emplace_back();
    if (event == json::parse_event_t::object_end) keys_of_open_objects.pop_back();
    if (event == json::parse_event_t::key)
      ENGINE_CHECK(keys_of_open_objects.back().insert(parsed.get<std::string>()).second,
                   "{}: the safetensors header names '{}' twice in one object", source,
                   parsed.get<std::string>().substr(0, 100));
    return true;
  };
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<int64_t>(header_len), refuse_duplicates);
  } catch (const json::exception& e) {
    ENGINE_THROW("{}: the safetensors header is not valid JSON: {}", source, e.what());
  }
  ENGINE_CHECK(header.is_object(), "{}: the safetensors header must be a JSON object", source);

  SafetensorsFile file;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      ENGINE_CHECK(value.is_object(), "{}: __metadata__ must be an object of strings", source);
      for (const auto& [mk, mv] : value.items()) {
        ENGINE_CHECK(mv.is_string(), "{}: metadata '{}' must be a string, found {}", source, mk, mv.dump());
        file.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(key, value, source));
  }
  // By offset; empty tensors share one, so the name breaks the tie and the order is always the same.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  const uint64_t data_size = bytes.size() - 8 - header_len;
  int64_t covered = 0;  // entries tile [0, data_size) in order: no overlap, no hole
  for (const Entry& e : entries) {
    ENGINE_CHECK(e.begin >= covered, "{}: tensor '{}' [{}, {}) overlaps the previous tensor, which ends at {}",
                 source, e.name, e.begin, e.end, covered);
    ENGINE_CHECK(e.begin == covered, "{}: a hole of {} bytes before tensor '{}' at offset {}", source,
                 e.begin - covered, e.name, e.begin);
    ENGINE_CHECK(static_cast<uint64_t>(e.end) <= data_size,
                 "{}: truncated: tensor '{}' ends at byte {} of the data but the data has {} bytes", source, e.name,
                 e.end, data_size);
    covered = e.end;
  }
  ENGINE_CHECK(static_cast<uint64_t>(covered) == data_size,
               "{}: {} trailing bytes after the last tensor (the file is damaged or not safetensors)", source,
               data_size - covered);
  const char* data = bytes.data() + 8 + header_len;
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, Device::cpu());
    if (e.end > e.begin) std::memcpy(t.data_ptr(), data + e.begin, e.end - e.begin);
    file.tensors.emplace_back(e.name, std::move(t));
  }
  return file;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  write_file_atomic(path, encode_safetensors(tensors, metadata));
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::error_code ec;
  ENGINE_CHECK(std::filesystem::is_regular_file(path, ec), "load_safetensors: '{}' does not exist or is not a file",
               path);
  std::ifstream in(path, std::ios::binary);
  ENGINE_CHECK(in.good(), "load_safetensors: cannot open '{}': {}", path, std::strerror(errno));
  // One read of exactly the file's size: the only allocation before the header is checked.
  const uintmax_t size = std::filesystem::file_size(path, ec);
  ENGINE_CHECK(!ec, "load_safetensors: cannot read the size of '{}': {}", path, ec.message());
  std::string bytes(size, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  ENGINE_CHECK(static_cast<uintmax_t>(in.gcount()) == size, "load_safetensors: '{}' changed while it was read ({} of "
               "{} bytes)", path, in.gcount(), size);
  return decode_safetensors(bytes, path);
}

}  // namespace engine
