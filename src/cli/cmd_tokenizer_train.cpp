// tinyllama tokenizer-train: a SentencePiece BPE tokenizer with Llama 2's settings.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "data/documents.h"
#include "data/tokenizer.h"

namespace tl::cli {

void add_tokenizer_train_command(CLI::App& app) {
  auto o = std::make_shared<TokenizerTrainOptions>();
  auto* cmd = app.add_subcommand(
      "tokenizer-train",
      "Train a BPE tokenizer with Llama 2's settings (byte fallback, split digits, "
      "<unk>=0 <s>=1 </s>=2) on text files, one sentence a line (.zst allowed)");
  cmd->add_option("--out", o->out_prefix, "Output prefix: writes PREFIX.model and PREFIX.vocab")
      ->required();
  cmd->add_option("--vocab-size", o->vocab_size, "Vocabulary size (> 259)")->required();
  cmd->add_option("--max-sentences", o->max_sentences,
                  "Lines sampled from the inputs (0 = all, else > 100)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the line sampling")->capture_default_str();
  cmd->add_flag("--verbose", o->verbose, "Show SentencePiece's own log");
  auto exts = std::make_shared<std::vector<std::string>>(std::vector<std::string>{".txt"});
  cmd->add_option("--ext", *exts, "File suffixes taken from folders ('*' = every file)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("inputs", o->inputs, "Training text files or folders (walked recursively)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->footer("Example: tinyllama tokenizer-train --out tok/my --vocab-size 8000 corpus.txt");
  cmd->callback([o, exts] {
    TokenizerTrainOptions opts = *o;
    opts.inputs.clear();
    for (const InputFile& f : expand_inputs(o->inputs, *exts)) opts.inputs.push_back(f.path);
    train_tokenizer(opts);
    const Tokenizer tok = Tokenizer::load(opts.out_prefix + ".model");
    std::printf("wrote %s.model and %s.vocab (vocab size %d, trained on %zu input file%s)\n",
                opts.out_prefix.c_str(), opts.out_prefix.c_str(), tok.vocab_size(),
                opts.inputs.size(), opts.inputs.size() == 1 ? "" : "s");
  });
}

}  // namespace tl::cli
