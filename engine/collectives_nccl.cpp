// collectives_nccl.cpp - the NCCL backend of engine/collectives.h (real CUDA builds with NCCL).
//
// One communicator per process over the bootstrap's ranks: rank 0 makes the NCCL id and broadcasts
// it through the bootstrap (MPI, or the local world for one rank). Collectives on CUDA tensors run
// on the backend's own stream: it waits for the engine stream's work so far (an event), runs the
// NCCL call, and the engine stream waits for it in turn, so the host never blocks and the engine's
// stream-ordered allocator sees every use of a buffer in order. CPU tensors go to the bootstrap.
//
// The gradient buckets' all-reduces (all_reduce_async) overlap the backward: the engine stream
// waits for one only in wait(), and the pending reduce holds its tensor until then, so the engine's
// stream-ordered allocator cannot hand the memory out while NCCL still writes it.
//
// Watchdog: every call is registered before it is made (NCCL may block the host while it connects
// to its peers) and leaves an event; a thread checks the oldest unfinished one once a second, and
// NCCL's asynchronous error. A call unfinished after the timeout (another rank died before joining
// it) or an NCCL error prints a message that names the rank and ends this process; the launcher then
// ends the job. The watchdog never touches the communicator besides asking for its error, which
// NCCL allows from another thread; abort() stops the watchdog before it aborts the communicator.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/check.h"
#include "engine/collectives_backends.h"
#include "engine/cuda_check.h"
#include "engine/cuda_context.h"

// ncclAvg (2.10) and the non-blocking communicator states (2.14).
#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "the NCCL backend needs NCCL 2.14 or newer: set ENGINE_NCCL_ROOT to a newer NCCL, or configure without it"
#endif

namespace engine::detail {

namespace {

ncclDataType_t nccl_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::i64: return ncclInt64;
    case DType::i32: return ncclInt32;
    case DType::u8: return ncclUint8;
  }
  ENGINE_THROW("{}: no NCCL type for {}", op, dtype_name(dtype));
}

// A reduce running on the NCCL stream: wait() makes the engine stream wait for it.
class NcclReduce : public PendingReduce {
 public:
  NcclReduce(Tensor x, cudaEvent_t done, cudaStream_t engine_stream)
      : x_(std::move(x)), done_(done), engine_stream_(engine_stream) {}
  ~NcclReduce() override {
    if (done_) CUDA_WARN(cudaEventDestroy(done_));
  }
  void wait() override {
    if (!done_) return;
    CUDA_CHECK(cudaStreamWaitEvent(engine_stream_, done_, 0));
    CUDA_CHECK(cudaEventDestroy(done_));
    done_ = nullptr;
    x_ = Tensor();  // the engine stream is ordered after the reduce: the memory may be reused
  }

 private:
  Tensor x_;
  cudaEvent_t done_;
  cudaStream_t engine_stream_;
};

class NcclCollectives : public Collectives {
 public:
  NcclCollectives(std::shared_ptr<Collectives> bootstrap, Device device, const ProcessGroupOptions& options)
      : bootstrap_(std::move(bootstrap)), device_(device), timeout_seconds_(options.timeout_seconds) {
    require_cuda_device(device, "NCCL collectives");
    CUDA_CHECK(cudaSetDevice(device.index));
    ncclUniqueId id;
    if (bootstrap_->is_root()) NCCL_CHECK(ncclGetUniqueId(&id));
    Tensor bytes = Tensor::zeros({static_cast<int64_t>(sizeof(id))}, DType::u8);
    std::memcpy(bytes.data_ptr(), &id, sizeof(id));
    bootstrap_->broadcast(bytes, 0);
    std::memcpy(&id, bytes.data_ptr(), sizeof(id));
    // Watched too: the initialisation waits for every rank to join.
    pending_.push_back({nullptr, "NCCL initialisation", std::chrono::steady_clock::now()});
    watchdog_ = std::thread([this] { watch(); });
    try {
      ncclComm_t comm = nullptr;
      NCCL_CHECK(ncclCommInitRank(&comm, bootstrap_->world_size(), id, bootstrap_->rank()));
      CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      std::lock_guard<std::mutex> lock(mutex_);
      comm_ = comm;
      pending_.clear();
    } catch (...) {
      stop_watchdog();
      throw;
    }
  }

  ~NcclCollectives() override {
    stop_watchdog();
    CUDA_WARN(cudaStreamSynchronize(stream_));
    for (const Pending& p : pending_)
      if (p.done) CUDA_WARN(cudaEventDestroy(p.done));
    ncclCommDestroy(comm_);
    CUDA_WARN(cudaStreamDestroy(stream_));
  }

  int rank() const override { return bootstrap_->rank(); }
  int world_size() const override { return bootstrap_->world_size(); }
  int local_rank() const override { return bootstrap_->local_rank(); }
  const char* backend() const override { return "nccl"; }

  void all_reduce(Tensor& x, Reduction op) override {
    if (x.device().is_cpu()) return bootstrap_->all_reduce(x, op);
    wait_on_engine_stream(start_reduce(x, op, "all-reduce"));
  }

  std::unique_ptr<PendingReduce> all_reduce_async(Tensor x, Reduction op) override {
    if (x.device().is_cpu()) return bootstrap_->all_reduce_async(x, op);
    cudaEvent_t done = start_reduce(x, op, "gradient all-reduce");
    return std::make_unique<NcclReduce>(std::move(x), done, cuda::stream(device_.index));
  }

