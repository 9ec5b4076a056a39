// Token ids to text as they arrive, and stop strings over that text.
#pragma once
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace tl::serve {

// Incremental detokenization. SentencePiece decodes a sequence as a whole (the first piece
// loses its leading space; a character split over byte pieces is U+FFFD until complete), so
// each token's text is decode(context + ids so far) minus what was already given out; text
// that ends in an incomplete character is held until the token that completes it.
class TokenText {
 public:
  // context: the ids before the first pushed one (their text is not part of the output).
  TokenText(const Tokenizer& tok, const std::vector<int>& context);
  std::string push(int id);  // the text this token adds (may be "")
  std::string flush();       // held text, at the end

 private:
  const Tokenizer& tok_;
  std::vector<int> ids_;
  size_t context_bytes_ = 0, given_ = 0;  // bytes of decode(ids_) given out (after context)
  std::string decoded_;
};

// The text a token adds after `before` (a few preceding ids), as a label for top_logprobs.
std::string token_label(const Tokenizer& tok, const std::vector<int>& before, int id);

// Stop strings over streamed text: text that could begin a stop string is held back until
// it cannot; once one appears, the text before it is the last given out.
class StopScanner {
 public:
  explicit StopScanner(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends text; returns what can be given out now. Sets hit when a stop string appeared.
  std::string feed(const std::string& text);
  std::string flush();  // the held text, at the end (none after a hit)
  bool hit() const { return hit_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool hit_ = false;
};

size_t utf8_length(const std::string& s);  // code points (Python's len of the text)

}  // namespace tl::serve
