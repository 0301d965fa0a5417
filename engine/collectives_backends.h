// collectives_backends.h - the constructors of the MPI and NCCL backends of engine/collectives.h,
// each in its own file that only a build with that library compiles (collectives_mpi.cpp,
// collectives_nccl.cpp). Internal: programs reach them through join_processes and
// collectives_for_device.
#pragma once

#include <memory>

#include "engine/collectives.h"

namespace engine::detail {

#if ENGINE_WITH_MPI
// MPI_Init_thread (funneled: only the main thread calls MPI) and a watchdog thread.
std::shared_ptr<Collectives> make_mpi_collectives(const ProcessGroupOptions& options);
std::string mpi_library_version();
#endif

#if ENGINE_WITH_NCCL
std::string nccl_library_version();
std::shared_ptr<Collectives> make_nccl_backend(std::shared_ptr<Collectives> bootstrap, Device device,
                                               const ProcessGroupOptions& options);
#endif

// Watches the collective in progress: one that has waited longer than the timeout logs what it
// waits for and ends the process (the launcher then ends the job). Used by the MPI backend.
class CollectiveWatchdog {
 public:
  CollectiveWatchdog(int rank, int world_size, double timeout_seconds);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Marks the span of one blocking collective.
  class Scope {
   public:
    Scope(CollectiveWatchdog& dog, const char* what);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CollectiveWatchdog& dog_;
  };

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The error line a failing rank prints before the job ends: "rank R of W: WHY".
std::string rank_message(int rank, int world_size, const std::string& why);

}  // namespace engine::detail
