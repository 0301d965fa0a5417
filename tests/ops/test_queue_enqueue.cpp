// test_queue_enqueue.cpp - MoCo's enqueue against a plain loop of the reference's rule, over many
// enqueues that wrap around the queue, on the CPU and CUDA; that CUDA never reads the pointer back
// to the host; and the refusals with what they say.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/autograd.h"
#include "ops/queue_enqueue.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

// The reference, on host vectors: queue[:, ptr:ptr + N] = keys.T; ptr = (ptr + N) % K.
void enqueue_reference(std::vector<double>& queue, const std::vector<double>& keys, int64_t& ptr, int64_t D,
                       int64_t K, int64_t N) {
  for (int64_t j = 0; j < N; ++j)
    for (int64_t d = 0; d < D; ++d) queue[d * K + ptr + j] = keys[j * D + d];
  ptr = (ptr + N) % K;
}

// `enqueues` enqueues of fresh keys into a (D, K) queue on `device`, each checked against the
// reference (values and pointer); the pointer read only after each step's op, to compare.
void check_against_reference(Device device, DType dtype, int64_t D, int64_t K, int64_t N, int enqueues) {
  const Tensor queue0 = make_input({{D, K}}, 1, dtype, Device::cpu());
  Tensor queue = queue0.to(device).clone();
  Tensor ptr = Tensor::zeros({1}, DType::i64, device);
  std::vector<double> expected = queue0.to(DType::f64).to_vector<double>();
  int64_t expected_ptr = 0;
  for (int e = 0; e < enqueues; ++e) {
    const Tensor keys = make_input({{N, D}}, 10 + e, dtype, Device::cpu());
    queue_enqueue(queue, keys.to(device), ptr);
    enqueue_reference(expected, keys.to(DType::f64).to_vector<double>(), expected_ptr, D, K, N);
    ASSERT_EQ(queue.to(DType::f64).to_vector<double>(), expected) << device.str() << ", after enqueue " << e + 1;
    ASSERT_EQ(ptr.to_vector<int64_t>()[0], expected_ptr) << device.str() << ", after enqueue " << e + 1;
  }
}

TEST(QueueEnqueue, MatchesTheReferenceLoopOverWrappingEnqueuesOnTheCpu) {
  // K / N = 4 slots, 9 enqueues: the pointer wraps twice. f64 and f32 (values copied exactly).
  check_against_reference(Device::cpu(), DType::f64, 7, 20, 5, 9);
  check_against_reference(Device::cpu(), DType::f32, 3, 6, 6, 2);
}

TEST(QueueEnqueue, CudaMatchesTheReferenceLoopOverWrappingEnqueues) {
  SKIP_WITHOUT_CUDA();
  // D * N = 1295 values: several blocks, the last one partial.
  check_against_reference(Device::cuda(), DType::f32, 37, 140, 35, 6);
  check_against_reference(Device::cuda(), DType::f64, 7, 20, 5, 5);
}

TEST(QueueEnqueue, CudaReadsAndAdvancesThePointerWithoutAHostRead) {
  SKIP_WITHOUT_CUDA();
  const int64_t D = 8, K = 32, N = 8;
  Tensor queue = Tensor::zeros({D, K}, DType::f32, Device::cuda());
  Tensor ptr = Tensor::zeros({1}, DType::i64, Device::cuda());
  const Tensor keys = Tensor::ones({N, D}, DType::f32, Device::cuda());
  const uint64_t reads = host_read_count();
  for (int e = 0; e < 3; ++e) queue_enqueue(queue, keys, ptr);
  EXPECT_EQ(host_read_count(), reads) << "an enqueue must not wait for the device";
  EXPECT_EQ(ptr.to_vector<int64_t>()[0], 24);
  // Columns 0..23 written, 24..31 untouched.
  const std::vector<float> q = queue.to_vector<float>();
  for (int64_t d = 0; d < D; ++d)
    for (int64_t k = 0; k < K; ++k) EXPECT_EQ(q[d * K + k], k < 24 ? 1.0f : 0.0f) << d << ", " << k;
}

