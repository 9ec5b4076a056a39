// A minimal protobuf wire-format walk over sentencepiece_model.proto (fields by number):
//   ModelProto:      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece:   1 piece (string), 2 score (float), 3 type (enum)
//   TrainerSpec:     3 model_type, 35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id
//   NormalizerSpec:  1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
//                    4 remove_extra_whitespaces, 5 escape_whitespaces
// Absent fields keep the proto's defaults (the struct's initial values).
#include "data/sp_model.h"

#include <cstring>

#include "core/error.h"

namespace tl {

namespace {

class Wire {
 public:
  Wire(const char* p, size_t n, const std::string& path) : p_(p), end_(p + n), path_(path) {}
  bool done() const { return p_ >= end_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      TL_CHECK(p_ < end_, "tokenizer '", path_, "': truncated protobuf varint");
      const uint8_t b = uint8_t(*p_++);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("tokenizer '", path_, "': protobuf varint longer than 10 bytes");
  }
  // A length-delimited field's bytes.
  Wire sub() {
    const uint64_t n = varint();
    TL_CHECK(n <= uint64_t(end_ - p_), "tokenizer '", path_, "': protobuf field of ", n,
             " bytes runs past the end");
    Wire w(p_, size_t(n), path_);
    p_ += n;
    return w;
  }
  std::string str() {
    Wire w = sub();
    return std::string(w.p_, w.end_);
  }
  float fixed32_float() {
    TL_CHECK(end_ - p_ >= 4, "tokenizer '", path_, "': truncated protobuf float");
    float f;
    std::memcpy(&f, p_, 4);
    p_ += 4;
    return f;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); return;
      case 1:
        TL_CHECK(end_ - p_ >= 8, "tokenizer '", path_, "': truncated field");
        p_ += 8;
        return;
      case 2: sub(); return;
      case 5:
        TL_CHECK(end_ - p_ >= 4, "tokenizer '", path_, "': truncated field");
        p_ += 4;
        return;
      default: fail("tokenizer '", path_, "': protobuf wire type ", wire_type, " is not supported");
    }
  }

 private:
  const char* p_;
  const char* end_;
  const std::string& path_;
};

SpPiece parse_piece(Wire w, const std::string& path) {
  SpPiece p;
  while (!w.done()) {
    const uint64_t key = w.varint();
    const int field = int(key >> 3), type = int(key & 7);
    if (field == 1 && type == 2)
      p.text = w.str();
    else if (field == 2 && type == 5)
      p.score = w.fixed32_float();
    else if (field == 3 && type == 0) {
      const uint64_t t = w.varint();
      TL_CHECK(t >= 1 && t <= 6, "tokenizer '", path, "': piece type ", t, " is unknown");
      p.type = PieceType(t);
    } else
      w.skip(type);
  }
  return p;
}

void parse_trainer(Wire w, SpModelInfo& m) {
  while (!w.done()) {
    const uint64_t key = w.varint();
    const int field = int(key >> 3), type = int(key & 7);
    if (type != 0) {
      w.skip(type);
      continue;
    }
    const int64_t v = int64_t(w.varint());
    switch (field) {
      case 3: m.model_type = int(v); break;
      case 35: m.byte_fallback = v != 0; break;
      case 40: m.unk_id = int(int32_t(v)); break;
      case 41: m.bos_id = int(int32_t(v)); break;
      case 42: m.eos_id = int(int32_t(v)); break;
      case 43: m.pad_id = int(int32_t(v)); break;
      default: break;
    }
  }
}

void parse_normalizer(Wire w, SpModelInfo& m) {
  while (!w.done()) {
    const uint64_t key = w.varint();
    const int field = int(key >> 3), type = int(key & 7);
    if (field == 1 && type == 2)
      m.normalizer = w.str();
    else if (field == 2 && type == 2)
      m.has_charsmap = !w.str().empty();
    else if (field >= 3 && field <= 5 && type == 0) {
      const bool v = w.varint() != 0;
      (field == 3   ? m.add_dummy_prefix
       : field == 4 ? m.remove_extra_whitespaces
                    : m.escape_whitespaces) = v;
    } else
      w.skip(type);
  }
}

}  // namespace

int SpModelInfo::find(const std::string& text) const {
  for (size_t i = 0; i < pieces.size(); ++i)
    if (pieces[i].text == text) return int(i);
  return -1;
}

SpModelInfo parse_sp_model(const std::string& bytes, const std::string& path) {
  SpModelInfo m;
  Wire w(bytes.data(), bytes.size(), path);
  while (!w.done()) {
    const uint64_t key = w.varint();
    const int field = int(key >> 3), type = int(key & 7);
    if (field == 1 && type == 2)
      m.pieces.push_back(parse_piece(w.sub(), path));
    else if (field == 2 && type == 2)
      parse_trainer(w.sub(), m);
    else if (field == 3 && type == 2)
      parse_normalizer(w.sub(), m);
    else
      w.skip(type);
  }
  TL_CHECK(!m.pieces.empty(), "tokenizer '", path, "' has no pieces");
  return m;
}

}  // namespace tl
