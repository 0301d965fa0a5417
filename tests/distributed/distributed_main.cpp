// distributed_main.cpp - joins the processes (MPI under mpirun, else one local process), then runs
// every test on every rank. A rank's failed expectation is reported by that rank; its exit status
// fails the mpirun.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "engine/check.h"
#include "tests/distributed/distributed_env.h"

namespace engine::testing {

namespace {
std::shared_ptr<Collectives> g_world;
}

Collectives& world() { return *g_world; }

std::string same_path_on_every_rank(const std::string& path) {
  Tensor length = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(path.size())}, {1});
  world().broadcast(length, 0);
  Tensor bytes = Tensor::zeros({length.data<int64_t>()[0]}, DType::u8);
  if (world().is_root()) std::memcpy(bytes.data_ptr(), path.data(), path.size());
  world().broadcast(bytes, 0);
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
}

}  // namespace engine::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  engine::ProcessGroupOptions options;
  options.timeout_seconds = 120;  // a rank that fails an assertion and skips a collective ends the job
  engine::testing::g_world = engine::join_processes(options);
  const int status = RUN_ALL_TESTS();
  engine::testing::world().barrier();
  engine::testing::g_world.reset();
  return status;
}
