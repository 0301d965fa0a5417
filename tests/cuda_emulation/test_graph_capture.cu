// test_graph_capture.cu - CUDA graphs in the emulator (emulation build only): stream capture records
// the work issued to the capturing stream without running it, a graph replays it as often as it is
// launched (reading memory as it is then, with the kernel arguments of the capture), the calls that
// would wait for or read the captured work are refused and invalidate the capture, other threads'
// work runs as before, and a fault in a replayed kernel is reported naming the kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "engine/cuda_common.cuh"
#include "engine/cuda_emulation/device_memory.h"
#include "engine/cuda_emulation/simt.h"
#include "ops/matmul.h"
#include "tests/common/test_helpers.h"

namespace engine {
namespace {

using testing::error_of;
namespace emu = cuda::emulation;

// Device memory of exactly n floats, written from the host (outside any capture).
struct DeviceFloats {
  float* ptr = nullptr;
  size_t n;
  DeviceFloats(size_t count, float fill) : n(count) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ptr), n * sizeof(float)), cudaSuccess);
    write(std::vector<float>(n, fill));
  }
  ~DeviceFloats() { cudaFree(ptr); }
  void write(const std::vector<float>& host) {
    ASSERT_EQ(host.size(), n);
    ASSERT_EQ(cudaMemcpy(ptr, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<float> read() const {
    std::vector<float> host(n);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
};

struct PinnedFloats {
  float* ptr = nullptr;
  explicit PinnedFloats(size_t n) {
    EXPECT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&ptr), n * sizeof(float), cudaHostAllocDefault), cudaSuccess);
  }
  ~PinnedFloats() { cudaFreeHost(ptr); }
};

cudaStreamCaptureStatus capture_status(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  EXPECT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
  return status;
}

__global__ void add_scalar_kernel(float* out, const float* in, float s, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) out[i] = in[i] + s;
}

// Planted bug: writes element n of an n-element buffer.
__global__ void write_past_end_kernel(float* out, int64_t n) {
  if (threadIdx.x == 0) out[n] = 1.0f;
}

void launch_add_scalar(float* out, const float* in, float s, int64_t n, cudaStream_t stream) {
  cuda::launch("add_scalar_kernel", add_scalar_kernel, 1, 32, 0, stream, out, in, s, n);
}

// Ends the capture of `stream` and instantiates it; the graph itself is destroyed at once (the exec
// keeps what it replays).
cudaGraphExec_t end_and_instantiate(cudaStream_t stream) {
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  EXPECT_NE(graph, nullptr);
  cudaGraphExec_t exec = nullptr;
  EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
  return exec;
}

