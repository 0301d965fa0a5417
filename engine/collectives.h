// collectives.h - the processes of a distributed run and the few things they do together.
//
// A distributed run is W processes (ranks 0 .. W-1, one per device), started by an MPI launcher
// (mpirun, or srun under Slurm). They train one model: each takes 1/W of every batch, and they meet
// only in collectives, each called by every rank in the same order with tensors of the same shape
// and dtype (MPI's and NCCL's rule; the code that calls them is deterministic, so it holds):
//
//   all_reduce(x, op)       x becomes the sum (or mean) of every rank's x, on every rank
//   all_reduce_async(x, op) the same, started now and finished by wait(): the gradient buckets
//                           start while the backward is still running (layers/data_parallel.h)
//   all_gather(x)           (n, ...) from each rank -> (W n, ...), stacked in rank order
//   broadcast(x, root)      x becomes root's x
//   barrier()               returns once every rank has called it
//   abort(why)              ends the whole job now: what a failing rank does, so no rank waits for it
//
// Backends. Local: one process, every collective is the identity (world size 1; what runs without
// a launcher). MPI: CPU tensors directly; CUDA tensors through host copies (correct and slow: the
// emulation build tests the distributed CUDA code paths with it). NCCL: CUDA tensors on its own
// stream, ordered against the engine stream by events, so a collective never blocks the host; CPU
// tensors and the bootstrap (the NCCL id, broadcast from rank 0) go through MPI.
//
// Faults. A collective that waits longer than the timeout means another rank has died or hangs:
// the watchdog logs which rank is waiting for what and ends this process, and the launcher then
// ends the job (mpirun kills every rank when one exits with an error). A rank that fails with an
// exception calls abort(), which names it and ends every rank at once.
#pragma once

#include <memory>
#include <string>

#include "engine/device.h"
#include "engine/tensor.h"

namespace engine {

enum class Reduction { Sum, Average };

// An all-reduce started and not yet finished: wait() completes it, in place in the tensor given.
class PendingReduce {
 public:
  virtual ~PendingReduce() = default;
  virtual void wait() = 0;
  // Lets the library move the reduce on without waiting (MPI's non-blocking collectives advance
  // only inside MPI calls); the gradient buckets call it as the backward goes.
  virtual void progress() {}
};

class Collectives {
 public:
  virtual ~Collectives() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // The rank among the processes on this machine: the one that takes cuda:local_rank.
  virtual int local_rank() const = 0;
  virtual const char* backend() const = 0;  // "local", "mpi", "nccl"
  bool is_root() const { return rank() == 0; }

  // x: contiguous f32, f64 or i64 (Average: f32 or f64), on any device.
  virtual void all_reduce(Tensor& x, Reduction op) = 0;
  // x must stay alive and unused until wait(), which must be called before the next collective.
  virtual std::unique_ptr<PendingReduce> all_reduce_async(Tensor x, Reduction op) = 0;
  // x: contiguous (n, ...) with the same shape on every rank; returns (W n, ...) on x's device.
  virtual Tensor all_gather(const Tensor& x) = 0;
  // x: contiguous; root's values on every rank.
  virtual void broadcast(Tensor& x, int root) = 0;
  virtual void barrier() = 0;
  // Logs `why` with this rank's number and ends every process of the job with `status`.
  [[noreturn]] virtual void abort(const std::string& why, int status) = 0;
};

// The one-process world: rank 0 of 1, every collective the identity.
Collectives& local_collectives();

// Rank 0's `text` on every rank (a collective: every rank calls it).
std::string broadcast_text(Collectives& world, const std::string& text);

struct ProcessGroupOptions {
  // How long a collective may wait for the other ranks before the watchdog ends the job. Long
  // enough for rank 0 to write a checkpoint while the others wait at the next collective.
  double timeout_seconds = 600;
};

// True when an MPI launcher (mpirun, mpiexec, srun) started this process.
bool launched_by_mpi();

// The MPI library of this build, as it names itself ("Open MPI v4.1.4, ..."), or why there is none.
std::string mpi_library_version();
// The NCCL library this build links ("2.21.5"), or why there is none.
std::string nccl_library_version();

// The processes of this run: MPI's (MPI_Init here, MPI_Finalize when the last reference goes) when
// an MPI launcher started it, else the local world. Call once per process. Throws when a launcher
// started it but this build has no MPI.
std::shared_ptr<Collectives> join_processes(const ProcessGroupOptions& options);

// The collectives for tensors on `device`: NCCL for a CUDA device when this build has NCCL and the
// world has more than one rank (bootstrapped through `world`), else `world` itself.
std::shared_ptr<Collectives> collectives_for_device(std::shared_ptr<Collectives> world, Device device,
                                                    const ProcessGroupOptions& options);

// NCCL over `bootstrap`'s ranks for tensors on `device`, whatever the world size (the GPU check
// runs it with one rank). Throws when this build has no NCCL.
std::shared_ptr<Collectives> make_nccl_collectives(std::shared_ptr<Collectives> bootstrap, Device device,
                                                   const ProcessGroupOptions& options);

// The device of this rank for a --device flag: a CUDA device without an index becomes
// cuda:local_rank (or cuda:0 when this process sees one GPU, as under Slurm's GPU binding).
Device device_for_rank(Device requested, bool index_given, const Collectives& world);

}  // namespace engine
