// distributed_main.cpp - joins the processes (MPI under mpirun, else one local process), then runs
// every test on every rank. A rank's failed expectation is reported by that rank; its exit status
// fails the mpirun.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "data/synth.h"
#include "engine/check.h"
#include "tests/distributed/distributed_env.h"

namespace engine::testing {

namespace {
std::shared_ptr<Collectives> g_world;
}

Collectives& world() { return *g_world; }

std::string same_path_on_every_rank(const std::string& path) { return broadcast_text(world(), path); }

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

double max_abs_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const std::vector<double> x = a.to(DType::f64).to_vector<double>(), y = b.to(DType::f64).to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
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
