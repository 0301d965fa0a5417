// distributed_env.h - the processes of the distributed test suite. The suite runs under
// `mpirun -np 2` (the ranks talk over MPI on this machine's CPU) and alone as one process; every
// test holds for any world size, and compares what W ranks compute with what one process computes.
#pragma once

#include <string>

#include "engine/collectives.h"

namespace engine::testing {

// The world this test process joined in main (distributed_main.cpp).
Collectives& world();

// Rank 0 writes a synthetic dataset (24-pixel images) at `root` while the others wait.
void write_synth_on_rank_zero(const std::string& root, int classes, int train_per_class, int val_per_class);

}  // namespace engine::testing