// A memset, a kernel, a device-to-device copy, a pinned upload and a GEMM: nothing runs at capture;
// every replay runs all of them on the memory as it is then, with the kernel scalar of the capture.
TEST(CudaGraphEmulation, CapturedWorkRunsOnlyAtEachReplay) {
  const cudaStream_t s = cuda::stream(0);
  DeviceFloats zeroed(8, 7.0f), x(8, 1.0f), y(8, -5.0f), y_copy(8, -5.0f), uploaded(4, -5.0f);
  DeviceFloats a(6, 0.0f), b(6, 0.0f), c(4, -5.0f);
  a.write({1, 2, 3, 4, 5, 6});  // 2 x 3
  b.write({1, 0, 0, 1, 1, 1});  // 3 x 2
  PinnedFloats pinned(4);
  for (int i = 0; i < 4; ++i) pinned.ptr[i] = 10.0f + i;

  const emu::GraphCounters graphs_before = emu::graph_counters();
  const int64_t launches_before = emu::counters().launches;
  float scalar = 3.0f;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(capture_status(s), cudaStreamCaptureStatusActive);
  ASSERT_EQ(cudaMemsetAsync(zeroed.ptr, 0, 8 * sizeof(float), s), cudaSuccess);
  launch_add_scalar(y.ptr, x.ptr, scalar, 8, s);
  ASSERT_EQ(cudaMemcpyAsync(y_copy.ptr, y.ptr, 8 * sizeof(float), cudaMemcpyDeviceToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(uploaded.ptr, pinned.ptr, 4 * sizeof(float), cudaMemcpyHostToDevice, s), cudaSuccess);
  matmul_forward_cuda<float>(0, c.ptr, a.ptr, b.ptr, 2, 2, 3, false, false, 3, 2, 2);
  void* grown = nullptr;  // the caching allocator may grow its pool during a capture
  ASSERT_EQ(cudaMalloc(&grown, 1024), cudaSuccess);
  EXPECT_EQ(capture_status(s), cudaStreamCaptureStatusActive);
  const cudaGraphExec_t exec = end_and_instantiate(s);
  EXPECT_EQ(capture_status(s), cudaStreamCaptureStatusNone);
  ASSERT_EQ(cudaFree(grown), cudaSuccess);

  // Nothing ran.
  EXPECT_EQ(emu::counters().launches, launches_before);
  EXPECT_EQ(zeroed.read(), std::vector<float>(8, 7.0f));
  EXPECT_EQ(y.read(), std::vector<float>(8, -5.0f));
  EXPECT_EQ(y_copy.read(), std::vector<float>(8, -5.0f));
  EXPECT_EQ(uploaded.read(), std::vector<float>(4, -5.0f));
  EXPECT_EQ(c.read(), std::vector<float>(4, -5.0f));
  const emu::GraphCounters captured = emu::graph_counters();
  EXPECT_EQ(captured.graphs_captured - graphs_before.graphs_captured, 1);
  EXPECT_EQ(captured.nodes_recorded - graphs_before.nodes_recorded, 5);
  EXPECT_EQ(captured.replays, graphs_before.replays);

  for (int replay = 0; replay < 2; ++replay) {
    SCOPED_TRACE("replay " + std::to_string(replay));
    zeroed.write(std::vector<float>(8, 7.0f));
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(zeroed.read(), std::vector<float>(8, 0.0f));
    EXPECT_EQ(y.read(), std::vector<float>(8, 4.0f));
    EXPECT_EQ(y_copy.read(), std::vector<float>(8, 4.0f));
    EXPECT_EQ(uploaded.read(), (std::vector<float>{10, 11, 12, 13}));
    EXPECT_EQ(c.read(), (std::vector<float>{4, 5, 10, 11}));
  }

  // A graph reads memory when it runs: new inputs give new outputs. The scalar was passed by value
  // at capture: changing the host variable changes nothing.
  x.write(std::vector<float>(8, 10.0f));
  for (int i = 0; i < 4; ++i) pinned.ptr[i] = 20.0f + i;
  a.write({0, 0, 1, 1, 0, 0});
  scalar = 100.0f;
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(y.read(), std::vector<float>(8, 13.0f));
  EXPECT_EQ(y_copy.read(), std::vector<float>(8, 13.0f));
  EXPECT_EQ(uploaded.read(), (std::vector<float>{20, 21, 22, 23}));
  EXPECT_EQ(c.read(), (std::vector<float>{1, 1, 1, 0}));

  const emu::GraphCounters replayed = emu::graph_counters();
  EXPECT_EQ(replayed.replays - captured.replays, 3);
  EXPECT_EQ(replayed.nodes_replayed - captured.nodes_replayed, 15);
  EXPECT_EQ(emu::counters().launches - launches_before, 3) << "each replay launches the captured kernel once";
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
}

// A download to pinned memory recorded in a graph lands at replay, and only once something follows
// it or the host waits, as an eager one: a host read without a synchronisation is still caught. An
// event recorded in the graph takes its position when the graph runs.
TEST(CudaGraphEmulation, PinnedDownloadsAndEventsTakeEffectAtReplay) {
  const cudaStream_t s = cuda::stream(0);
  DeviceFloats x(4, 3.0f);
  PinnedFloats first(4), second(4);
  for (int i = 0; i < 4; ++i) first.ptr[i] = second.ptr[i] = -1.0f;
  cudaEvent_t after_first = nullptr, after_second = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&after_first, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&after_second, cudaEventDisableTiming), cudaSuccess);

  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(first.ptr, x.ptr, 16, cudaMemcpyDeviceToHost, s), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(after_first, s), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(second.ptr, x.ptr, 16, cudaMemcpyDeviceToHost, s), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(after_second, s), cudaSuccess);
  const cudaGraphExec_t exec = end_and_instantiate(s);
  EXPECT_EQ(first.ptr[0], -1.0f) << "the capture must not copy";
  EXPECT_EQ(second.ptr[0], -1.0f) << "the capture must not copy";

  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  EXPECT_EQ(first.ptr[0], 3.0f) << "the second download ran the first, as when issued eagerly";
  EXPECT_TRUE(std::isnan(second.ptr[0])) << "read before a synchronisation: the download has not arrived";
  ASSERT_EQ(cudaEventSynchronize(after_first), cudaSuccess);
  EXPECT_TRUE(std::isnan(second.ptr[0])) << "the download after the event is not complete when the event is";
  ASSERT_EQ(cudaEventSynchronize(after_second), cudaSuccess);
  EXPECT_EQ(second.ptr[3], 3.0f) << "the event was recorded at replay, after the download";
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(after_first), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(after_second), cudaSuccess);
}

