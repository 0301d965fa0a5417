// bench_infonce.cpp - times MoCo's loss at the reference size (N = 128 queries, D = 128, a queue of
// K = 65536, n_h = 1 hard negative) and the l2_normalize of its (128, 128) embeddings, on the CPU
// and, when present, the GPU, and reports each against what bounds it:
//   infonce fwd      2 N D K FLOPs (the queue GEMM) and 4 (D K + 2 N K) bytes: read the queue,
//                    write the (N, K) dot products, read them back in the row pass;
//   infonce fwd+bwd  twice the FLOPs (the backward GEMM) and 4 (2 D K + 5 N K) bytes: the backward
//                    reads and rewrites the dot products as probabilities, then its GEMM reads them
//                    and the queue again;
//   l2_normalize     bytes only: read x, write y (forward); read y and dy, write dx (backward).
// The bound of a row is max(FLOPs / GEMM rate, bytes / copy bandwidth), both measured in the same
// run (a large square matmul, a clone of a large tensor); "of bound" = bound / time, so 100% means
// the op runs as fast as its GEMMs and its unavoidable traffic allow (l2_normalize's 64 KiB stay in
// cache, so it can exceed the memory copy's bound: read its time, not its share). Each infonce call
// also reads the two accuracy counts back to the host, as training does. bench/torch_ref/bench_infonce.py
// times the reference's computation (einsum, cat, CrossEntropyLoss, topk) in PyTorch at the same
// sizes, in the same table format.
//
// Method as bench_ops: one warm-up call, then `repeats` calls between two synchronisations,
// median of 5 rounds.
//
//   bench_infonce [--device cpu|cuda|all] [--quick]
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "bench/ops/loss_bench.h"
#include "engine/autograd.h"
#include "engine/random.h"
#include "ops/ops.h"

using namespace engine;
using bench::median_seconds_per_call;
using bench::unit_rows;

namespace {

void bench_device(Device device, bool quick) {
  const bool gpu = device.is_cuda();
  const int64_t N = 128, D = 128, K = quick ? 4096 : 65536, n_h = 1;
  const int repeats = gpu ? 20 : 2;

  const bench::DeviceBounds bounds = bench::measure_bounds(device, quick, repeats);

  const Tensor q = unit_rows({N, D}, device, 3), k = unit_rows({N, D}, device, 4);
  const Tensor queue = unit_rows({K, D}, device, 5).transpose(0, 1).contiguous();  // (D, K), unit columns
  const Tensor hard = unit_rows({N, n_h, D}, device, 6);
  const InfoNceOptions opt{0.2, 2.0};
  const double gemm = 2.0 * N * D * K, f = 4.0;  // bytes per f32
  const std::string shape = fmt::format("N{} D{} K{} n_h{}", N, D, K, n_h);
  std::vector<bench::BoundRow> table;
  {
    NoGradGuard no_grad;
    table.push_back({"infonce fwd", shape,
                     median_seconds_per_call(device, repeats, [&] { infonce(q, k, queue, hard, opt); }), gemm,
                     f * (D * K + 2 * N * K)});
    table.push_back({"l2_normalize fwd", shape_str(q.shape()),
                     median_seconds_per_call(device, repeats, [&] { l2_normalize(q); }), 0.0, f * 2 * N * D});
  }
  Tensor q_leaf = q.detach();
  q_leaf.requires_grad_(true);
  table.push_back({"infonce fwd+bwd", shape, median_seconds_per_call(device, repeats, [&] {
                     q_leaf.set_grad(Tensor());
                     infonce(q_leaf, k, queue, hard, opt).loss.backward();
                   }),
                   2 * gemm, f * (2 * D * K + 5 * N * K)});
  const Tensor seed = unit_rows({N, D}, device, 7);
  table.push_back({"l2_normalize fwd+bwd", shape_str(q.shape()), median_seconds_per_call(device, repeats, [&] {
                     q_leaf.set_grad(Tensor());
                     l2_normalize(q_leaf).backward(seed);
                   }),
                   0.0, f * 5 * N * D});

  bench::print_bound_table(device, bounds, table);
}

}  // namespace

int main(int argc, char** argv) { return bench::run_benchmark(argc, argv, "bench_infonce", bench_device); }
