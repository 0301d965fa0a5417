// processes.cpp - see processes.h.
#include "tools/processes.h"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "engine/check.h"
#include "engine/log.h"
#include "engine/precision.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace moco_cli {

namespace {

std::shared_ptr<engine::Collectives> g_world;   // joined once
std::shared_ptr<engine::Collectives> g_device;  // the collectives of the rank's device

}  // namespace

void add_process_flags(CLI::App* cmd, ProcessFlags& flags) {
  cmd->add_option("--collective-timeout", flags.collective_timeout,
                  "under mpirun: seconds a rank waits in a collective for the others before it decides one has failed "
                  "and ends the job (long enough for rank 0 to write a checkpoint)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

engine::Collectives& join_processes(const ProcessFlags& flags) {
  if (g_world) return *g_world;
  engine::ProcessGroupOptions options;
  options.timeout_seconds = flags.collective_timeout;
  g_world = engine::join_processes(options);
  const int rank = g_world->rank(), world = g_world->world_size();
  if (world > 1) {
#ifdef _OPENMP
    if (std::getenv("OMP_NUM_THREADS") == nullptr) omp_set_num_threads(1);  // one core per rank
#endif
    engine::set_log_sink([rank, world](engine::LogLevel level, std::string_view message) {
      if (level == engine::LogLevel::Info) {
        if (rank == 0) std::fprintf(stdout, "%.*s\n", static_cast<int>(message.size()), message.data());
        std::fflush(stdout);
        return;
      }
      std::fprintf(stderr, "[rank %d of %d] %.*s\n", rank, world, static_cast<int>(message.size()), message.data());
      std::fflush(stderr);
    });
    if (rank == 0) engine::log_info("{} processes ({} collectives)", world, g_world->backend());
  }
  return *g_world;
}

namespace {

// NCCL does not support two ranks of one communicator on one GPU (it may hang): every rank sends
// "host|GPU" and each refuses a GPU another rank also has.
void refuse_shared_gpus(engine::Device device, engine::Collectives& world) {
  char host[64] = {0};
  gethostname(host, sizeof(host) - 1);
  const std::string mine = fmt::format("{}|{}", host, engine::cuda_device_identity(device.index));
  constexpr int64_t kWidth = 128;
  engine::Tensor text = engine::Tensor::zeros({1, kWidth}, engine::DType::u8);
  std::memcpy(text.data_ptr(), mine.data(), std::min<size_t>(mine.size(), kWidth - 1));
  const engine::Tensor all = world.all_gather(text);  // (W, 128)
  const char* rows = static_cast<const char*>(all.data_ptr());
  for (int r = 0; r < world.world_size(); ++r) {
    if (r == world.rank() || std::string(rows + r * kWidth) != std::string(rows + world.rank() * kWidth)) continue;
    ENGINE_THROW("ranks {} and {} are both on GPU {} of {}: each rank needs its own GPU (NCCL cannot put two ranks "
                 "on one). Start at most one process per GPU, or give each its own with Slurm's --gpus-per-task 1",
                 std::min(r, world.rank()), std::max(r, world.rank()), engine::cuda_device_identity(device.index),
                 host);
  }
}

}  // namespace

engine::Device rank_device(const DeviceFlags& flags, engine::Collectives& world) {
  const bool index_given = flags.device.find(':') != std::string::npos;
  const engine::Device device = engine::device_for_rank(engine::resolve_device(flags.device), index_given, world);
  if (device.is_cuda() && world.world_size() > 1) refuse_shared_gpus(device, world);
  engine::use_precision(engine::parse_precision(flags.precision), device);
  return device;
}

engine::Collectives& device_collectives(engine::Device device, const ProcessFlags& flags) {
  ENGINE_CHECK(g_world != nullptr, "device_collectives: join_processes first");
  if (!g_device) {
    engine::ProcessGroupOptions options;
    options.timeout_seconds = flags.collective_timeout;
    g_device = engine::collectives_for_device(g_world, device, options);
  }
  return *g_device;
}

void fail_processes(const std::string& error) {
  if (g_world && g_world->world_size() > 1) (g_device ? g_device : g_world)->abort(error, 1);
}

void leave_processes() {
  // Every rank finishes its command before any tears down (NCCL's and MPI's ends are collective),
  // under the watchdog: a rank stuck in its last checkpoint does not hang the others for ever.
  if (g_world && g_world->world_size() > 1) g_world->barrier();
  g_device.reset();
  g_world.reset();
}

}  // namespace moco_cli
