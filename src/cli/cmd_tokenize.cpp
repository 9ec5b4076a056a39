// tinyllama tokenize: text on stdin → token ids on stdout.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "data/tokenizer.h"

namespace tl::cli {

namespace {

struct TokenizeArgs {
  std::string model;
  bool bos = false, eos = false, whole = false;
};

void write_ids(const Tokenizer& tok, const TokenizeArgs& a, const std::string& text,
               std::string& out) {
  std::vector<int> ids = tok.encode(text);
  if (a.bos) ids.insert(ids.begin(), tok.bos_id());
  if (a.eos) ids.push_back(tok.eos_id());
  out.clear();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  out += '\n';
  TL_CHECK(std::fwrite(out.data(), 1, out.size(), stdout) == out.size(),
           "tokenize: cannot write stdout");
}

void run(const TokenizeArgs& a) {
  Tokenizer tok = Tokenizer::load(a.model);
  std::ios::sync_with_stdio(false);
  std::string out;
  if (a.whole) {
    std::string text{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    write_ids(tok, a, text, out);
  } else {
    for (std::string line; std::getline(std::cin, line);) write_ids(tok, a, line, out);
  }
  TL_CHECK(!std::cin.bad(), "tokenize: error reading stdin");
  TL_CHECK(std::fflush(stdout) == 0, "tokenize: cannot write stdout");
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  auto* cmd =
      app.add_subcommand("tokenize", "Tokenize text from stdin: space-separated ids on stdout");
  cmd->add_option("--tokenizer", a->model, "SentencePiece .model file")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("--bos", a->bos, "Start each output with BOS");
  cmd->add_flag("--eos", a->eos, "End each output with EOS");
  cmd->add_flag("--whole", a->whole,
                "Tokenize all of stdin as one text (default: line by line, "
                "one output line per input line, newlines not included)");
  cmd->footer("Example: echo 'Hello world' | tinyllama tokenize --tokenizer tokenizer.model --bos");
  cmd->callback([a] { run(*a); });
}

}  // namespace tl::cli
