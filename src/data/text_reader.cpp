#include "data/text_reader.h"

#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace tl {

namespace {
constexpr size_t kBlock = 1 << 20;
}  // namespace

TextReader::TextReader(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "rb");
  TL_CHECK(file_, "cannot open '", path, "': ", std::strerror(errno));
  if (path.ends_with(".zst")) {
    zstd_ = ZSTD_createDCtx();
    in_.resize(ZSTD_DStreamInSize());
  }
}

TextReader::~TextReader() {
  if (zstd_) ZSTD_freeDCtx(zstd_);
  if (file_) std::fclose(file_);
}

bool TextReader::fill() {
  buf_.clear();
  pos_ = 0;
  if (!zstd_) {
    buf_.resize(kBlock);
    size_t n = std::fread(buf_.data(), 1, kBlock, file_);
    TL_CHECK(!std::ferror(file_), "error reading '", path_, "': ", std::strerror(errno));
    buf_.resize(n);
    sha_.update(buf_.data(), n);
    disk_ += n;
    return n > 0;
  }
  // Decompress until some text comes out or the compressed file ends.
  buf_.resize(kBlock);
  ZSTD_outBuffer out{buf_.data(), buf_.size(), 0};
  while (out.pos == 0) {
    if (in_pos_ == in_len_) {
      in_len_ = std::fread(in_.data(), 1, in_.size(), file_);
      in_pos_ = 0;
      TL_CHECK(!std::ferror(file_), "error reading '", path_, "': ", std::strerror(errno));
      sha_.update(in_.data(), in_len_);
      disk_ += in_len_;
      if (in_len_ == 0) {
        TL_CHECK(frame_done_, "'", path_, "': truncated zstd data");
        break;
      }
    }
    ZSTD_inBuffer in{in_.data(), in_len_, in_pos_};
    size_t r = ZSTD_decompressStream(zstd_, &out, &in);
    TL_CHECK(!ZSTD_isError(r), "'", path_, "': bad zstd data: ", ZSTD_getErrorName(r));
    in_pos_ = in.pos;
    frame_done_ = (r == 0);
  }
  buf_.resize(out.pos);
  return out.pos > 0;
}

bool TextReader::read_line(std::string& line) {
  line.clear();
  bool any = false;
  for (;;) {
    if (pos_ == buf_.size() && !fill()) return any;
    any = true;
    const char* start = buf_.data() + pos_;
    size_t avail = buf_.size() - pos_;
    const char* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
    size_t take = nl ? size_t(nl - start) + 1 : avail;
    line.append(start, nl ? take - 1 : take);
    pos_ += take;
    bytes_ += take;
    if (nl) return true;
  }
}

std::string TextReader::read_all() {
  std::string all(buf_, pos_);
  while (fill()) all += buf_;
  pos_ = buf_.size();
  bytes_ += all.size();
  return all;
}

}  // namespace tl
