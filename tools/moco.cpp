// moco.cpp - the `moco` command: one binary, one subcommand per job (see docs/ARCHITECTURE.md).
// Errors from the engine are caught here and printed as one message, with exit status 1.
#include <fmt/format.h>

#include <cstdio>

#include "engine/check.h"
#include "engine/openmp_wait.h"
#include "tools/commands.h"
#include "tools/processes.h"

int main(int argc, char** argv) {
  engine::use_passive_openmp_wait(argv);
  CLI::App app{"moco: ResNet MoCo v2 with saliency-guided masking, in C++20 and CUDA"};
  app.require_subcommand(1);
  moco_cli::add_version_command(app);
  moco_cli::add_demo_command(app);
  moco_cli::add_info_command(app);
  moco_cli::add_inspect_command(app);
  moco_cli::add_synth_command(app);
  moco_cli::add_batch_command(app);
  moco_cli::add_masks_command(app);
  moco_cli::add_pretrain_command(app);
  moco_cli::add_supervised_command(app);
  moco_cli::add_knn_command(app);
  moco_cli::add_lincls_command(app);
  moco_cli::add_embed_command(app);
  moco_cli::add_export_command(app);
  moco_cli::add_probe_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    // In a distributed run, the failing rank names itself and ends every rank (processes.h).
    moco_cli::fail_processes(e.what());
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  moco_cli::leave_processes();
  return 0;
}
