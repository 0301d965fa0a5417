// cmd_info.cpp - `moco info FILE`: what a safetensors file (checkpoint, export, inspect dump)
// holds: its metadata, then one line per tensor with dtype, shape and value statistics.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "engine/serialize.h"
#include "tools/commands.h"

namespace moco_cli {

namespace {

struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
};

Stats stats_of(const engine::Tensor& t) {
  Stats s;
  if (t.numel() == 0) return s;
  const std::vector<double> v = t.to_vector<double>();
  double sum = 0, sq = 0;
  s.min = s.max = v[0];
  for (double x : v) {
    sum += x;
    sq += x * x;
    s.min = std::min(s.min, x);
    s.max = std::max(s.max, x);
  }
  const double n = static_cast<double>(v.size());
  s.mean = sum / n;
  s.std = std::sqrt(std::max(0.0, sq / n - s.mean * s.mean));
  return s;
}

void run_info(const std::string& path) {
  const engine::SafetensorsFile file = engine::load_safetensors(path);
  fmt::print("{}\n", path);
  for (const auto& [key, value] : file.metadata) fmt::print("  {}: {}\n", key, value);
  size_t width = 4;
  for (const auto& [name, t] : file.tensors) width = std::max(width, name.size());
  fmt::print("{:<{}}  {:<5} {:<20} {:>12} {:>12} {:>12} {:>12}\n", "name", width, "dtype", "shape", "mean", "std", "min",
             "max");
  int64_t elements = 0, bytes = 0;
  for (const auto& [name, t] : file.tensors) {
    const Stats s = stats_of(t);
    fmt::print("{:<{}}  {:<5} {:<20} {:>12.5g} {:>12.5g} {:>12.5g} {:>12.5g}\n", name, width,
               engine::safetensors_dtype_name(t.dtype()), engine::shape_str(t.shape()), s.mean, s.std, s.min, s.max);
    elements += t.numel();
    bytes += t.numel() * engine::dtype_size(t.dtype());
  }
  fmt::print("{} tensors, {} elements, {:.1f} MiB\n", file.tensors.size(), elements, bytes / 1048576.0);
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "List the metadata and tensors of a safetensors file");
  auto path = std::make_shared<std::string>();
  cmd->add_option("FILE", *path, "a .safetensors file (checkpoint, export, inspect dump)")->required();
  cmd->callback([path] { run_info(*path); });
}

}  // namespace moco_cli
