// commands.h - the subcommands of the `moco` binary; each registers its flags and its action.
#pragma once

#include <CLI/CLI.hpp>

namespace moco_cli {

void add_version_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_batch_command(CLI::App& app);
void add_masks_command(CLI::App& app);
void add_pretrain_command(CLI::App& app);
void add_supervised_command(CLI::App& app);
void add_knn_command(CLI::App& app);
void add_lincls_command(CLI::App& app);
void add_embed_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_probe_command(CLI::App& app);

}  // namespace moco_cli