  Tensor all_gather(const Tensor& x) override {
    if (x.device().is_cpu()) return bootstrap_->all_gather(x);
    check_on_device(x, "all_gather");
    ENGINE_CHECK(x.dim() >= 1, "all_gather: needs an (n, ...) tensor, found {}", x.str());
    Shape shape = x.shape();
    shape[0] *= world_size();
    Tensor out = Tensor::empty(shape, x.dtype(), x.device());
    wait_on_engine_stream(on_stream("all-gather", [&] {
      NCCL_CHECK(ncclAllGather(x.data_ptr(), out.data_ptr(), static_cast<size_t>(x.numel()),
                               nccl_type(x.dtype(), "all_gather"), comm_, stream_));
    }));
    return out;
  }

  void broadcast(Tensor& x, int root) override {
    if (x.device().is_cpu()) return bootstrap_->broadcast(x, root);
    check_on_device(x, "broadcast");
    ENGINE_CHECK(root >= 0 && root < world_size(), "broadcast: root {} is not a rank of {}", root, world_size());
    wait_on_engine_stream(on_stream("broadcast", [&] {
      NCCL_CHECK(ncclBroadcast(x.data_ptr(), x.data_ptr(), static_cast<size_t>(x.numel()),
                               nccl_type(x.dtype(), "broadcast"), root, comm_, stream_));
    }));
  }

  void barrier() override { bootstrap_->barrier(); }

  [[noreturn]] void abort(const std::string& why, int status) override {
    stop_watchdog();  // the communicator is used by one thread at a time
    ncclCommAbort(comm_);
    bootstrap_->abort(why, status);
    std::_Exit(status);  // not reached: abort ends the process
  }

 private:
  struct Pending {
    cudaEvent_t done;  // null while the NCCL call itself runs on the host
    const char* what;
    std::chrono::steady_clock::time_point since;
  };

  void stop_watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    watchdog_.join();
  }

  cudaEvent_t start_reduce(const Tensor& x, Reduction op, const char* what) {
    check_on_device(x, "all_reduce");
    ENGINE_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64 || x.dtype() == DType::bf16 ||
                     (x.dtype() == DType::i64 && op == Reduction::Sum),
                 "all_reduce: reduces f32, f64 or bf16 tensors (and sums i64 ones), found {}", x.str());
    return on_stream(what, [&] {
      NCCL_CHECK(ncclAllReduce(x.data_ptr(), x.data_ptr(), static_cast<size_t>(x.numel()),
                               nccl_type(x.dtype(), "all_reduce"), op == Reduction::Average ? ncclAvg : ncclSum, comm_,
                               stream_));
    });
  }

  // The engine stream waits for `done` (recorded on our stream), which is then released.
  void wait_on_engine_stream(cudaEvent_t done) {
    CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(device_.index), done, 0));
    CUDA_CHECK(cudaEventDestroy(done));
  }

  void check_on_device(const Tensor& x, const char* op) const {
    check_defined(x, op, "x");
    ENGINE_CHECK(x.device() == device_ && x.is_contiguous(),
                 "{}: NCCL collectives of this process take contiguous tensors on {}, found {}", op, device_.str(),
                 x.str());
  }

  // The engine stream's work so far, then `call` on our stream. Returns an event recorded after
  // the call on our stream, for the caller to order the engine stream after (and release); the
  // watchdog keeps its own.
  template <typename F>
  cudaEvent_t on_stream(const char* what, F&& call) {
    cudaStream_t engine_stream = cuda::stream(device_.index);
    cudaEvent_t ready, done, watched;
    CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(ready, engine_stream));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    CUDA_CHECK(cudaEventDestroy(ready));  // released once it has fired
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.push_back({nullptr, what, std::chrono::steady_clock::now()});
    }
    call();
    CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(done, stream_));
    CUDA_CHECK(cudaEventCreateWithFlags(&watched, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(watched, stream_));
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.back().done = watched;  // only this thread appends, so back() is this call's
    return done;
  }

  void watch() {
    CUDA_WARN(cudaSetDevice(device_.index));
    while (true) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      while (!pending_.empty() && pending_.front().done && cudaEventQuery(pending_.front().done) == cudaSuccess) {
        CUDA_WARN(cudaEventDestroy(pending_.front().done));
        pending_.pop_front();
      }
      ncclResult_t async = ncclSuccess;
      if (comm_) ncclCommGetAsyncError(comm_, &async);
      std::string why;
      if (async != ncclSuccess && async != ncclInProgress) {
        why = fmt::format("NCCL reports an error: {}", ncclGetErrorString(async));
      } else if (!pending_.empty()) {
        const double waited =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - pending_.front().since).count();
        if (waited > timeout_seconds_)
          why = fmt::format("the {} on {} has not finished after {:.0f} s (the collective timeout is {:.0f} s): "
                            "another rank has failed or hangs",
                            pending_.front().what, device_.str(), waited, timeout_seconds_);
      }
      if (why.empty()) continue;
      const std::string line =
          rank_message(rank(), world_size(), why + "; ending this process. Resume from the last checkpoint");
      std::fprintf(stderr, "error: %s\n", line.c_str());
      std::fflush(stderr);
      std::_Exit(3);
    }
  }

  std::shared_ptr<Collectives> bootstrap_;
  Device device_;
  double timeout_seconds_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::mutex mutex_;
  std::deque<Pending> pending_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace

std::shared_ptr<Collectives> make_nccl_backend(std::shared_ptr<Collectives> bootstrap, Device device,
                                               const ProcessGroupOptions& options) {
  return std::make_shared<NcclCollectives>(std::move(bootstrap), device, options);
}

std::string nccl_library_version() {
  int version = 0;
  NCCL_CHECK(ncclGetVersion(&version));  // major*10000 + minor*100 + patch since NCCL 2.9
  return fmt::format("{}.{}.{}", version / 10000, (version % 10000) / 100, version % 100);
}

}  // namespace engine::detail
