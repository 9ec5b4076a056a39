// Sequential reading of a text file, plain or zstd-compressed (name ends in ".zst"), line by
// line or whole. Memory stays at a buffer or two whatever the file size.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/hash.h"

struct ZSTD_DCtx_s;

namespace tl {

class TextReader {
 public:
  explicit TextReader(const std::string& path);  // throws naming the file
  ~TextReader();
  TextReader(const TextReader&) = delete;
  TextReader& operator=(const TextReader&) = delete;

  // The next line without its '\n' (a '\r' before it is kept); false at the end.
  bool read_line(std::string& line);
  // Everything not read yet.
  std::string read_all();
  uint64_t bytes_read() const { return bytes_; }  // (decompressed) bytes handed out so far
  uint64_t disk_bytes() const { return disk_; }   // bytes read from the file so far
  // SHA-256 of every byte read from the file: the whole file's once read_line/read_all
  // have reached the end.
  std::string sha256() { return sha_.hex_digest(); }

 private:
  bool fill();  // replaces buf_ with the next bytes; false at the end of the file
  std::string path_;
  std::FILE* file_ = nullptr;
  ZSTD_DCtx_s* zstd_ = nullptr;  // null for a plain file
  std::vector<char> in_;         // compressed input not yet decompressed
  size_t in_pos_ = 0, in_len_ = 0;
  bool frame_done_ = true;  // false while a zstd frame is only partly decoded
  std::string buf_;         // text bytes; buf_[pos_:] not handed out yet
  size_t pos_ = 0;
  uint64_t bytes_ = 0, disk_ = 0;
  Sha256 sha_;
};

}  // namespace tl
