// processes.h - the processes of a `moco` command that can run distributed (pretrain, knn, lincls).
//
// `mpirun -np N moco pretrain ...` (or srun) starts N copies; each joins the others here, once,
// before it builds anything: rank and world from MPI, the device cuda:LOCAL_RANK for --device cuda,
// one OpenMP thread per rank unless OMP_NUM_THREADS says otherwise, and ranks other than 0 keep
// their progress reports to themselves (their warnings still reach stderr, prefixed with the rank).
// Without a launcher the command runs as one process, as it always has.
//
// A rank that fails leaves through fail(): it prints its error with its rank and ends the whole job
// (MPI_Abort), so the others never wait for it.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "engine/collectives.h"
#include "tools/cli_common.h"

namespace moco_cli {

struct ProcessFlags {
  double collective_timeout = 600;  // --collective-timeout: seconds a rank waits for the others
};
void add_process_flags(CLI::App* cmd, ProcessFlags& flags);

// Joins this run's processes (once per process; later calls return the same world).
engine::Collectives& join_processes(const ProcessFlags& flags);

// The device of this rank for the command's --device (engine::device_for_rank), with its precision.
// Refuses two ranks on one GPU (a collective: every rank calls it).
engine::Device rank_device(const DeviceFlags& flags, engine::Collectives& world);

// The collectives for tensors on `device`: NCCL for a GPU in a distributed run, else the world.
engine::Collectives& device_collectives(engine::Device device, const ProcessFlags& flags);

// Called by main with the error that ended a command: in a distributed run, prints it with this
// rank's number and ends every rank (does not return); otherwise returns and main prints it.
void fail_processes(const std::string& error);
// Called by main after a command succeeded: MPI_Finalize and the like.
void leave_processes();

}  // namespace moco_cli
