// tinyllama prepare: raw text → tokenized packed shards + manifest.
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "data/prepare.h"

namespace tl::cli {

void add_prepare_command(CLI::App& app) {
  auto o = std::make_shared<PrepareOptions>();
  auto sep = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("prepare", "Tokenize text/JSON-lines corpora into packed shards");
  cmd->add_option("--tokenizer", o->tokenizer, "SentencePiece .model file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--source", o->source, "Source name: the shard file prefix ([A-Za-z0-9_.-])")->required();
  cmd->add_option("--out", o->out_dir, "Output folder")->required();
  auto* sep_opt = cmd->add_option("--separator", *sep,
                                  "Text files: split into documents at lines equal to STR "
                                  "(e.g. % for fortune files, \"\" for blank lines); "
                                  "default: one document per file");
  cmd->add_option("--text-field", o->text_field, "JSON lines: the field holding the text")->capture_default_str();
  cmd->add_flag("--strict", o->strict, "Malformed JSON lines or a missing text field are errors, not skips");
  cmd->add_option("--ext", o->folder_suffixes,
                  "Suffixes of the files taken from folders, comma-separated; * takes all")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--chunk-size", o->chunk_tokens, "Tokens per shard")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o->threads, "Tokenizer threads (0 = all cores)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--val-fraction", o->val_fraction, "Share of documents held out into DIR/val, in [0, 1)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--overwrite", o->overwrite, "Replace this source's shards already in DIR");
  cmd->add_flag("--quiet", [o](int64_t) { o->progress = false; }, "No progress lines or summary");
  cmd->add_option("inputs", o->inputs, "Input files and folders")->required()->check(CLI::ExistingPath);
  cmd->footer(
      "Output: DIR/train/NAME_00000.bin, NAME_00001.bin, ... (lit-gpt PackedDataset shards of\n"
      "--chunk-size tokens, u16 when the vocabulary fits, else i32; the last shard holds the\n"
      "rest), DIR/val/NAME_*.bin with --val-fraction, and DIR/manifest.json (per source:\n"
      "tokenizer, inputs, documents, tokens, skipped records by reason, shard lists).\n"
      "Inputs: files as named (*.jsonl[.zst]: one JSON object a line, else text); folders are\n"
      "walked recursively in sorted order, taking files that end in one of --ext.\n"
      "Each document becomes its ids + EOS, no BOS, in input order: the shards are the same\n"
      "whatever --threads. Documents are held out by a fixed hash of their index.\n"
      "Example: tinyllama prepare --tokenizer tok.model --source shakespeare --out data/shk \\\n"
      "           --separator '' --val-fraction 0.01 tinyshakespeare.txt\n");
  cmd->callback([o, sep, sep_opt] {
    if (sep_opt->count() > 0) o->separator = *sep;
    prepare_dataset(*o);
  });
}

}  // namespace tl::cli
