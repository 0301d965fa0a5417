// device.h - where a tensor lives, and what this build and this machine offer.
//
// Device is a value: {CPU} or {CUDA, index}. Whether CUDA code exists is a build property
// (ENGINE_WITH_CUDA); whether a GPU is present is a machine property (cuda_device_count()).
// A CUDA build runs its CPU work on a machine with no GPU; any CUDA request there, or in a build
// without CUDA, throws one clear engine::Error that says which of the two is missing.
#pragma once

#include <cstdint>
#include <string>

namespace engine {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;  // the GPU ordinal for CUDA; 0 for CPU

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  // "cpu", "cuda" or "cuda:N"; throws with the accepted forms otherwise.
  static Device parse(const std::string& text);

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const;
};

// What a --device flag names: "auto" (a GPU when there is one, else the CPU) or Device::parse's forms.
Device resolve_device(const std::string& text);

// True when this binary was compiled with the CUDA backend.
bool cuda_is_built();
// Number of usable GPUs: 0 in a build without CUDA, without a driver, or without a device.
int cuda_device_count();
// Which physical GPU cuda:`device` is, to tell whether two processes share one: its PCI bus id
// ("0000:1b:00.0"); in the emulation build, this process's own emulated device.
std::string cuda_device_identity(int device);
// Throws unless `device` is a CUDA device this build and machine can use. `what` names the caller
// ("add", "Tensor::to") so the message says who needed the GPU.
void require_cuda_device(const Device& device, const char* what);

}  // namespace engine

// The one way ops reach their CUDA code: checks that the GPU is usable, then runs the statement.
// In a build without CUDA the statement is compiled out and the check throws, so every CUDA entry
// point fails with the same clear message.
//   ENGINE_DISPATCH_CUDA(out.device(), "add", add_forward_cuda(...));
#if ENGINE_WITH_CUDA
#define ENGINE_DISPATCH_CUDA(device, what, ...)     \
  do {                                              \
    ::engine::require_cuda_device((device), (what)); \
    __VA_ARGS__;                                    \
  } while (0)
#else
#define ENGINE_DISPATCH_CUDA(device, what, ...) ::engine::require_cuda_device((device), (what))
#endif