// Each call that would wait for or read the captured work (which has not run) is refused with
// cudaErrorStreamCaptureUnsupported, does nothing, and invalidates the capture: the next captured
// launch fails, and ending the capture gives cudaErrorStreamCaptureInvalidated and no graph.
TEST(CudaGraphEmulation, ReadsAndSynchronisationsInsideACaptureInvalidateIt) {
  const cudaStream_t s = cuda::stream(0);
  DeviceFloats x(4, 2.0f), y(4, -1.0f);
  PinnedFloats pinned(4);
  std::vector<float> pageable(4, 9.0f);
  cudaEvent_t event = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), cudaSuccess);

  struct Refused {
    const char* name;
    std::function<cudaError_t()> call;
  };
  const std::vector<Refused> calls = {
      {"cudaStreamSynchronize of the capturing stream", [&] { return cudaStreamSynchronize(s); }},
      {"cudaStreamSynchronize of the legacy stream", [&] { return cudaStreamSynchronize(nullptr); }},
      {"cudaEventSynchronize of an event recorded in the capture",
       [&] {
         EXPECT_EQ(cudaEventRecord(event, s), cudaSuccess);
         return cudaEventSynchronize(event);
       }},
      {"a synchronous cudaMemcpy", [&] { return cudaMemcpy(y.ptr, x.ptr, 16, cudaMemcpyDeviceToDevice); }},
      {"an upload from pageable memory",
       [&] { return cudaMemcpyAsync(y.ptr, pageable.data(), 16, cudaMemcpyHostToDevice, s); }},
      {"a download to pageable memory",
       [&] { return cudaMemcpyAsync(pageable.data(), x.ptr, 16, cudaMemcpyDeviceToHost, s); }},
      {"cudaFree", [&] { return cudaFree(x.ptr); }},
      {"cudaFreeHost", [&] { return cudaFreeHost(pinned.ptr); }},
      {"a copy on another stream",
       [&] { return cudaMemcpyAsync(y.ptr, x.ptr, 16, cudaMemcpyDeviceToDevice, cuda::copy_stream(0)); }},
  };
  for (const Refused& refused : calls) {
    SCOPED_TRACE(refused.name);
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    launch_add_scalar(y.ptr, x.ptr, 1.0f, 4, s);
    EXPECT_EQ(refused.call(), cudaErrorStreamCaptureUnsupported);
    EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureUnsupported);
    EXPECT_EQ(capture_status(s), cudaStreamCaptureStatusInvalidated);
    const std::string next_launch = error_of([&] { launch_add_scalar(y.ptr, x.ptr, 1.0f, 4, s); });
    EXPECT_NE(next_launch.find("cudaErrorStreamCaptureInvalidated"), std::string::npos) << next_launch;
    cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(&graph);  // must be overwritten
    EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(graph, nullptr);
    EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureInvalidated);
    // The refused call did nothing, the captured launch never ran, and the device works as before.
    EXPECT_EQ(x.read(), std::vector<float>(4, 2.0f));
    EXPECT_EQ(y.read(), std::vector<float>(4, -1.0f));
    EXPECT_EQ(pageable, std::vector<float>(4, 9.0f));
  }
  pinned.ptr[0] = 5.0f;  // still allocated: cudaFreeHost was refused

  // Through CUDA_CHECK the engine's error names the call and says why.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const std::string m = error_of([&] { CUDA_CHECK(cudaStreamSynchronize(s)); });
  EXPECT_NE(m.find("cudaStreamSynchronize(s)"), std::string::npos) << m;
  EXPECT_NE(m.find("returned 900 (operation not permitted when stream is capturing)"), std::string::npos) << m;
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  EXPECT_EQ(cudaEventDestroy(event), cudaSuccess);
}

