// tokenizer.json (Hugging Face's fast tokenizers) for a SentencePiece BPE model, the way
// transformers' own converter describes Llama's: the SentencePiece pieces as a BPE
// vocabulary with byte fallback, merges derived from the vocabulary (every split of a piece
// into two pieces, ranked by the merged piece's score), SentencePiece's whitespace handling
// as normalizer and decoder, and BOS added by the post-processor.
#include <algorithm>

#include "checkpoint/hf.h"
#include "core/error.h"

namespace tl {

namespace {

const char* const kSpace = "\xe2\x96\x81";  // "▁", SentencePiece's visible space

json added_token(int id, const std::string& content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

// Merges: for each piece (in score order, then by the ids of its halves), every split into two
// pieces that are both in the vocabulary.
json bpe_merges(const SpModelInfo& sp, const std::map<std::string, int>& vocab) {
  struct Merge {
    float score;
    int left, right;
    std::string a, b;
  };
  std::vector<Merge> merges;
  for (const SpPiece& p : sp.pieces) {
    if (p.type != PieceType::Normal && p.type != PieceType::UserDefined) continue;
    std::vector<Merge> local;
    for (size_t k = 1; k < p.text.size(); ++k) {
      if ((uint8_t(p.text[k]) & 0xC0) == 0x80) continue;  // not inside a UTF-8 character
      auto l = vocab.find(p.text.substr(0, k)), r = vocab.find(p.text.substr(k));
      if (l != vocab.end() && r != vocab.end())
        local.push_back({p.score, l->second, r->second, l->first, r->first});
    }
    std::sort(local.begin(), local.end(), [](const Merge& x, const Merge& y) {
      return std::pair(x.left, x.right) < std::pair(y.left, y.right);
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(),
                   [](const Merge& x, const Merge& y) { return x.score > y.score; });
  json out = json::array();
  for (const Merge& m : merges) out.push_back(json::array({m.a, m.b}));
  return out;
}

}  // namespace

std::string hf_tokenizer_json_unsupported(const SpModelInfo& sp) {
  if (!sp.is_bpe()) return cat("it is a SentencePiece model of type ", sp.model_type, ", not BPE");
  if (sp.normalizer != "identity" || sp.has_charsmap)
    return cat("it normalizes text with '", sp.normalizer,
               "' (only identity normalization is converted)");
  if (sp.remove_extra_whitespaces) return "it removes extra whitespace (not converted)";
  if (!sp.escape_whitespaces) return "it does not escape whitespace";
  for (int id : {sp.unk_id, sp.bos_id})
    if (id < 0 || id >= int(sp.pieces.size()))
      return cat("its special token id ", id, " is outside the vocabulary");
  return "";
}

json hf_tokenizer_json(const SpModelInfo& sp) {
  const std::string why = hf_tokenizer_json_unsupported(sp);
  TL_CHECK(why.empty(), "cannot describe the tokenizer as tokenizer.json: ", why);
  std::map<std::string, int> vocab;
  json vocab_json = json::object(), added = json::array();
  for (size_t id = 0; id < sp.pieces.size(); ++id) {
    const SpPiece& p = sp.pieces[id];
    vocab.emplace(p.text, int(id));
    vocab_json[p.text] = id;
    if (p.type == PieceType::Control || p.type == PieceType::Unknown ||
        p.type == PieceType::UserDefined) {
      json t = added_token(int(id), p.text);
      if (p.type == PieceType::UserDefined) t["special"] = false;
      added.push_back(t);
    }
  }
  const std::string bos = sp.pieces[size_t(sp.bos_id)].text;
  json normalizers = json::array();
  if (sp.add_dummy_prefix) normalizers.push_back({{"type", "Prepend"}, {"prepend", kSpace}});
  normalizers.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}});
  json decoders =
      json::array({json{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                   json{{"type", "ByteFallback"}}, json{{"type", "Fuse"}}});
  if (sp.add_dummy_prefix)
    decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  auto special = [&](int type_id) {
    return json{{"SpecialToken", {{"id", bos}, {"type_id", type_id}}}};
  };
  auto seq = [](const char* id, int type_id) {
    return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
  };
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", normalizers}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({special(0), seq("A", 0)})},
        {"pair", json::array({special(0), seq("A", 0), special(1), seq("B", 1)})},
        {"special_tokens",
         {{bos,
           {{"id", bos}, {"ids", json::array({sp.bos_id})}, {"tokens", json::array({bos})}}}}}}},
      {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", sp.pieces[size_t(sp.unk_id)].text},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", sp.byte_fallback},
        {"ignore_merges", false},
        {"vocab", vocab_json},
        {"merges", bpe_merges(sp, vocab)}}},
  };
}

}  // namespace tl
