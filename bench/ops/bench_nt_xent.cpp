// bench_nt_xent.cpp - times SimCLR's NT-Xent loss at its training size (B = 256 images, so 2B = 512
// rows, D = 128) without hard negatives and with n_h = 2, on the CPU and, when present, the GPU, and
// reports each against what bounds it (n = 2B, f = 4 bytes per f32):
//   nt_xent fwd      2 n^2 D + 2 n n_h D FLOPs (the similarity GEMM, the hard dot products) and
//                    f (2 n^2 + n D + n n_h D) bytes: write the (n, n) similarities and read them
//                    back in the row pass, read z and each row's hard negatives;
//   nt_xent fwd+bwd  twice the FLOPs (the backward's one GEMM dz = W z, and the hard axpys) and
//                    f (5 n^2 + 3 n D + 2 n n_h D + 2 n D [n_h > 0]) bytes: the pair pass reads and
//                    rewrites the similarities as weights, the GEMM reads them and z and writes dz,
//                    the axpys (when n_h > 0) read the hard negatives again and read and write dz.
// The bound of a row is max(FLOPs / GEMM rate, bytes / copy bandwidth), both measured in the same
// run (a large square matmul, a clone of a large tensor); "of bound" = bound / time, so 100% means
// the op runs as fast as its GEMMs and its unavoidable traffic allow. Each call reads the two
// accuracy counts back to the host, as a training step that logs them does.
// bench/torch_ref/bench_nt_xent.py times the usual PyTorch formulation (cat, z z^T / T, the diagonal
// masked with -inf, the hard columns appended, cross_entropy, topk counts) at the same sizes, in the
// same table format.
//
// Method as bench_ops: one warm-up call, then `repeats` calls between two synchronisations,
// median of 5 rounds.
//
//   bench_nt_xent [--device cpu|cuda|all] [--quick]
#include <fmt/format.h>

#include <algorithm>
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
  const int64_t B = quick ? 64 : 256, n = 2 * B, D = 128;
  const int repeats = gpu ? 20 : 10;

  const bench::DeviceBounds bounds = bench::measure_bounds(device, quick, repeats);

  const NtXentOptions opt{0.2, 2.0};
  const double f = 4.0;  // bytes per f32
  std::vector<bench::BoundRow> table;
  for (int64_t n_h : {0, 2}) {
    const Tensor z = unit_rows({n, D}, device, 3);
    const Tensor hard = n_h > 0 ? unit_rows({B, n_h, D}, device, 4) : Tensor();
    const std::string shape = fmt::format("2B{} D{} n_h{}", n, D, n_h);
    const double flops = 2.0 * n * n * D + 2.0 * n * n_h * D;
    {
      NoGradGuard no_grad;
      table.push_back({"nt_xent fwd", shape, median_seconds_per_call(device, repeats, [&] {
                         nt_xent(z, hard, opt).correct.to_vector<int64_t>();
                       }),
                       flops, f * (2.0 * n * n + n * D + n * n_h * D)});
    }
    Tensor z_leaf = z.detach();
    z_leaf.requires_grad_(true);
    table.push_back({"nt_xent fwd+bwd", shape, median_seconds_per_call(device, repeats, [&] {
                       z_leaf.set_grad(Tensor());
                       const NtXentResult r = nt_xent(z_leaf, hard, opt);
                       r.loss.backward();
                       r.correct.to_vector<int64_t>();
                     }),
                     2 * flops, f * (5.0 * n * n + 3.0 * n * D + 2.0 * n * n_h * D + (n_h > 0 ? 2.0 * n * D : 0.0))});
  }

  bench::print_bound_table(device, bounds, table);
}

}  // namespace

int main(int argc, char** argv) { return bench::run_benchmark(argc, argv, "bench_nt_xent", bench_device); }
