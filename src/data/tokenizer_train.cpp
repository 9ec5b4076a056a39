// train_tokenizer: SentencePiece BPE with the settings of the Llama 2 tokenizer (read from
// its model's trainer_spec), fed line by line from plain or .zst text files.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <memory>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/fs.h"
#include "data/text_reader.h"
#include "data/tokenizer.h"

namespace tl {

namespace {

// Hands SentencePiece the lines of the inputs in order. Errors cannot cross the library,
// so they travel back as a Status.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& files) : files_(files) { advance(); }
  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return status_; }

 private:
  void advance() {
    try {
      for (;;) {
        if (reader_ && reader_->read_line(line_)) return;
        if (next_file_ == files_.size()) break;
        reader_ = std::make_unique<TextReader>(files_[next_file_++]);
      }
    } catch (const Error& e) {
      status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kInternal, e.what());
    }
    done_ = true;
  }
  const std::vector<std::string>& files_;
  size_t next_file_ = 0;
  std::unique_ptr<TextReader> reader_;
  std::string line_;
  bool done_ = false;
  sentencepiece::util::Status status_;
};

}  // namespace

void train_tokenizer(const TokenizerTrainOptions& opts) {
  // 3 special pieces + 256 byte pieces come first; BPE needs room for merges after them.
  TL_CHECK(opts.vocab_size > 259, "tokenizer-train: vocab size ", opts.vocab_size,
           " must exceed 259 (<unk>, <s>, </s> and the 256 byte pieces)");
  TL_CHECK(!opts.out_prefix.empty(), "tokenizer-train: no output prefix");
  std::string out_dir = std::filesystem::path(opts.out_prefix).parent_path().string();
  TL_CHECK(out_dir.empty() || is_directory(out_dir), "tokenizer-train: output folder '", out_dir,
           "' does not exist");
  TL_CHECK(!opts.inputs.empty(), "tokenizer-train: no input files");
  for (const auto& f : opts.inputs)
    TL_CHECK(file_exists(f), "tokenizer-train: input '", f, "' does not exist or is not a file");
  TL_CHECK(opts.max_sentences == 0 || opts.max_sentences > 100, "tokenizer-train: max sentences ",
           opts.max_sentences, " must be 0 (all) or above 100");
  TL_CHECK(opts.threads >= 0, "tokenizer-train: threads must be >= 0");
  int threads =
      opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));

  std::unordered_map<std::string, std::string> args = {
      {"model_prefix", opts.out_prefix},
      {"vocab_size", std::to_string(opts.vocab_size)},
      {"model_type", "bpe"},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"split_by_unicode_script", "true"},
      {"split_by_whitespace", "true"},
      {"split_by_number", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      {"normalization_rule_name", "identity"},
      {"character_coverage", "0.99995"},
      {"max_sentencepiece_length", "16"},
      {"max_sentence_length", "4192"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"input_sentence_size", std::to_string(opts.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(threads)},
      {"minloglevel", opts.verbose ? "0" : "1"},
  };
  // The sampling of max_sentences uses SentencePiece's global generator; seed it.
  sentencepiece::SetRandomGeneratorSeed(unsigned(opts.seed % 0xffffffffull));
  LineIterator lines(opts.inputs);
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines);
  TL_CHECK(status.ok(), "tokenizer-train: SentencePiece failed: ", status.ToString());
}

}  // namespace tl
