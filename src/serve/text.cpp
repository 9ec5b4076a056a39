#include "serve/text.h"

#include <algorithm>

namespace tl::serve {

namespace {

constexpr size_t kContextIds = 8;  // preceding ids that can change how a token decodes
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD: an incomplete byte sequence

bool ends_incomplete(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, kReplacement) == 0;
}

}  // namespace

TokenText::TokenText(const Tokenizer& tok, const std::vector<int>& context) : tok_(tok) {
  const size_t n = std::min(context.size(), kContextIds);
  for (auto it = context.end() - ptrdiff_t(n); it != context.end(); ++it)
    if (*it >= 0 && *it < tok_.vocab_size()) ids_.push_back(*it);
  decoded_ = tok_.decode(ids_);
  context_bytes_ = decoded_.size();
}

std::string TokenText::push(int id) {
  // A model may have more ids than its tokenizer (a padded vocabulary): those have no text.
  if (id < 0 || id >= tok_.vocab_size()) return "";
  ids_.push_back(id);
  decoded_ = tok_.decode(ids_);
  const size_t have = context_bytes_ + given_;
  if (ends_incomplete(decoded_) || decoded_.size() < have) return "";
  std::string add = decoded_.substr(have);
  given_ += add.size();
  return add;
}

std::string TokenText::flush() {
  const size_t have = context_bytes_ + given_;
  if (decoded_.size() <= have) return "";
  std::string add = decoded_.substr(have);
  given_ += add.size();
  return add;
}

std::string token_label(const Tokenizer& tok, const std::vector<int>& before, int id) {
  if (id < 0 || id >= tok.vocab_size()) return "<id " + std::to_string(id) + ">";
  TokenText t(tok, before);
  std::string s = t.push(id);
  if (s.empty()) s = t.flush();
  if (s.empty()) {  // a control piece (<s>, </s>) decodes to nothing: show the piece itself
    const std::string piece = tok.piece(id), mark = "\xE2\x96\x81";  // SentencePiece's space
    for (size_t at = 0; at < piece.size();) {
      const bool sp = piece.compare(at, mark.size(), mark) == 0;
      s += sp ? ' ' : piece[at];
      at += sp ? mark.size() : 1;
    }
  }
  return s;
}

std::string StopScanner::feed(const std::string& text) {
  if (hit_) return "";
  held_ += text;
  size_t first = std::string::npos, len = 0;
  for (const auto& s : stops_) {
    const size_t at = held_.find(s);
    if (at < first) first = at, len = s.size();
  }
  (void)len;
  if (first != std::string::npos) {
    hit_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopScanner::flush() {
  std::string out;
  out.swap(held_);
  return hit_ ? "" : out;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace tl::serve
