// tinyllama prepare: raw text → tokenized packed shards + manifest.
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "data/prepare.h"

namespace tl::cli {

void add_prepare_command(CLI::App& app) {
  auto o = std::make_shared<PrepareOptions>();
  auto sep = std::make_shared<std::string>();
  auto batch_mb = std::make_shared<double>(0);
  auto* cmd = app.add_subcommand(
      "prepare", "Tokenize text, JSON-lines and parquet corpora into packed shards");
  cmd->add_option("--tokenizer", o->tokenizer, "SentencePiece .model file")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--source", o->source, "Source name: the shard file prefix ([A-Za-z0-9_.-])")
      ->required();
  cmd->add_option("--out", o->out_dir, "Output folder")->required();
  auto* sep_opt = cmd->add_option("--separator", *sep,
                                  "Text files: split into documents at lines equal to STR "
                                  "(e.g. % for fortune files, \"\" for blank lines); "
                                  "default: one document per file");
  cmd->add_option("--text-field", o->text_field, "JSON lines: the field holding the text")
      ->capture_default_str();
  cmd->add_option("--column", o->column, "Parquet: the string column holding the text")
      ->capture_default_str();
  cmd->add_option(
         "--exclude-set", o->exclude_sets,
         "JSON lines: skip records whose --set-field is NAME (repeatable or comma-separated; "
         "TinyLlama excludes RedPajamaGithub from SlimPajama)")
      ->delimiter(',');
  cmd->add_option("--set-field", o->set_field, "JSON lines: dotted path of a record's set name")
      ->capture_default_str();
  cmd->add_flag("--strict", o->strict,
                "Malformed JSON lines or a missing text field are errors, not skips");
  cmd->add_option("--ext", o->folder_suffixes,
                  "Suffixes of the files taken from folders, comma-separated; * takes all")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--chunk-size", o->chunk_tokens, "Tokens per shard")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o->threads, "Tokenizer threads (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--val-fraction", o->val_fraction,
                  "Share of documents held out into DIR/val, in [0, 1)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--val-files", o->val_files,
                  "Hold out whole files into DIR/val: a count N (picked by a fixed hash) or a glob "
                  "pattern matched against the input paths");
  cmd->add_flag("--overwrite", o->overwrite, "Replace this source's shards already in DIR");
  cmd->add_flag("--allow-duplicates", o->allow_duplicates,
                "Prepare inputs that another source in DIR already holds");
  cmd->add_option("--batch-mb", *batch_mb,
                  "Text per parallel batch in MB (0 = max(16, 4 per thread)); "
                  "memory is about three batches")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--progress-seconds", o->progress_seconds,
                  "Period of the progress lines when stderr is not a terminal")
      ->capture_default_str();
  cmd->add_flag(
      "--quiet", [o](int64_t) { o->progress = false; }, "No progress or summary");
  cmd->add_option("inputs", o->inputs, "Input files, folders and glob patterns (quote them)")
      ->required();
  cmd->footer(
      "Output: DIR/train/NAME_00000.bin, NAME_00001.bin, ... (lit-gpt PackedDataset shards of\n"
      "--chunk-size tokens, u16 when the vocabulary fits, else i32; the last shard holds the\n"
      "rest), DIR/val/NAME_*.bin with --val-fraction or --val-files, and DIR/manifest.json\n"
      "(per source: tokenizer, inputs with sizes and hashes, documents, tokens, max token id,\n"
      "skipped records by reason, records per set, shard lists).\n"
      "Inputs: files as named (*.jsonl[.zst]: one JSON object a line; *.parquet: --column;\n"
      "else text); folders walked recursively in sorted order, taking files that end in one\n"
      "of --ext; glob patterns ('data/chunk*/*.jsonl.zst') expanded in sorted order. A parquet\n"
      "file without the column is an error, reported before any work.\n"
      "Each document becomes its ids + EOS, no BOS, in input order: the shards are the same\n"
      "whatever --threads. --val-fraction holds documents out by a fixed hash of their index.\n"
      "Inputs already prepared in DIR under another source are refused (--allow-duplicates);\n"
      "repeating a finished run does nothing.\n"
      "Examples:\n"
      "  tinyllama prepare --tokenizer tok.model --source slim --out data/slim \\\n"
      "      --exclude-set RedPajamaGithub 'SlimPajama-627B/train/chunk*/*.jsonl.zst'\n"
      "  tinyllama prepare --tokenizer tok.model --source star --out data/star starcoderdata/\n");
  cmd->callback([o, sep, sep_opt, batch_mb] {
    if (sep_opt->count() > 0) o->separator = *sep;
    o->batch_bytes = size_t(*batch_mb * 1e6);
    prepare_dataset(*o);
  });
}

}  // namespace tl::cli
