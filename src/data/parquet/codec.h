// Page decompression for parquet: none, snappy (our decoder), gzip (zlib), zstd (libzstd).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/parquet/metadata.h"

namespace tl::parquet {

bool codec_supported(Codec c);
// Decompresses n bytes into out, which must come to exactly out_size bytes; throws tl::Error
// (without a file name: the caller adds it) on corrupt data or another size.
void decompress(Codec c, const uint8_t* src, size_t n, size_t out_size, std::string& out);

}  // namespace tl::parquet
