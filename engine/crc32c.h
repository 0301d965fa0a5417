// crc32c.h - CRC-32C (Castagnoli), the checksum of TFRecord files (TensorBoard event files).
//
// The CRC with the reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF (as
// in iSCSI, ext4 and TFRecord). Check value: crc32c("123456789") = 0xE3069283. `init` continues
// a running CRC: crc32c(b, nb, crc32c(a, na)) == crc32c(a then b).
//
// TFRecord stores the CRC masked, because a CRC over data that itself embeds CRCs is weak:
//   masked_crc32c(crc) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8   (mod 2^32)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace engine {

uint32_t crc32c(const void* data, size_t size, uint32_t init = 0);
// No `init` here: crc32c("abc", crc) would pick the pointer overload and read `crc` bytes.
inline uint32_t crc32c(std::string_view bytes) { return crc32c(bytes.data(), bytes.size()); }

constexpr uint32_t masked_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

}  // namespace engine
