// processes.cpp - see processes.h.
#include "tools/processes.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
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

engine::Device rank_device(const DeviceFlags& flags, const engine::Collectives& world) {
  const bool index_given = flags.device.find(':') != std::string::npos;
  const engine::Device device = engine::device_for_rank(resolve_device(flags.device), index_given, world);
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
  g_device.reset();
  g_world.reset();
}

}  // namespace moco_cli
