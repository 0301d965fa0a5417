// collectives.cpp - the local world and the watchdog (see collectives.h). Joining processes and
// choosing a backend is process_group.cpp: a program that never joins (the installed library,
// api/) then links no MPI or NCCL.
#include "engine/collectives.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "engine/check.h"
#include "engine/collectives_backends.h"

namespace engine {

namespace {

class LocalReduce : public PendingReduce {
 public:
  void wait() override {}
};

class LocalCollectives : public Collectives {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  const char* backend() const override { return "local"; }
  void all_reduce(Tensor& x, Reduction) override { check_defined(x, "all_reduce", "x"); }
  std::unique_ptr<PendingReduce> all_reduce_async(Tensor x, Reduction) override {
    check_defined(x, "all_reduce_async", "x");
    return std::make_unique<LocalReduce>();
  }
  Tensor all_gather(const Tensor& x) override {
    check_defined(x, "all_gather", "x");
    return x;
  }
  void broadcast(Tensor& x, int root) override {
    check_defined(x, "broadcast", "x");
    ENGINE_CHECK(root == 0, "broadcast: root {} is not a rank of a one-process run", root);
  }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& why, int status) override {
    std::fprintf(stderr, "error: %s\n", why.c_str());
    std::fflush(stderr);
    std::_Exit(status);
  }
};

}  // namespace

Collectives& local_collectives() {
  static LocalCollectives world;
  return world;
}

std::string broadcast_text(Collectives& world, const std::string& text) {
  if (world.world_size() == 1) return text;
  Tensor length = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(text.size())}, {1});
  world.broadcast(length, 0);
  Tensor bytes = Tensor::zeros({length.data<int64_t>()[0]}, DType::u8);
  if (world.is_root() && !text.empty()) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  world.broadcast(bytes, 0);
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
}

namespace detail {

std::string rank_message(int rank, int world_size, const std::string& why) {
  return fmt::format("rank {} of {}: {}", rank, world_size, why);
}

struct CollectiveWatchdog::State {
  int rank, world_size;
  double timeout_seconds;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  const char* what = nullptr;  // the collective in progress, or null
  std::chrono::steady_clock::time_point since;
  std::thread thread;

  void watch() {
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      wake.wait_for(lock, std::chrono::milliseconds(500));
      if (stopping || what == nullptr) continue;
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
      if (waited < timeout_seconds) continue;
      const std::string line = rank_message(
          rank, world_size,
          fmt::format("the {} has waited {:.0f} s for the other ranks (the collective timeout is {:.0f} s): another "
                      "rank has failed or hangs; ending this process so that the launcher ends the job. Resume from "
                      "the last checkpoint with --resume auto",
                      what, waited, timeout_seconds));
      std::fprintf(stderr, "error: %s\n", line.c_str());
      std::fflush(stderr);
      std::_Exit(3);  // not MPI_Abort: the main thread is inside MPI, which this thread may not enter
    }
  }
};

CollectiveWatchdog::CollectiveWatchdog(int rank, int world_size, double timeout_seconds)
    : state_(std::make_unique<State>()) {
  state_->rank = rank;
  state_->world_size = world_size;
  state_->timeout_seconds = timeout_seconds;
  state_->thread = std::thread([s = state_.get()] { s->watch(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stopping = true;
  }
  state_->wake.notify_all();
  state_->thread.join();
}

CollectiveWatchdog::Scope::Scope(CollectiveWatchdog& dog, const char* what) : dog_(dog) {
  std::lock_guard<std::mutex> lock(dog_.state_->mutex);
  dog_.state_->what = what;
  dog_.state_->since = std::chrono::steady_clock::now();
}

CollectiveWatchdog::Scope::~Scope() {
  std::lock_guard<std::mutex> lock(dog_.state_->mutex);
  dog_.state_->what = nullptr;
}

}  // namespace detail

}  // namespace engine
