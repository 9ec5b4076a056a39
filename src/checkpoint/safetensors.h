// safetensors (https://github.com/huggingface/safetensors), little-endian:
//   u64 N | N bytes of JSON header {name: {dtype, shape, data_offsets: [begin, end)}, ...,
//   "__metadata__": {str: str}} | data (offsets relative to the start of the data).
// The reader maps the file and validates every entry before any tensor is touched;
// the writer sorts tensors by name and pads the header with spaces so the data starts
// at a multiple of 8 bytes, as the reference library does.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/json_reader.h"

namespace tl {

// "F32", "BF16", ... -> DType; throws naming the dtype for one we do not map (F8_E4M3, BOOL...).
DType safetensors_dtype(const std::string& name);
const char* safetensors_dtype_name(DType t);

// Shapes here may have any rank (tl::Shape stops at 4).
int64_t shape_numel(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);  // "[2, 3]"

struct StTensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data section
  int64_t numel() const { return shape_numel(shape); }
  std::string shape_str() const { return tl::shape_str(shape); }
};

// A read-only, memory-mapped safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws naming the file
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<StTensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const json& metadata() const { return metadata_; }  // "__metadata__", or an empty object
  const StTensorInfo* find(const std::string& name) const;
  const StTensorInfo& get(const std::string& name) const;  // throws naming file and tensor
  std::span<const uint8_t> bytes(const StTensorInfo& t) const;
  // Converts F32/BF16/F16 (F64 too) to f32; n must equal the tensor's numel.
  void read_f32(const StTensorInfo& t, float* out, size_t n) const;

 private:
  void parse_header(uint64_t header_len);
  std::string path_;
  const uint8_t* map_ = nullptr;  // whole file
  uint64_t size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::vector<StTensorInfo> tensors_;
  json metadata_ = json::object();
};

// One tensor to write. `data` holds numel elements of `src_dtype`; F32 sources are
// converted to a BF16/F16 `dtype` chunk by chunk, otherwise the two must match.
struct StWriteItem {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  DType src_dtype = DType::F32;
};

// Writes atomically (temp file + rename). Names must be unique and not "__metadata__".
void write_safetensors(const std::string& path, std::vector<StWriteItem> items,
                       const std::map<std::string, std::string>& metadata = {});

// The weights of a model folder: model.safetensors, or the shards that
// model.safetensors.index.json maps each tensor name to.
class SafetensorsModel {
 public:
  explicit SafetensorsModel(const std::string& dir);
  SafetensorsModel(SafetensorsModel&&) noexcept;
  ~SafetensorsModel();

  std::vector<std::string> names() const;  // sorted
  const StTensorInfo* find(const std::string& name) const;
  // The file holding a tensor; throws naming the folder and tensor when absent.
  const SafetensorsFile& file_of(const std::string& name) const;
  const std::string& dir() const { return dir_; }
  // model.safetensors or model.safetensors.index.json: the file that lists the tensors.
  const std::string& source() const { return source_; }

 private:
  std::string dir_, source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index in files_
};

}  // namespace tl