// A tensor's host read, or an upload of host values, inside a capture is refused at the copy.
TEST(CudaGraphEmulation, TensorHostReadsAndUploadsInsideACaptureAreRefused) {
  const cudaStream_t s = cuda::stream(0);
  const Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}, Device::cuda(0));
  const std::vector<std::function<void()>> refused = {
      [&] { t.to_vector<float>(); },
      [&] { Tensor::from_vector(std::vector<float>{4, 5}, {2}).to(Device::cuda(0)); },
  };
  for (size_t i = 0; i < refused.size(); ++i) {
    SCOPED_TRACE(i == 0 ? "to_vector" : "from_vector(...).to(cuda)");
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    const std::string m = error_of(refused[i]);
    EXPECT_NE(m.find("cudaMemcpyAsync"), std::string::npos) << m;
    EXPECT_NE(m.find("operation not permitted when stream is capturing"), std::string::npos) << m;
    EXPECT_EQ(capture_status(s), cudaStreamCaptureStatusInvalidated);
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
    cudaGetLastError();
  }
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2, 3}));
}

// Another host thread's copies (the data loader's) run at once while this thread captures, and its
// synchronous calls are allowed; the capture stays valid.
TEST(CudaGraphEmulation, AnotherThreadsCopiesRunDuringACapture) {
  const cudaStream_t s = cuda::stream(0), copies = cuda::copy_stream(0);
  DeviceFloats landed(4, -1.0f), x(4, 1.0f), y(4, 0.0f);
  PinnedFloats pinned(4);
  for (int i = 0; i < 4; ++i) pinned.ptr[i] = 30.0f + i;

  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  launch_add_scalar(y.ptr, x.ptr, 1.0f, 4, s);
  std::vector<float> seen(4, 0.0f);
  std::thread loader([&] {
    EXPECT_EQ(cudaMemcpyAsync(landed.ptr, pinned.ptr, 16, cudaMemcpyHostToDevice, copies), cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(copies), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(seen.data(), landed.ptr, 16, cudaMemcpyDeviceToHost), cudaSuccess);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    EXPECT_EQ(cudaStreamIsCapturing(copies, &status), cudaSuccess);
    EXPECT_EQ(status, cudaStreamCaptureStatusNone);
  });
  loader.join();
  EXPECT_EQ(seen, (std::vector<float>{30, 31, 32, 33}));
  EXPECT_EQ(capture_status(s), cudaStreamCaptureStatusActive);
  const cudaGraphExec_t exec = end_and_instantiate(s);
  EXPECT_EQ(y.read(), std::vector<float>(4, 0.0f));
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  EXPECT_EQ(y.read(), std::vector<float>(4, 2.0f));
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
}

// A stream that is not capturing may not wait for an event recorded in the capture (on a GPU it
// would join the capture); the event's owner sees its capture invalidated.
TEST(CudaGraphEmulation, WaitingOnACapturedEventFromAnotherStreamIsRefused) {
  const cudaStream_t s = cuda::stream(0);
  cudaEvent_t event = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(event, s), cudaSuccess);
  EXPECT_EQ(cudaStreamWaitEvent(s, event, 0), cudaSuccess) << "the capturing stream may wait for its own event";
  cudaError_t waited = cudaSuccess;
  std::thread loader([&] { waited = cudaStreamWaitEvent(cuda::copy_stream(0), event, 0); });
  loader.join();
  EXPECT_EQ(waited, cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(capture_status(s), cudaStreamCaptureStatusInvalidated);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  // Once the capture has ended, the event is an ordinary one again.
  EXPECT_EQ(cudaStreamWaitEvent(cuda::copy_stream(0), event, 0), cudaSuccess);
  EXPECT_EQ(cudaEventSynchronize(event), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(event), cudaSuccess);
}

