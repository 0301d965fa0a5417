// cmd_version.cpp - `moco version`: what this build has and what this machine offers.
#include <fmt/format.h>

#include "engine/collectives.h"
#include "engine/device.h"
#include "tools/commands.h"
#if ENGINE_WITH_CUDA
#include "engine/cuda_context.h"
#endif

namespace moco_cli {

void add_version_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("version", "print the build's backends and the libraries found at run time");
  cmd->callback([] {
    fmt::print("moco-engine {}\n", MOCO_ENGINE_VERSION);
    fmt::print("CUDA backend: {}\n", engine::cuda_is_built() ? "compiled in" : "not compiled (CPU only)");
    fmt::print("GPUs visible: {}\n", engine::cuda_device_count());
    fmt::print("MPI: {}\n", engine::mpi_library_version());
    fmt::print("NCCL: {}\n", engine::nccl_library_version());
#if ENGINE_WITH_CUDA
    if (engine::cuda_device_count() > 0) fmt::print("{}\n", engine::cuda::library_versions());
#endif
#if ENGINE_WITH_BLAS
    fmt::print("CPU GEMM: OpenBLAS\n");
#else
    fmt::print("CPU GEMM: naive loops (no BLAS in this build)\n");
#endif
  });
}

}  // namespace moco_cli
