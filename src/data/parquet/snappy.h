// Snappy (raw block format, as parquet pages use it) decompression. Our own decoder: the
// format is a varint length and a stream of literal and back-reference elements, and owning
// it keeps libsnappy out of the build (it is absent on some GPU images).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tl {

// The uncompressed length the block announces; throws on a malformed varint.
size_t snappy_length(const uint8_t* src, size_t n);
// Decompresses a whole block into out (resized to its announced length, which must equal
// expected); throws "snappy: ..." naming what is wrong on corrupt input.
void snappy_decompress(const uint8_t* src, size_t n, size_t expected, std::string& out);

}  // namespace tl
