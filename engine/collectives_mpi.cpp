// collectives_mpi.cpp - the MPI backend of engine/collectives.h.
//
// CPU tensors are handed to MPI where they are. A CUDA tensor is copied to the host, reduced there
// and copied back: correct on any MPI, slow, and what lets the emulation build run the distributed
// CUDA code paths; a real GPU build uses NCCL for CUDA tensors instead (collectives_nccl.cpp).
// Messages longer than an int's count are sent in pieces.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <exception>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "engine/check.h"
#include "engine/collectives_backends.h"

namespace engine::detail {

namespace {

MPI_Datatype mpi_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i64: return MPI_INT64_T;
    case DType::i32: return MPI_INT32_T;
    case DType::u8: return MPI_UINT8_T;
    default: ENGINE_THROW("{}: MPI collectives take f32, f64, i64, i32 or u8 tensors, found {}", op, dtype_name(dtype));
  }
}

void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  ENGINE_THROW("{} failed: {}", call, std::string(text, static_cast<size_t>(length)));
}

// Calls piece(data, count, type) over a contiguous host tensor in pieces of at most INT_MAX / 2
// elements (MPI counts are ints).
template <typename F>
void in_pieces(Tensor& host, const char* op, F&& piece) {
  constexpr int64_t kMax = INT_MAX / 2;
  const MPI_Datatype type = mpi_type(host.dtype(), op);
  char* base = static_cast<char*>(host.data_ptr());
  const int64_t element = dtype_size(host.dtype()), count = host.numel();
  for (int64_t start = 0; start < count; start += kMax)
    piece(base + start * element, static_cast<int>(std::min(kMax, count - start)), type);
}

// The end of an all-reduce on the host copy: the mean divides the sum by the world size, and a
// CUDA tensor gets its values back.
void finish_reduce(Tensor& host, Tensor& target, Reduction op, int world) {
  if (op == Reduction::Average) {
    const int64_t n = host.numel();
    if (host.dtype() == DType::f32) {
      float* p = host.data<float>();
      for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<float>(world);
    } else {
      double* p = host.data<double>();
      for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<double>(world);
    }
  }
  if (!host.is_same(target)) target.copy_(host);
}

void check_reducible(const Tensor& x, Reduction op, const char* what) {
  check_defined(x, what, "x");
  ENGINE_CHECK(x.is_contiguous(), "{}: the tensor must be contiguous, found {}", what, x.str());
  ENGINE_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64 || (x.dtype() == DType::i64 && op == Reduction::Sum),
               "{}: reduces f32 or f64 tensors (and sums i64 ones), found {}", what, x.str());
}

// The tensor MPI works on: x itself on the CPU, a host copy of a CUDA tensor.
Tensor host_side(const Tensor& x) { return x.device().is_cpu() ? x : x.to(Device::cpu()); }

class MpiReduce : public PendingReduce {
 public:
  MpiReduce(Tensor target, Tensor host, Reduction op, int world, CollectiveWatchdog& dog)
      : target_(std::move(target)), host_(std::move(host)), op_(op), world_(world), dog_(dog) {}
  std::vector<MPI_Request> requests;
  void wait() override {
    if (done_) return;
    {
      CollectiveWatchdog::Scope scope(dog_, "gradient all-reduce");
      check_mpi(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    }
    done_ = true;
    finish_reduce(host_, target_, op_, world_);
  }
  void progress() override {
    if (done_) return;
    int finished = 0;  // completed requests become MPI_REQUEST_NULL, which wait() passes over
    check_mpi(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &finished, MPI_STATUSES_IGNORE),
              "MPI_Testall");
  }
  ~MpiReduce() override {
    // A reduce never waited for is finished here, so MPI does not write into freed memory. Not while
    // an exception unwinds: this rank is failing and the others may never join the reduce, so
    // waiting could hang; the next MPI call this process makes is MPI_Abort.
    if (!done_ && std::uncaught_exceptions() == 0)
      MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE);
  }

 private:
  Tensor target_, host_;
  Reduction op_;
  int world_;
  CollectiveWatchdog& dog_;
  bool done_ = false;
};

