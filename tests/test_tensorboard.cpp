// TensorBoard event files from our own writer, decoded here independently: TFRecord
// framing with masked CRC-32C, protobuf varints and fixed fields, the Event, Summary and
// SessionLog messages; and a training run's events agree with its metrics.jsonl.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "core/hash.h"
#include "observe/tensorboard.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace tl;

namespace {

// CRC-32C bit by bit (no table), and TensorFlow's mask, written out again for the test.
uint32_t crc32c_slow(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
  }
  return ~c;
}
uint32_t mask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

template <class T>
T read_le(const std::string& s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof v);
  return v;
}

// The payloads of a TFRecord file, checking both CRCs of every record.
std::vector<std::string> read_records(const std::string& bytes) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < bytes.size()) {
    EXPECT_LE(at + 12, bytes.size());
    if (at + 12 > bytes.size()) break;
    const uint64_t len = read_le<uint64_t>(bytes, at);
    EXPECT_EQ(read_le<uint32_t>(bytes, at + 8), mask(crc32c_slow(bytes.substr(at, 8))));
    EXPECT_LE(at + 16 + len, bytes.size());
    if (at + 16 + len > bytes.size()) break;
    std::string payload = bytes.substr(at + 12, len);
    EXPECT_EQ(read_le<uint32_t>(bytes, at + 12 + len), mask(crc32c_slow(payload)));
    out.push_back(payload);
    at += 16 + len;
  }
  return out;
}

struct Field {
  int number = 0, wire = 0;
  uint64_t varint = 0;
  std::string bytes;  // length-delimited payload, or the raw 8/4 bytes of fixed64/fixed32
};

uint64_t read_varint(const std::string& s, size_t& at) {
  uint64_t v = 0;
  for (int shift = 0; at < s.size() && shift < 64; shift += 7) {
    const uint8_t b = uint8_t(s[at++]);
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  ADD_FAILURE() << "bad varint";
  return v;
}

std::vector<Field> decode(const std::string& msg) {
  std::vector<Field> out;
  for (size_t at = 0; at < msg.size();) {
    Field f;
    const uint64_t key = read_varint(msg, at);
    f.number = int(key >> 3);
    f.wire = int(key & 7);
    if (f.wire == 0) {
      f.varint = read_varint(msg, at);
    } else if (f.wire == 1 || f.wire == 5) {
      const size_t n = f.wire == 1 ? 8 : 4;
      f.bytes = msg.substr(at, n);
      at += n;
    } else if (f.wire == 2) {
      const uint64_t n = read_varint(msg, at);
      f.bytes = msg.substr(at, n);
      at += n;
    } else {
      ADD_FAILURE() << "unexpected wire type " << f.wire;
      break;
    }
    out.push_back(f);
  }
  return out;
}

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> values;
  int session_status = -1;
};

Event decode_event(const std::string& payload) {
  Event e;
  for (const Field& f : decode(payload)) {
    if (f.number == 1 && f.wire == 1) e.wall_time = read_le<double>(f.bytes, 0);
    if (f.number == 2 && f.wire == 0) e.step = int64_t(f.varint);
    if (f.number == 3 && f.wire == 2) e.file_version = f.bytes;
    if (f.number == 5 && f.wire == 2)
      for (const Field& v : decode(f.bytes)) {
        EXPECT_EQ(v.number, 1);
        std::pair<std::string, float> tv;
        for (const Field& x : decode(v.bytes)) {
          if (x.number == 1 && x.wire == 2) tv.first = x.bytes;
          if (x.number == 2 && x.wire == 5) tv.second = read_le<float>(x.bytes, 0);
        }
        e.values.push_back(tv);
      }
    if (f.number == 6 && f.wire == 2)
      for (const Field& x : decode(f.bytes))
        if (x.number == 1 && x.wire == 0) e.session_status = int(x.varint);
  }
  return e;
}

std::vector<Event> read_events(const std::string& path) {
  std::vector<Event> out;
  for (const std::string& p : read_records(train_test::read_text(path)))
    out.push_back(decode_event(p));
  return out;
}

}  // namespace

TEST(TensorBoard, Crc32cAndItsMaskMatchTheReference) {
  EXPECT_EQ(crc32c_update(0, "123456789", 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(crc32c_update(0, "", 0), 0u);
  const std::string text = "brain.Event:2, and then some more bytes";
  EXPECT_EQ(crc32c_update(0, text.data(), text.size()), crc32c_slow(text));
  EXPECT_EQ(crc32c_update(crc32c_update(0, text.data(), 10), text.data() + 10, text.size() - 10),
            crc32c_slow(text));
  EXPECT_EQ(tfevents::masked_crc32c(text.data(), text.size()), mask(crc32c_slow(text)));
}

TEST(TensorBoard, WriterOutputDecodesToTheEventsWritten) {
  train_test::TrainFixture fx;
  std::string path;
  {
    TensorBoardWriter w(fx.dir + "/tb");
    w.session_start(301);  // 301 needs a two-byte varint
    w.scalars(301, {{"train/loss", 2.5f}, {"val/perplexity", 12.25f}});
    w.scalars(1ll << 40, {{"x", -0.0f}});
    path = w.path();
  }
  EXPECT_NE(path.find("/tb/events.out.tfevents."), std::string::npos);
  std::vector<Event> ev = read_events(path);
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  EXPECT_GT(ev[0].wall_time, 1.6e9);
  EXPECT_EQ(ev[1].session_status, 1);  // START
  EXPECT_EQ(ev[1].step, 301);
  EXPECT_EQ(ev[2].step, 301);
  ASSERT_EQ(ev[2].values.size(), 2u);
  EXPECT_EQ(ev[2].values[0], (std::pair<std::string, float>{"train/loss", 2.5f}));
  EXPECT_EQ(ev[2].values[1], (std::pair<std::string, float>{"val/perplexity", 12.25f}));
  EXPECT_EQ(ev[3].step, 1ll << 40);
  // A second writer in the same folder sorts after the first, whatever the clock says.
  TensorBoardWriter later(fx.dir + "/tb");
  EXPECT_GT(later.path(), path);
}

TEST(TensorBoard, TrainingRunLogsEveryStepAndValidation) {
  train_test::TrainFixture fx;
  json cfg = fx.config("r", 6);
  cfg["eval"]["interval"] = 3;
  Trainer(TrainConfig::from_json(cfg), "").run();
  std::vector<std::string> files;
  for (const auto& name : train_test::files_in(fx.run("r")))
    if (name.rfind("events.out.tfevents.", 0) == 0) files.push_back(fx.run("r") + "/" + name);
  ASSERT_EQ(files.size(), 1u);
  std::map<int64_t, float> loss, val;
  int starts = 0;
  for (const Event& e : read_events(files[0])) {
    starts += e.session_status == 1;
    for (const auto& [tag, v] : e.values) {
      if (tag == "train/loss") loss[e.step] = v;
      if (tag == "val/loss") val[e.step] = v;
    }
  }
  EXPECT_EQ(starts, 1);
  ASSERT_EQ(loss.size(), 6u);
  for (const json& j : train_test::read_jsonl(fx.run("r") + "/metrics.jsonl")) {
    if (j.contains("loss")) {
      EXPECT_EQ(loss[j["step"]], float(j["loss"].get<double>()));
    }
    if (j.contains("val_loss")) {
      EXPECT_EQ(val[j["step"]], float(j["val_loss"].get<double>()));
    }
  }
  EXPECT_EQ(val.size(), 3u);  // steps 0, 3 and 6
}
