// collectives_nccl.cpp - the NCCL backend of engine/collectives.h (real CUDA builds with NCCL).
//
// One communicator per process over the bootstrap's ranks: rank 0 makes the NCCL id and broadcasts
// it through the bootstrap (MPI, or the local world for one rank). Collectives on CUDA tensors run
// on the backend's own stream: it waits for the engine stream's work so far (an event), runs the
// NCCL call, and the engine stream waits for it in turn, so the host never blocks and the engine's
// stream-ordered allocator sees every use of a buffer in order. CPU tensors go to the bootstrap.
//
// Watchdog: every call leaves an event; a thread checks the oldest unfinished one once a second
// and NCCL's asynchronous error. A call unfinished after the timeout (another rank died before
// joining it) or an NCCL error aborts the communicator and ends this process with a message that
// names the rank; the launcher then ends the job.
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

class NoWait : public PendingReduce {
 public:
  void wait() override {}  // ordered on the streams already
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
    NCCL_CHECK(ncclCommInitRank(&comm_, bootstrap_->world_size(), id, bootstrap_->rank()));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclCollectives() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    watchdog_.join();
    CUDA_WARN(cudaStreamSynchronize(stream_));
    for (const Pending& p : pending_) CUDA_WARN(cudaEventDestroy(p.done));
    ncclCommDestroy(comm_);
    CUDA_WARN(cudaStreamDestroy(stream_));
  }

  int rank() const override { return bootstrap_->rank(); }
  int world_size() const override { return bootstrap_->world_size(); }
  int local_rank() const override { return bootstrap_->local_rank(); }
  const char* backend() const override { return "nccl"; }

  void all_reduce(Tensor& x, Reduction op) override {
    if (x.device().is_cpu()) return bootstrap_->all_reduce(x, op);
    check_on_device(x, "all_reduce");
    on_stream("all-reduce", [&] {
      NCCL_CHECK(ncclAllReduce(x.data_ptr(), x.data_ptr(), static_cast<size_t>(x.numel()),
                               nccl_type(x.dtype(), "all_reduce"), op == Reduction::Average ? ncclAvg : ncclSum, comm_,
                               stream_));
    });
  }

  std::unique_ptr<PendingReduce> all_reduce_async(Tensor x, Reduction op) override {
    if (x.device().is_cpu()) return bootstrap_->all_reduce_async(x, op);
    all_reduce(x, op);
    return std::make_unique<NoWait>();
  }

  Tensor all_gather(const Tensor& x) override {
    if (x.device().is_cpu()) return bootstrap_->all_gather(x);
    check_on_device(x, "all_gather");
    ENGINE_CHECK(x.dim() >= 1, "all_gather: needs an (n, ...) tensor, found {}", x.str());
    Shape shape = x.shape();
    shape[0] *= world_size();
    Tensor out = Tensor::empty(shape, x.dtype(), x.device());
    on_stream("all-gather", [&] {
      NCCL_CHECK(ncclAllGather(x.data_ptr(), out.data_ptr(), static_cast<size_t>(x.numel()),
                               nccl_type(x.dtype(), "all_gather"), comm_, stream_));
    });
    return out;
  }

  void broadcast(Tensor& x, int root) override {
    if (x.device().is_cpu()) return bootstrap_->broadcast(x, root);
    check_on_device(x, "broadcast");
    ENGINE_CHECK(root >= 0 && root < world_size(), "broadcast: root {} is not a rank of {}", root, world_size());
    on_stream("broadcast", [&] {
      NCCL_CHECK(ncclBroadcast(x.data_ptr(), x.data_ptr(), static_cast<size_t>(x.numel()),
                               nccl_type(x.dtype(), "broadcast"), root, comm_, stream_));
    });
  }

  void barrier() override { bootstrap_->barrier(); }

  [[noreturn]] void abort(const std::string& why, int status) override {
    ncclCommAbort(comm_);
    bootstrap_->abort(why, status);
    std::_Exit(status);  // not reached: abort ends the process
  }

 private:
  struct Pending {
    cudaEvent_t done;
    const char* what;
    std::chrono::steady_clock::time_point since;
  };

  void check_on_device(const Tensor& x, const char* op) const {
    check_defined(x, op, "x");
    ENGINE_CHECK(x.device() == device_ && x.is_contiguous(),
                 "{}: NCCL collectives of this process take contiguous tensors on {}, found {}", op, device_.str(),
                 x.str());
  }

  // The engine stream's work so far, then `call` on our stream, then the engine stream waits.
  template <typename F>
  void on_stream(const char* what, F&& call) {
    cudaStream_t engine_stream = cuda::stream(device_.index);
    cudaEvent_t ready, done;
    CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(ready, engine_stream));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    CUDA_CHECK(cudaEventDestroy(ready));  // released once it has fired
    call();
    CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(done, stream_));
    CUDA_CHECK(cudaStreamWaitEvent(engine_stream, done, 0));
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({done, what, std::chrono::steady_clock::now()});
  }

  void watch() {
    CUDA_WARN(cudaSetDevice(device_.index));
    while (true) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      while (!pending_.empty() && cudaEventQuery(pending_.front().done) == cudaSuccess) {
        CUDA_WARN(cudaEventDestroy(pending_.front().done));
        pending_.pop_front();
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
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
      ncclCommAbort(comm_);
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

}  // namespace engine::detail
