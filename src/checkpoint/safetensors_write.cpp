// safetensors writer: header sorted by name, padded to 8 bytes, data streamed in
// name order (converted from f32 chunk by chunk when the stored dtype is narrower).
#include <algorithm>
#include <cstdio>

#include "checkpoint/safetensors.h"
#include "core/fs.h"

namespace tl {

namespace {
void write_item(std::FILE* f, const StWriteItem& it, const std::string& path) {
  const size_t n = size_t(shape_numel(it.shape));
  if (it.src_dtype == it.dtype) {
    write_all(f, it.data, n * dtype_size(it.dtype), path);
    return;
  }
  const float* src = static_cast<const float*>(it.data);
  constexpr size_t kChunk = size_t(1) << 20;
  std::vector<uint16_t> buf(std::min(n, kChunk));
  for (size_t i = 0; i < n; i += kChunk) {
    size_t m = std::min(kChunk, n - i);
    if (it.dtype == DType::BF16)
      for (size_t k = 0; k < m; ++k) buf[k] = f32_to_bf16(src[i + k]);
    else
      for (size_t k = 0; k < m; ++k) buf[k] = f32_to_f16(src[i + k]);
    write_all(f, buf.data(), m * 2, path);
  }
}
}  // namespace

void write_safetensors(const std::string& path, std::vector<StWriteItem> items,
                       const std::map<std::string, std::string>& metadata) {
  std::sort(items.begin(), items.end(),
            [](const StWriteItem& a, const StWriteItem& b) { return a.name < b.name; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const StWriteItem& it = items[i];
    TL_CHECK(!it.name.empty() && it.name != "__metadata__", "'", path, "': bad tensor name '",
             it.name, "'");
    TL_CHECK(i == 0 || items[i - 1].name != it.name, "'", path, "': tensor '", it.name,
             "' given twice");
    TL_CHECK(it.src_dtype == it.dtype || (it.src_dtype == DType::F32 &&
                                          (it.dtype == DType::BF16 || it.dtype == DType::F16)),
             "'", path, "': tensor '", it.name, "': cannot convert ", dtype_name(it.src_dtype),
             " to ", dtype_name(it.dtype));
    for (int64_t d : it.shape)
      TL_CHECK(d >= 0, "'", path, "': tensor '", it.name, "' has a negative dimension");
    const uint64_t nbytes = uint64_t(shape_numel(it.shape)) * dtype_size(it.dtype);
    TL_CHECK(it.data || nbytes == 0, "'", path, "': tensor '", it.name, "' has no data");
    header[it.name] = json::object({{"dtype", safetensors_dtype_name(it.dtype)},
                                    {"shape", it.shape},
                                    {"data_offsets", json::array({offset, offset + nbytes})}});
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data then starts 8-byte aligned
  write_file_atomic(path, [&](std::FILE* f) {
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
    write_all(f, len, 8, path);
    write_all(f, text.data(), text.size(), path);
    for (const auto& it : items) write_item(f, it, path);
  });
}

}  // namespace tl
