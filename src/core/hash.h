// SHA-256 (FIPS 180-4) for file identities in manifests, CRC-32 for checkpoint sections and
// CRC-32C (Castagnoli) for TensorBoard's TFRecord framing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tl {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  std::string hex_digest();  // finalizes; 64 lowercase hex characters

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, size_t n);
std::string sha256_file(const std::string& path);  // throws naming the file on error

// CRC-32 (zlib polynomial); chain with the previous value.
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
// The CRC-32 of A followed by B, from crc(A), crc(B) and B's length (zlib's crc32_combine).
uint32_t crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

// CRC-32C (Castagnoli polynomial, reflected 0x82F63B78); chain with the previous value.
uint32_t crc32c_update(uint32_t crc, const void* data, size_t n);

}  // namespace tl
