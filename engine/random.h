// random.h - reproducible random numbers on CPU and CUDA, the same bits on both.
//
// A Generator is (seed, stream, offset). Draws are laid out on Philox blocks (philox.h): a draw of
// n values uses blocks offset .. offset + ceil(n / 4) - 1 and then advances offset past them, so a
// sequence of draws is a pure function of (seed, stream) and the order of the draws, whichever
// device runs them. Separate streams (one per purpose: augmentation, masking, queue init) never
// overlap.
//
// Element i of a draw (row-major over the tensor's shape) is computed from block offset + i / 4:
//   uniform:   word i % 4; f32 uses its top 24 bits, f64 all 32: low + u * (high - low)
//   normal:    Box-Muller on the word pair (i % 4) & ~1: the even element takes r cos, the odd r sin
//   bernoulli: 1 when the 24-bit uniform of word i % 4 is below p, else 0
//   randperm:  the indices 0..n-1 sorted by a 64-bit key per index (two words of block
//              offset + i / 2), ties broken by index.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace engine {

class Generator {
 public:
  explicit Generator(uint64_t seed, uint64_t stream = 0) : seed_(seed), stream_(stream) {}

  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }
  uint64_t offset() const { return offset_; }  // the next unused Philox block
  void set_offset(uint64_t offset) { offset_ = offset; }
  // Reserves `blocks` Philox blocks for one draw and returns the first.
  uint64_t reserve(uint64_t blocks) {
    const uint64_t first = offset_;
    offset_ += blocks;
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t stream_;
  uint64_t offset_ = 0;
};

// In-place fills (f32 or f64; bernoulli also writes u8/i32/i64), on the tensor's device.
void uniform_(Tensor& t, Generator& gen, double low = 0.0, double high = 1.0);
void normal_(Tensor& t, Generator& gen, double mean = 0.0, double std = 1.0);
void bernoulli_(Tensor& t, Generator& gen, double p);
// A random permutation of 0..n-1 as an i64 tensor on `device`.
Tensor randperm(int64_t n, Generator& gen, Device device = Device::cpu());
// The same with the stream moved by a value in memory: the permutation that
// randperm(n, Generator(gen.seed(), gen.stream() + offset), device) gives (stream + offset modulo
// 2^64), where offset is the value of `stream_offset`, a one-element i64 tensor on `device`. The
// kernel reads it, the host never does, so a step captured in a CUDA graph draws a new permutation
// at each replay when the offset (a step counter on the device) changes. gen's counter advances
// as randperm's does (ceil(n / 2) blocks), whatever the offset.
Tensor randperm(int64_t n, Generator& gen, Device device, const Tensor& stream_offset);
// The inverse of a permutation (1-D i64), on its device: inverse[perm[i]] = i. Shuffle BN undoes
// its randperm with it without reading the permutation back to the host. perm must be a
// permutation of 0..n-1 (a randperm); it is not checked (that would read it back).
Tensor inverse_permutation(const Tensor& perm);

// Shuffles a host vector in place with randperm's permutation.
template <typename T>
void shuffle(std::vector<T>& items, Generator& gen) {
  const std::vector<int64_t> perm = randperm(static_cast<int64_t>(items.size()), gen).to_vector<int64_t>();
  std::vector<T> shuffled;
  shuffled.reserve(items.size());
  for (int64_t i : perm) shuffled.push_back(items[i]);
  items.swap(shuffled);
}

// Raw level: the same arguments on both backends, `out` contiguous with n elements.
enum class RandomKind : uint8_t { Uniform, Normal, Bernoulli };
struct RandomParams {
  RandomKind kind;
  uint64_t seed, stream, first_block;
  double a, b;  // uniform: low, high; normal: mean, std; bernoulli: p, unused
};
void random_fill_cpu(void* out, DType dtype, int64_t n, const RandomParams& params);
void random_fill_cuda(int device, void* out, DType dtype, int64_t n, const RandomParams& params);
// randperm's stream is stream + *stream_offset (read where the permutation is computed: the host for
// the CPU, the device for CUDA); stream_offset may be null, meaning 0.
void randperm_cpu(int64_t* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t first_block,
                  const int64_t* stream_offset);
void randperm_cuda(int device, int64_t* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t first_block,
                   const int64_t* stream_offset);
void inverse_permutation_cpu(int64_t* inverse, const int64_t* perm, int64_t n);
void inverse_permutation_cuda(int device, int64_t* inverse, const int64_t* perm, int64_t n);
// randperm's stable sort of n < 2^31 (key, value) pairs by the whole 64-bit key: CUB's radix sort
// (random_sort_cub.cu), or std::stable_sort in the CUDA emulation build.
void sort_pairs_by_key_cuda(int device, const uint64_t* keys_in, uint64_t* keys_out, const int64_t* values_in,
                            int64_t* values_out, int64_t n);

}  // namespace engine
