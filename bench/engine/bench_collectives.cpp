// bench_collectives.cpp - the collectives of engine/collectives.h, timed as NCCL's tests time them:
// all_reduce (Sum, f32, in place) and all_gather from 4 KiB to 64 MiB, next to what this machine's
// memory can do with the same bytes.
//
//   bench_collectives [--device cpu|cuda] [--quick]
//   mpirun --allow-run-as-root --oversubscribe -np 2 build/bench/bench_collectives --device cpu
//
// The processes are engine::join_processes' world: MPI's under mpirun, else the one-process world
// (where every collective is the identity and the numbers say only what the call costs). --device
// cuda times NCCL (make_nccl_collectives over that world, each rank on its own GPU); the GPU check
// runs it with one process. Rank 0 prints.
//
// Method. One warm-up call; then 5 rounds, each of `repeats` calls (enough for ~256 MiB of buffer
// per round, 3 to 1000 calls) started together after a barrier and ended by a synchronisation of
// the device; a round's time is its slowest rank's (a collective is done when the last rank is),
// and the result is the median round. Buffers start at zero, so the in-place sums stay zero and
// never slow down on infinities or denormals.
//
// The bandwidths (the definitions of NCCL-tests, its doc/PERFORMANCE.md), for n bytes per
// rank and W ranks:
//   algbw = n / t: the buffer's bytes over the time, what the caller sees.
//   busbw = algbw * 2 (W - 1) / W for all_reduce. The fastest all-reduce (a ring, or any that is
//           bandwidth-optimal) makes every rank send (W - 1) / W of its buffer in a reduce-scatter
//           and (W - 1) / W again in an all-gather; busbw is that traffic per rank over the time,
//           so it does not depend on W and compares with the bandwidth of one rank's link (here:
//           the memory that Open MPI's shared-memory transport copies through). For W = 2 it
//           equals algbw; for W = 1 nothing crosses a link and it is 0 (printed as "-").
//   all_gather: n is the gathered output (W pieces of n / W); algbw = n / t and
//           busbw = algbw * (W - 1) / W (each rank receives the W - 1 pieces it lacks).
//
// The reference ("the hardware limit"), timed on every rank at once since the ranks share the
// memory system, with the same buffer sizes n (one thread per rank; CPU only):
//   memcpy   copy n bytes: reads n, writes n. An all-reduce's result must at least be written over
//            the whole buffer after its inputs are read, so this is the floor of its time; the
//            ratio column is all_reduce time / memcpy time (1: as fast as memory allows).
//   a += b   the reduction itself over n bytes (f32): reads 2n, writes n, as one step of a
//            two-rank reduce does; its traffic is printed as 3n / t.
// On CUDA the reference is a device-to-device copy of n bytes (Tensor::copy_ on the engine stream).
// Under MPI the table also times MPI_Allreduce itself, blocking, on the same buffer: the difference
// is the interface's own cost (collectives_mpi.cpp runs MPI_Iallreduce and waits, under a watchdog).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/ops/bench_timing.h"
#include "engine/check.h"
#include "engine/collectives.h"
#if ENGINE_WITH_MPI
#include <mpi.h>
#endif

using namespace engine;

