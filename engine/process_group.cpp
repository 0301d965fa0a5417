// process_group.cpp - joining the processes of a launcher and choosing the collectives' backend
// (see collectives.h). Apart from collectives.cpp so that only the programs that join processes
// (the `moco` commands) pull in MPI and NCCL; the installed library (api/) links neither.
#include <cstdlib>

#include "engine/check.h"
#include "engine/collectives.h"
#include "engine/collectives_backends.h"

namespace engine {

namespace {

bool env_set(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0';
}

}  // namespace

bool launched_by_mpi() {
  // Open MPI's mpirun, MPICH / Intel MPI's hydra (PMI), PMIx launchers (srun --mpi=pmix).
  return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMI_SIZE") || env_set("PMIX_RANK");
}

std::string mpi_library_version() {
#if ENGINE_WITH_MPI
  return detail::mpi_library_version();
#else
  return "not compiled (one process only; install libopenmpi-dev and rebuild)";
#endif
}

std::string nccl_library_version() {
#if ENGINE_WITH_NCCL
  return detail::nccl_library_version();
#else
  return "not compiled (no CUDA toolkit's libnccl at configure time, or the emulation build)";
#endif
}

std::shared_ptr<Collectives> join_processes(const ProcessGroupOptions& options) {
  ENGINE_CHECK(options.timeout_seconds > 0, "the collective timeout must be positive, found {} s",
               options.timeout_seconds);
  if (!launched_by_mpi()) return std::shared_ptr<Collectives>(&local_collectives(), [](Collectives*) {});
#if ENGINE_WITH_MPI
  return detail::make_mpi_collectives(options);
#else
  ENGINE_THROW("this process was started by an MPI launcher, but this build has no MPI: install Open MPI "
               "(scripts/install-deps.sh installs libopenmpi-dev) and rebuild, or run without mpirun");
#endif
}

std::shared_ptr<Collectives> make_nccl_collectives(std::shared_ptr<Collectives> bootstrap, Device device,
                                                   const ProcessGroupOptions& options) {
  ENGINE_CHECK(device.is_cuda(), "NCCL collectives need a CUDA device, found {}", device.str());
#if ENGINE_WITH_NCCL
  return detail::make_nccl_backend(std::move(bootstrap), device, options);
#else
  (void)bootstrap;
  (void)options;
  ENGINE_THROW("this build has no NCCL (the CUDA toolkit's libnccl was not found at configure time, or this is the "
               "emulation build); CUDA tensors go through MPI's host copies instead");
#endif
}

std::shared_ptr<Collectives> collectives_for_device(std::shared_ptr<Collectives> world, Device device,
                                                    const ProcessGroupOptions& options) {
#if ENGINE_WITH_NCCL
  if (device.is_cuda() && world->world_size() > 1) return make_nccl_collectives(std::move(world), device, options);
#else
  (void)device;
  (void)options;
#endif
  return world;
}

Device device_for_rank(Device requested, bool index_given, const Collectives& world) {
  if (!requested.is_cuda() || world.world_size() == 1) return requested;
  ENGINE_CHECK(!index_given,
               "--device {} names one GPU, but this run has {} processes, which each need their own: give --device "
               "cuda, and each rank takes cuda:LOCAL_RANK",
               requested.str(), world.world_size());
  const int count = cuda_device_count();
  if (count == 1) return Device::cuda(0);  // one visible GPU per process (Slurm's --gpus-per-task)
  ENGINE_CHECK(world.local_rank() < count,
               "rank {} is process {} on its machine, which has only {} GPUs: start at most {} processes per machine "
               "(mpirun -npernode {})",
               world.rank(), world.local_rank(), count, count, count);
  return Device::cuda(world.local_rank());
}

}  // namespace engine