// A replayed kernel is checked as a launch: a write past a buffer's end throws naming the kernel and
// the graph node; a buffer freed after the capture is refused at replay. A bad launch configuration
// fails at its launch line during the capture, as it would when run.
TEST(CudaGraphEmulation, ReplayedKernelsAreCheckedAsLaunches) {
  const cudaStream_t s = cuda::stream(0);
  DeviceFloats buffer(8, 0.0f);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  cuda::launch("write_past_end_kernel", write_past_end_kernel, 1, 32, 0, s, buffer.ptr, int64_t{8});
  const std::string bad_config = error_of(
      [&] { cuda::launch("write_past_end_kernel", write_past_end_kernel, 1, 2048, 0, s, buffer.ptr, int64_t{8}); });
  EXPECT_NE(bad_config.find("cudaErrorInvalidConfiguration"), std::string::npos) << bad_config;
  EXPECT_NE(bad_config.find("test_graph_capture.cu"), std::string::npos) << bad_config;
  const cudaGraphExec_t exec = end_and_instantiate(s);
  const std::string fault = error_of([&] { cudaGraphLaunch(exec, s); });
  EXPECT_NE(fault.find("write_past_end_kernel wrote past the end"), std::string::npos) << fault;
  EXPECT_NE(fault.find("byte 32"), std::string::npos) << fault;
  EXPECT_NE(fault.find("cudaGraphLaunch: node 1 of 1, write_past_end_kernel, captured at"), std::string::npos)
      << fault;
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);

  float* freed = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&freed), 64), cudaSuccess);
  DeviceFloats x(4, 1.0f);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  launch_add_scalar(freed, x.ptr, 1.0f, 4, s);
  const cudaGraphExec_t uses_freed = end_and_instantiate(s);
  ASSERT_EQ(cudaFree(freed), cudaSuccess);
  const std::string after_free = error_of([&] { cudaGraphLaunch(uses_freed, s); });
  EXPECT_NE(after_free.find("argument 0 of add_scalar_kernel"), std::string::npos) << after_free;
  EXPECT_EQ(cudaGraphExecDestroy(uses_freed), cudaSuccess);
}

// A library stand-in recorded in a graph checks its operands at replay.
TEST(CudaGraphEmulation, ReplayedLibraryCallsCheckTheirOperands) {
  const cudaStream_t s = cuda::stream(0);
  DeviceFloats a(6, 1.0f), b(6, 1.0f);
  float* c = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&c), 16), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  matmul_forward_cuda<float>(0, c, a.ptr, b.ptr, 2, 2, 3, false, false, 3, 2, 2);
  const cudaGraphExec_t exec = end_and_instantiate(s);
  ASSERT_EQ(cudaFree(c), cudaSuccess);
  const std::string m = error_of([&] { cudaGraphLaunch(exec, s); });
  EXPECT_NE(m.find("cublasGemm (CPU stand-in) needs 16 bytes of device memory for its operand C"), std::string::npos)
      << m;
  EXPECT_NE(m.find("node 1 of 1"), std::string::npos) << m;
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
}

// The runtime's answers around capture: names and strings of the new errors, capture on the legacy
// stream or twice, ending where no capture was begun or from another thread, empty handles.
TEST(CudaGraphEmulation, CaptureCallsAnswerAsTheRuntime) {
  EXPECT_STREQ(cudaGetErrorName(cudaErrorStreamCaptureUnsupported), "cudaErrorStreamCaptureUnsupported");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorStreamCaptureUnsupported), "operation not permitted when stream is capturing");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorStreamCaptureInvalidated),
               "operation failed due to a previous error during capture");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorStreamCaptureUnmatched), "the capture was not initiated in this stream");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorStreamCaptureWrongThread),
               "attempt to terminate a thread-local capture sequence from another thread");
  EXPECT_EQ(static_cast<int>(cudaErrorStreamCaptureWrongThread), 908);

  const cudaStream_t s = cuda::stream(0);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeThreadLocal), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureUnmatched);
  EXPECT_EQ(cudaStreamBeginCapture(s, static_cast<cudaStreamCaptureMode>(7)), cudaErrorInvalidValue);

  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaErrorIllegalState);
  cudaError_t ended_elsewhere = cudaSuccess;
  std::thread other([&] {
    cudaGraph_t g = nullptr;
    ended_elsewhere = cudaStreamEndCapture(s, &g);
  });
  other.join();
  EXPECT_EQ(ended_elsewhere, cudaErrorStreamCaptureWrongThread);
  EXPECT_EQ(capture_status(s), cudaStreamCaptureStatusActive);
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);  // an empty graph
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph), cudaSuccess);
  EXPECT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  EXPECT_EQ(cudaGraphInstantiate(&exec, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGraphLaunch(nullptr, s), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
  cudaGetLastError();
}

}  // namespace
}  // namespace engine