namespace {

constexpr int kRounds = 5;

// Seconds per call: the median over kRounds rounds of the slowest rank's time (method above).
// `world` synchronises the ranks and gathers their times (CPU tensors: MPI, or the local world).
double seconds_per_call(Collectives& world, Device device, int repeats, const std::function<void()>& fn) {
  fn();
  bench::synchronize(device);
  std::vector<double> rounds;
  for (int r = 0; r < kRounds; ++r) {
    world.barrier();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) fn();
    bench::synchronize(device);
    const double mine = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
    const Tensor mine_tensor = Tensor::from_vector(std::vector<double>{mine}, {1});
    const std::vector<double> every = world.all_gather(mine_tensor).to_vector<double>();
    rounds.push_back(*std::max_element(every.begin(), every.end()));
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds[kRounds / 2];
}

// Calls per round: ~256 MiB of buffer per round (64 MiB with --quick), 3 to 1000 calls.
int repeats_for(int64_t bytes, bool quick) {
  const int64_t budget = (quick ? 64LL : 256LL) << 20;
  return static_cast<int>(std::clamp<int64_t>(budget / bytes, 3, 1000));
}

// 4 KiB, 16 KiB, ..., 64 MiB (--quick: to 1 MiB).
std::vector<int64_t> sizes(bool quick) {
  std::vector<int64_t> out;
  for (int64_t bytes = 4 << 10; bytes <= (quick ? (1LL << 20) : (64LL << 20)); bytes *= 4) out.push_back(bytes);
  return out;
}

std::string size_str(int64_t bytes) {
  return bytes >= (1 << 20) ? fmt::format("{} MiB", bytes >> 20) : fmt::format("{} KiB", bytes >> 10);
}

std::string gbps_or_dash(double gbps) { return gbps > 0 ? fmt::format("{:.2f}", gbps) : "-"; }

void bench_all_reduce(Collectives& world, Collectives& coll, Device device, bool quick) {
  const int W = coll.world_size();
  const bool cpu = device.is_cpu();
  if (world.is_root()) {
    fmt::print("\nall_reduce (Sum, f32, in place) on {}: {} backend, {} rank{}\n", device.str(), coll.backend(), W,
               W == 1 ? "" : "s");
    fmt::print("{:>8} {:>7} {:>10} {:>8} {:>8} | {:>13} | {:>10} {:>8} {:>10} {:>8} | {:>7}\n", "size", "repeats",
               "time (us)", "algbw", "busbw", "MPI_Allreduce", cpu ? "memcpy" : "d2d copy", "traffic", "a += b",
               "traffic", "ar time");
    fmt::print("{:>8} {:>7} {:>10} {:>8} {:>8} | {:>13} | {:>10} {:>8} {:>10} {:>8} | {:>7}\n", "", "", "", "GB/s",
               "GB/s", "(us)", "(us)", "GB/s", "(us)", "GB/s", "/ copy");
  }
  for (const int64_t bytes : sizes(quick)) {
    const int64_t n = bytes / static_cast<int64_t>(sizeof(float));
    const int repeats = repeats_for(bytes, quick);
    Tensor x = Tensor::zeros({n}, DType::f32, device);
    const double t = seconds_per_call(world, device, repeats, [&] { coll.all_reduce(x, Reduction::Sum); });
    const double algbw = static_cast<double>(bytes) / t / 1e9;
    const double busbw = algbw * 2.0 * (W - 1) / W;

    // The MPI library's own blocking call on the same buffer: what the interface's path (a
    // nonblocking MPI_Iallreduce and a wait, with the watchdog around it) costs on top of MPI.
    double library_t = 0;
#if ENGINE_WITH_MPI
    if (cpu && std::string(coll.backend()) == "mpi")
      library_t = seconds_per_call(world, device, repeats, [&] {
        MPI_Allreduce(MPI_IN_PLACE, x.data_ptr(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      });
#endif
    double copy_t = 0, sum_t = 0;
    if (cpu) {
      std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n), 0.0f);
      copy_t = seconds_per_call(world, device, repeats, [&] { std::memcpy(a.data(), b.data(), bytes); });
      float* pa = a.data();
      const float* pb = b.data();
      sum_t = seconds_per_call(world, device, repeats, [&] {
        for (int64_t i = 0; i < n; ++i) pa[i] += pb[i];
      });
    } else {
      Tensor dst = Tensor::zeros({n}, DType::f32, device);
      copy_t = seconds_per_call(world, device, repeats, [&] { dst.copy_(x); });
    }
    if (world.is_root()) {
      const double gb = static_cast<double>(bytes) / 1e9;
      const auto us_or_dash = [](double seconds) { return seconds > 0 ? fmt::format("{:.1f}", seconds * 1e6) : "-"; };
      fmt::print("{:>8} {:>7} {:>10.1f} {:>8.2f} {:>8} | {:>13} | {:>10.1f} {:>8.2f} {:>10} {:>8} | {:>7.2f}\n",
                 size_str(bytes), repeats, t * 1e6, algbw, gbps_or_dash(busbw), us_or_dash(library_t), copy_t * 1e6,
                 2 * gb / copy_t, us_or_dash(sum_t), gbps_or_dash(sum_t > 0 ? 3 * gb / sum_t : 0), t / copy_t);
    }
  }
}

void bench_all_gather(Collectives& world, Collectives& coll, Device device, bool quick) {
  const int W = coll.world_size();
  if (world.is_root()) {
    fmt::print("\nall_gather (f32; size = the gathered output, size / {} per rank) on {}: {} backend\n", W,
               device.str(), coll.backend());
    fmt::print("{:>8} {:>8} {:>11} {:>9} {:>9}\n", "size", "repeats", "time (us)", "algbw", "busbw");
    fmt::print("{:>8} {:>8} {:>11} {:>9} {:>9}\n", "", "", "", "GB/s", "GB/s");
  }
  for (const int64_t bytes : sizes(quick)) {
    const int64_t n = bytes / static_cast<int64_t>(sizeof(float)) / W;
    const int repeats = repeats_for(bytes, quick);
    const Tensor x = Tensor::zeros({n}, DType::f32, device);
    const double t = seconds_per_call(world, device, repeats, [&] { coll.all_gather(x); });
    const double algbw = static_cast<double>(bytes) / t / 1e9;
    if (world.is_root())
      fmt::print("{:>8} {:>8} {:>11.1f} {:>9.2f} {:>9}\n", size_str(bytes), repeats, t * 1e6, algbw,
                 gbps_or_dash(algbw * (W - 1) / W));
  }
}

int run(Collectives& world, const std::string& which, bool quick) {
  if (world.is_root())
    fmt::print("bench_collectives: {} process{} ({} backend){}\n", world.world_size(),
               world.world_size() == 1 ? "" : "es", world.backend(),
               world.world_size() == 1 ? "; a one-process world's collectives are the identity: run under mpirun -np 2"
                                       : "");
  if (which == "cpu") {
    bench_all_reduce(world, world, Device::cpu(), quick);
    bench_all_gather(world, world, Device::cpu(), quick);
    return 0;
  }
  // --device cuda: NCCL over this world's ranks, each on its own GPU.
  std::string skipped;
  if (!cuda_is_built())
    skipped = "built without CUDA";
  else if (cuda_device_count() == 0)
    skipped = "no GPU on this machine";
#if !ENGINE_WITH_NCCL
  else
    skipped = "built without NCCL";
#endif
  if (!skipped.empty()) {
    if (world.is_root()) fmt::print("\ncuda: skipped ({})\n", skipped);
    return 0;
  }
  const Device device = device_for_rank(Device::cuda(), /*index_given=*/false, world);
  const std::shared_ptr<Collectives> nccl = make_nccl_collectives(
      std::shared_ptr<Collectives>(&world, [](Collectives*) {}), device, ProcessGroupOptions{});
  bench_all_reduce(world, *nccl, device, quick);
  bench_all_gather(world, *nccl, device, quick);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = "cpu";
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--device" && i + 1 < argc) {
      which = argv[++i];
      if (which != "cpu" && which != "cuda") {
        fmt::print(stderr, "bench_collectives: --device cpu or cuda, found '{}'\n", which);
        return 2;
      }
    } else {
      fmt::print(stderr, "usage: bench_collectives [--device cpu|cuda] [--quick]\n");
      return 2;
    }
  }
  std::shared_ptr<Collectives> world;
  try {
    world = join_processes(ProcessGroupOptions{});
    return run(*world, which, quick);
  } catch (const Error& e) {
    if (world && world->world_size() > 1) world->abort(e.what(), 1);  // the other ranks would wait for this one
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
