// parallel_for.h - body(i) for every i in [0, count) on up to `threads` std::threads, for work that
// is not OpenMP's (file decoding, image writing: threads that wait on the disk as much as they
// compute). Indices are handed out one at a time, so uneven items balance. The first exception a
// body throws stops the hand-out and is rethrown once every thread has ended; the others are
// dropped. With one thread (or one item) the calling thread does the work.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace engine {

template <typename Body>
void parallel_for(int64_t count, int threads, Body&& body) {
  const int64_t used = std::min<int64_t>(threads, count);
  if (used <= 1) {
    for (int64_t i = 0; i < count; ++i) body(i);
    return;
  }
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int64_t i = next++; i < count && !failed; i = next++) {
      try {
        body(i);
      } catch (...) {
        const std::lock_guard lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  try {
    for (int64_t t = 0; t < used; ++t) pool.emplace_back(work);
  } catch (...) {  // a thread could not start: finish with those that did
    failed = true;
    for (std::thread& th : pool) th.join();
    throw;
  }
  for (std::thread& th : pool) th.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace engine