class MpiCollectives : public Collectives {
 public:
  explicit MpiCollectives(const ProcessGroupOptions& options) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    ENGINE_CHECK(!initialized, "MPI is already initialised: join_processes must be called once per process");
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    ENGINE_CHECK(provided >= MPI_THREAD_FUNNELED,
                 "MPI gives thread level {} but the engine needs MPI_THREAD_FUNNELED ({}): the data loader's threads "
                 "run beside the main thread, which alone calls MPI; use an MPI built with thread support",
                 provided, static_cast<int>(MPI_THREAD_FUNNELED));
    // Errors come back as codes (turned into exceptions), not as MPI's default abort.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    MPI_Comm local;
    check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
              "MPI_Comm_split_type");
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
    dog_ = std::make_unique<CollectiveWatchdog>(rank_, world_, options.timeout_seconds);
  }
  ~MpiCollectives() override {
    dog_.reset();
    MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  int local_rank() const override { return local_rank_; }
  const char* backend() const override { return "mpi"; }

  // Blocking: MPI's own blocking algorithm, about twice as fast as the non-blocking one from 1 MiB up
  // on one machine (bench/results/2026-12-07-cpu-collectives.txt).
  void all_reduce(Tensor& x, Reduction op) override {
    check_reducible(x, op, "all_reduce");
    Tensor host = host_side(x);
    {
      CollectiveWatchdog::Scope scope(*dog_, "all-reduce");
      in_pieces(host, "all_reduce", [&](void* data, int count, MPI_Datatype type) {
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, count, type, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
      });
    }
    finish_reduce(host, x, op, world_);
  }

  std::unique_ptr<PendingReduce> all_reduce_async(Tensor x, Reduction op) override {
    check_reducible(x, op, "all_reduce");
    Tensor host = host_side(x);
    auto pending = std::make_unique<MpiReduce>(x, host, op, world_, *dog_);
    in_pieces(host, "all_reduce", [&](void* data, int count, MPI_Datatype type) {
      MPI_Request request;
      check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, count, type, MPI_SUM, MPI_COMM_WORLD, &request), "MPI_Iallreduce");
      pending->requests.push_back(request);
    });
    return pending;
  }

  Tensor all_gather(const Tensor& x) override {
    check_defined(x, "all_gather", "x");
    ENGINE_CHECK(x.dim() >= 1 && x.is_contiguous(), "all_gather: needs a contiguous (n, ...) tensor, found {}",
                 x.str());
    const Tensor host = host_side(x);
    Shape shape = x.shape();
    shape[0] *= world_;
    Tensor out = Tensor::empty(shape, x.dtype(), Device::cpu());
    const MPI_Datatype type = mpi_type(x.dtype(), "all_gather");
    const int64_t count = host.numel();
    ENGINE_CHECK(count <= INT_MAX, "all_gather: {} elements per rank is more than MPI's count allows", count);
    {
      CollectiveWatchdog::Scope scope(*dog_, "all-gather");
      check_mpi(MPI_Allgather(host.data_ptr(), static_cast<int>(count), type, out.data_ptr(), static_cast<int>(count),
                              type, MPI_COMM_WORLD),
                "MPI_Allgather");
    }
    return x.device().is_cpu() ? out : out.to(x.device());
  }

  void broadcast(Tensor& x, int root) override {
    check_defined(x, "broadcast", "x");
    ENGINE_CHECK(x.is_contiguous(), "broadcast: the tensor must be contiguous, found {}", x.str());
    ENGINE_CHECK(root >= 0 && root < world_, "broadcast: root {} is not a rank of {}", root, world_);
    Tensor host = host_side(x);
    {
      CollectiveWatchdog::Scope scope(*dog_, "broadcast");
      in_pieces(host, "broadcast", [&](void* data, int count, MPI_Datatype type) {
        check_mpi(MPI_Bcast(data, count, type, root, MPI_COMM_WORLD), "MPI_Bcast");
      });
    }
    if (!host.is_same(x)) x.copy_(host);
  }

  void barrier() override {
    CollectiveWatchdog::Scope scope(*dog_, "barrier");
    check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }

  [[noreturn]] void abort(const std::string& why, int status) override {
    const std::string line = rank_message(rank_, world_, why);
    std::fprintf(stderr, "error: %s\n", line.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status);
    std::_Exit(status);  // MPI_Abort does not return; if it did, still end this process
  }

 private:
  int rank_ = 0, world_ = 1, local_rank_ = 0;
  std::unique_ptr<CollectiveWatchdog> dog_;
};

}  // namespace

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);  // allowed before MPI_Init
  std::string version(text, static_cast<size_t>(length));
  const size_t end = version.find_first_of(",\n");  // the name and version, without the build details
  return version.substr(0, end);
}

std::shared_ptr<Collectives> make_mpi_collectives(const ProcessGroupOptions& options) {
  return std::make_shared<MpiCollectives>(options);
}

}  // namespace engine::detail