TEST(QueueEnqueue, KeysThatShareTheQueuesMemoryAreCopiedFirst) {
  // keys = the queue's first two columns, transposed: (2, D) views of the queue written at 2..3.
  const int64_t D = 3, K = 4;
  Tensor queue = make_input({{D, K}}, 2, DType::f64, Device::cpu());
  const std::vector<double> before = queue.to_vector<double>();
  Tensor ptr = Tensor::full({1}, 2.0, DType::i64);
  queue_enqueue(queue, queue.slice(1, 0, 2).transpose(0, 1), ptr);
  const std::vector<double> after = queue.to_vector<double>();
  for (int64_t d = 0; d < D; ++d) {
    EXPECT_EQ(after[d * K + 2], before[d * K + 0]);
    EXPECT_EQ(after[d * K + 3], before[d * K + 1]);
  }
  EXPECT_EQ(ptr.to_vector<int64_t>()[0], 0);
}

TEST(QueueEnqueue, RefusesWhatItCannotEnqueueAndSaysWhy) {
  Tensor queue = Tensor::zeros({4, 12}), ptr = Tensor::zeros({1}, DType::i64);
  const Tensor keys = Tensor::zeros({3, 4});
  std::string msg = error_of([&] { queue_enqueue(queue, Tensor::zeros({5, 4}), ptr); });
  EXPECT_NE(msg.find("K = 12 must be a multiple of the number of keys N = 5"), std::string::npos) << msg;
  msg = error_of([&] { queue_enqueue(queue, Tensor::zeros({3, 5}), ptr); });
  EXPECT_NE(msg.find("expected keys of shape (N, 4)"), std::string::npos) << msg;
  msg = error_of([&] { queue_enqueue(queue, Tensor::zeros({0, 4}), ptr); });
  EXPECT_NE(msg.find("N = 0"), std::string::npos) << msg;
  Tensor flat = Tensor::zeros({48});
  msg = error_of([&] { queue_enqueue(flat, keys, ptr); });
  EXPECT_NE(msg.find("expected a (D, K) queue"), std::string::npos) << msg;
  msg = error_of([&] { queue_enqueue(queue, Tensor::zeros({3, 4}, DType::f64), ptr); });
  EXPECT_NE(msg.find("dtype"), std::string::npos) << msg;
  Tensor ptr32 = Tensor::zeros({1}, DType::i32), two = Tensor::zeros({2}, DType::i64);
  msg = error_of([&] { queue_enqueue(queue, keys, ptr32); });
  EXPECT_NE(msg.find("one-element i64"), std::string::npos) << msg;
  msg = error_of([&] { queue_enqueue(queue, keys, two); });
  EXPECT_NE(msg.find("one-element i64"), std::string::npos) << msg;
  Tensor strided = Tensor::zeros({4, 24}).slice(1, 0, 24, 2);
  msg = error_of([&] { queue_enqueue(strided, keys, ptr); });
  EXPECT_NE(msg.find("must be contiguous"), std::string::npos) << msg;
  Tensor iqueue = Tensor::zeros({4, 12}, DType::i32);
  EXPECT_THROW(queue_enqueue(iqueue, Tensor::zeros({3, 4}, DType::i32), ptr), Error) << "integer queue";
  Tensor grad_keys = Tensor::zeros({3, 4});
  grad_keys.requires_grad_(true);
  msg = error_of([&] { queue_enqueue(queue, grad_keys, ptr); });
  EXPECT_NE(msg.find("require grad"), std::string::npos) << msg;
  {
    NoGradGuard no_grad;
    EXPECT_NO_THROW(queue_enqueue(queue, grad_keys, ptr)) << "keys of a no-grad step";
  }
  EXPECT_EQ(ptr.to_vector<int64_t>()[0], 3) << "only the accepted enqueue moved the pointer";
  if (cuda_device_count() > 0) {
    Tensor ptr_gpu = ptr.to(Device::cuda());
    msg = error_of([&] { queue_enqueue(queue, keys, ptr_gpu); });
    EXPECT_NE(msg.find("the queue's device"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace engine::testing
