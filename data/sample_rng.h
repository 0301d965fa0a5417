// sample_rng.h - the random numbers of one sample's augmentation, a pure function of
// (seed, epoch, dataset index), so a batch is the same whatever thread made it and whatever
// the thread count.
//
// Draws are consecutive 32-bit words of one Philox stream (engine/philox.h): key = seed,
// counter = (word / 4, stream), with stream = 2^63 | epoch << 40 | index. The top bit keeps these
// streams apart from the engine Generator's small stream numbers (queue init, masking, ...).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/philox.h"

namespace engine::data {

class SampleRng {
 public:
  // `attempt` > 0 gives the fresh draws of a replacement sample (the loader's stand-in for an
  // undecodable file), 2^24 words further along the same stream.
  SampleRng(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t attempt = 0)
      : seed_(seed),
        stream_((uint64_t{1} << 63) | (epoch << 40) | (index & ((uint64_t{1} << 40) - 1))),
        word_(attempt << 24) {}

  uint32_t next_word() {
    if (word_ % 4 == 0) philox::block_words(seed_, stream_, word_ / 4, block_);
    return block_[word_++ % 4];
  }
  // Uniform in [0, 1) with 32 random bits.
  double uniform() { return next_word() * 0x1p-32; }
  double uniform(double low, double high) { return low + uniform() * (high - low); }
  // Uniform integer in [low, high] (both included). The bias of a 32-bit draw is below 2^-20 for the
  // ranges used here (image sizes).
  int64_t randint(int64_t low, int64_t high) {
    const int64_t span = high - low + 1;
    return low + std::min<int64_t>(span - 1, static_cast<int64_t>(uniform() * static_cast<double>(span)));
  }
  bool bernoulli(double p) { return uniform() < p; }

 private:
  uint64_t seed_, stream_;
  uint64_t word_;
  uint32_t block_[4] = {0, 0, 0, 0};
};

}  // namespace engine::data
