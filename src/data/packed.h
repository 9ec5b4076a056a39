// lit-gpt PackedDataset shards (what TinyLlama's prepare scripts write), little-endian:
//   bytes 0-6 "LITPKDS"; 7-14 u64 version = 1; 15 u8 dtype code (1 u8, 2 i8, 3 i16,
//   4 i32, 5 i64, 6 f32, 7 f64, 8 u16); 16-23 u64 chunk_size (tokens); then the tokens.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tl {

constexpr uint64_t kDefaultChunkTokens = 2049ull * 1024;  // TinyLlama's chunk size
constexpr size_t kPackedHeaderBytes = 24;

// Read-only, memory-mapped view of one shard.
class PackedShard {
 public:
  // Throws naming the file on a bad magic, version, dtype code or a truncated body.
  explicit PackedShard(const std::string& path);
  ~PackedShard();
  PackedShard(const PackedShard&) = delete;
  PackedShard& operator=(const PackedShard&) = delete;

  const std::string& path() const { return path_; }
  uint64_t chunk_size() const { return chunk_size_; }  // tokens in the header
  uint64_t num_tokens() const { return chunk_size_; }
  int dtype_code() const { return dtype_code_; }
  uint32_t token(uint64_t i) const;
  // Copies tokens [begin, begin + n) into out (as i32).
  void read(uint64_t begin, uint64_t n, int32_t* out) const;

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_bytes_ = 0;
  uint64_t chunk_size_ = 0;
  int dtype_code_ = 0;
};

// Writes tokens into numbered shards PREFIX_00000.bin, PREFIX_00001.bin, ... of
// chunk_tokens tokens each; the final shard holds exactly the remaining tokens (a smaller
// chunk_size in its header): nothing is dropped or padded. Each file is written atomically.
class PackedWriter {
 public:
  PackedWriter(std::string dir, std::string prefix, int vocab_size,
               uint64_t chunk_tokens = kDefaultChunkTokens);
  ~PackedWriter();  // does not finish(): an unfinished writer leaves no partial shard
  void add(const int32_t* ids, size_t n);
  void finish();  // flushes the last partial shard
  const std::vector<std::string>& files() const { return files_; }
  uint64_t tokens_written() const { return total_; }
  int32_t max_id() const { return max_id_; }  // largest id added (-1 before any)

 private:
  void flush_chunk();
  std::string dir_, prefix_;
  int dtype_code_;
  uint64_t chunk_tokens_;
  std::vector<int32_t> buf_;
  std::vector<std::string> files_;
  uint64_t total_ = 0;
  int vocab_size_;
  int32_t max_id_ = -1;
  bool finished_ = false;
};

// A shard's header, read with one small read (no mapping); checks the magic, version,
// dtype and that the file size matches. Throws naming the file.
struct PackedHeader {
  int dtype_code = 0;
  uint64_t chunk_size = 0;
};
PackedHeader read_packed_header(const std::string& path);
// Bytes per token of a dtype code (0 when unknown).
size_t packed_itemsize(int code);
// The dtype code of a name from packed_dtype_name (0 when unknown).
int packed_dtype_code(const std::string& name);

// "u8", "i16", "u16", ... for a header dtype code ("?" when unknown).
const char* packed_dtype_name(int code);
// The dtype code our writer uses: 8 (u16) when every id fits, else 4 (i32).
int packed_dtype_for_vocab(int vocab_size);

// Writes one shard file from tokens (used by tests and tools). Tokens must fit the dtype;
// when fewer than chunk_size, the rest is filled with BOS (1) as lit-gpt does.
void write_packed_file(const std::string& path, const std::vector<int32_t>& tokens, int dtype_code,
                       uint64_t chunk_size);

}  // namespace tl
