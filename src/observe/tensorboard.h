// TensorBoard event files, written by hand: no TensorFlow, no protobuf library.
//
// A file is a sequence of TFRecords:
//   u64 length | u32 masked_crc32c(length bytes) | payload | u32 masked_crc32c(payload)
// (little-endian; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8). Each payload is an
// Event protobuf; we write the fields TensorBoard's scalar view reads:
//   Event      { double wall_time = 1; int64 step = 2; string file_version = 3;
//                Summary summary = 5; SessionLog session_log = 6; }
//   Summary    { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
//   SessionLog { enum status = 1 (START = 1); }
// The first record is {file_version: "brain.Event:2"}. A resumed run writes a new file that
// opens with SessionLog START at its first step: TensorBoard then drops what earlier files
// logged from that step on (steps a crash made us redo), so every curve shows one history.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace tl {

namespace tfevents {
uint32_t masked_crc32c(const void* data, size_t n);
std::string record(const std::string& payload);  // TFRecord framing
std::string file_version_event(double wall_time);
std::string scalars_event(double wall_time, int64_t step,
                          const std::vector<std::pair<std::string, float>>& values);
std::string session_start_event(double wall_time, int64_t step);
}  // namespace tfevents

class TensorBoardWriter {
 public:
  // Creates dir/events.out.tfevents.<time>.<host>.<pid>; <time> is raised past any event
  // file already there, so names sort in the order the files were written.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void session_start(int64_t step);
  void scalars(int64_t step, const std::vector<std::pair<std::string, float>>& values);
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& event);
  std::string path_;
  std::FILE* f_ = nullptr;
};

}  // namespace tl
