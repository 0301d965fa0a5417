// bench_loader.cpp - data-loader throughput: images/s and views/s of the MoCo v2 two-view
// augmentation on a folder of JPEGs, by worker-thread count. Its PyTorch twin,
// bench/torch_ref/bench_loader.py, runs torchvision's DataLoader on the same folder with the same
// augmentation, batch size and worker counts, for a side-by-side ratio on the same machine.
//
//   bench_loader --data DIR [--workers 1,2] [--batch-size 32] [--size 224] [--batches 20] [--fast-decode]
//
// Per worker count: a fresh loader, two warm-up batches (thread start-up and first allocations
// excluded, as the PyTorch side excludes its worker start-up), then `batches` batches timed.
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "data/image_folder.h"
#include "data/loader.h"

namespace {

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  namespace data = engine::data;
  std::string dir, workers_text = "1,2";
  int batch_size = 32, size = 224, batches = 20;
  bool fast_decode = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "bench_loader: {} needs a value\n", arg);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--data") dir = value();
    else if (arg == "--workers") workers_text = value();
    else if (arg == "--batch-size") batch_size = std::stoi(value());
    else if (arg == "--size") size = std::stoi(value());
    else if (arg == "--batches") batches = std::stoi(value());
    else if (arg == "--fast-decode") fast_decode = true;
    else {
      fmt::print(stderr, "usage: bench_loader --data DIR [--workers 1,2] [--batch-size 32] [--size 224] "
                         "[--batches 20] [--fast-decode]\n");
      return 2;
    }
  }
  if (dir.empty()) {
    fmt::print(stderr, "bench_loader: --data DIR is required (a folder of class folders of JPEGs)\n");
    return 2;
  }
  try {
    auto dataset = std::make_shared<data::ImageFolder>(data::resolve_split(dir, "train"));
    fmt::print("engine_loader dataset={} images={} cpus={} fast_decode={}\n", dataset->root(), dataset->size(),
               std::thread::hardware_concurrency(), fast_decode);
    for (int workers : parse_list(workers_text)) {
      data::LoaderOptions options;
      options.batch_size = batch_size;
      options.workers = workers;
      options.fast_decode = fast_decode;
      data::Loader loader(dataset, data::mocov2_augment(size), options);
      int64_t epoch = 0;
      loader.start_epoch(epoch);
      auto take = [&] {
        auto batch = loader.next();
        if (!batch) {
          loader.start_epoch(++epoch);
          batch = loader.next();
        }
        return batch->size();
      };
      take();
      take();
      const auto start = std::chrono::steady_clock::now();
      int64_t images = 0;
      for (int b = 0; b < batches; ++b) images += take();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fmt::print("engine_loader workers={} batch={} size={} images_per_s={:.1f} views_per_s={:.1f}\n", workers,
                 batch_size, size, images / seconds, 2 * images / seconds);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_loader: {}\n", e.what());
    return 1;
  }
  return 0;
}
