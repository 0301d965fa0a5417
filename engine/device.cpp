// device.cpp - parsing device names and the messages for a missing GPU.
#include "engine/device.h"

#include <fmt/format.h>

#include <cstdlib>

#include "engine/check.h"

namespace engine {

Device resolve_device(const std::string& text) {
  if (text == "auto") return cuda_device_count() > 0 ? Device::cuda() : Device::cpu();
  return Device::parse(text);
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string digits = text.substr(5);
    char* end = nullptr;
    const long index = std::strtol(digits.c_str(), &end, 10);
    if (!digits.empty() && *end == '\0' && index >= 0) return cuda(static_cast<int>(index));
  }
  ENGINE_THROW("unknown device '{}': expected 'cpu', 'cuda' or 'cuda:N'", text);
}

std::string Device::str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }

void require_cuda_device(const Device& device, const char* what) {
  ENGINE_CHECK(cuda_is_built(),
               "{} needs {}, but this build has no CUDA backend (nvcc was not found when CMake "
               "configured it). Rebuild on a machine with the CUDA toolkit, or use the CPU "
               "(--device cpu)",
               what, device.str());
  const int count = cuda_device_count();
  ENGINE_CHECK(device.index < count,
               "{} needs {}, but this machine has {} usable GPU(s) (no driver, no device, or "
               "CUDA_VISIBLE_DEVICES hides them). Use the CPU (--device cpu) or run on a GPU machine",
               what, device.str(), count);
}

}  // namespace engine

#if !ENGINE_WITH_CUDA
namespace engine {
bool cuda_is_built() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_device_identity(int device) {
  require_cuda_device(Device::cuda(device), "cuda_device_identity");  // throws: no CUDA in this build
  return {};
}
}  // namespace engine
#endif
