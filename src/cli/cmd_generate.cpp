// tinyllama generate --checkpoint CK --tokenizer MODEL --prompt TEXT [...]
#include <cstdio>

#include "cli/commands.h"
#include "core/timer.h"
#include "data/tokenizer.h"
#include "train/generate.h"
#include "train/model_io.h"

namespace tl::cli {

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a checkpoint");
  struct Opts {
    std::string checkpoint, tokenizer, prompt, device = "auto", prefix = "auto";
    int max_new = 128, top_k = 0, threads = 0;
    float temperature = 0.8f, top_p = 0.95f;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "Checkpoint file (.tlck) or sharded step folder")->required()->check(CLI::ExistingPath);
  cmd->add_option("--tokenizer", o->tokenizer, "SentencePiece .model")->required()->check(CLI::ExistingFile);
  cmd->add_option("--prompt", o->prompt, "Prompt text")->required();
  cmd->add_option("--max-new", o->max_new, "Tokens to generate")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", o->temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o->top_p, "Nucleus sampling mass (1 = off)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--top-k", o->top_k, "Sample among the k most likely (0 = off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", o->seed, "Sampling seed");
  cmd->add_option("--prefix", o->prefix,
                  "Token before the prompt: bos, eos, none, or auto (eos for models trained here, "
                  "whose documents follow an EOS; bos for imported ones)")
      ->check(CLI::IsMember({"auto", "bos", "eos", "none"}));
  cmd->add_option("--device", o->device, "cpu, cuda or auto");
  cmd->add_option("--threads", o->threads, "CPU threads (0 = all cores)");
  cmd->callback([o] {
    Tokenizer tok = Tokenizer::load(o->tokenizer);
    auto be = make_backend(o->device, o->threads);
    LoadedModel lm = load_model(o->checkpoint, *be);
    TL_CHECK(tok.vocab_size() <= lm.model->config().vocab_size, "the tokenizer has ",
             tok.vocab_size(), " pieces but the model only ", lm.model->config().vocab_size);
    std::string prefix = o->prefix;
    if (prefix == "auto") prefix = lm.meta.value("format", "") == "tinyllama-train" ? "eos" : "bos";
    std::vector<int> ids;
    if (prefix == "bos") ids.push_back(tok.bos_id());
    if (prefix == "eos") ids.push_back(tok.eos_id());
    const size_t prompt_start = ids.size();
    for (int id : tok.encode(o->prompt)) ids.push_back(id);
    TL_CHECK(!ids.empty(), "the prompt is empty");
    SamplingOptions so;
    so.temperature = o->temperature;
    so.top_k = o->top_k;
    so.top_p = o->top_p;
    // Stream: print the text decoded so far minus what was already printed.
    std::string shown = tok.decode(std::vector<int>(ids.begin() + ptrdiff_t(prompt_start), ids.end()));
    std::fputs(shown.c_str(), stdout);
    std::fflush(stdout);
    Timer timer;
    int produced = 0;
    generate(*lm.model, ids, o->max_new, so, o->seed, tok.eos_id(), [&](int) {
      ++produced;
      std::string text = tok.decode(std::vector<int>(ids.begin() + ptrdiff_t(prompt_start), ids.end()));
      if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
        std::fputs(text.c_str() + shown.size(), stdout);
        std::fflush(stdout);
        shown = text;
      }
    });
    std::printf("\n");
    std::fprintf(stderr, "[%d tokens in %.2f s, %.1f tokens/s]\n", produced, timer.seconds(),
                 produced / std::max(timer.seconds(), 1e-9));
  });
}

}  // namespace tl::cli
