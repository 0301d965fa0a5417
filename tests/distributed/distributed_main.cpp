// distributed_main.cpp - joins the processes (MPI under mpirun, else one local process), then runs
// every test on every rank. A rank's failed expectation is reported by that rank; its exit status
// fails the mpirun.
#include <gtest/gtest.h>

#include <memory>

#include "data/synth.h"
#include "engine/check.h"
#include "tests/distributed/distributed_env.h"

namespace engine::testing {

namespace {
std::shared_ptr<Collectives> g_world;
}

Collectives& world() { return *g_world; }


void write_synth_on_rank_zero(const std::string& root, int classes, int train_per_class, int val_per_class) {
  if (world().is_root()) {
    data::SynthOptions o;
    o.classes = classes;
    o.train_per_class = train_per_class;
    o.val_per_class = val_per_class;
    o.size = 24;
    o.threads = 1;
    data::write_synth_dataset(root, o);
  }
  world().barrier();
}

}  // namespace engine::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  engine::ProcessGroupOptions options;
  // A rank that fails an assertion and skips a collective ends the job after this; long enough for
  // the others to wait while rank 0 alone trains the one-process reference runs (a few seconds).
  options.timeout_seconds = 300;
  engine::testing::g_world = engine::join_processes(options);
  const int status = RUN_ALL_TESTS();
  engine::testing::world().barrier();
  engine::testing::g_world.reset();
  return status;
}
