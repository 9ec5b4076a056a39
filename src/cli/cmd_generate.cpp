// tinyllama generate --checkpoint CK --tokenizer MODEL --prompt TEXT [--prompt TEXT ...]
//                    [--prompts-file F] [--ids] [--no-cache] [--json F] [...]
// Prompts run as one batch over a KV cache. One prompt streams its text as it is sampled;
// several print each completion when the batch is done. Timing goes to stderr.
#include <cstdio>
#include <fstream>

#include "checkpoint/load.h"
#include "cli/commands.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/timer.h"
#include "data/tokenizer.h"
#include "generate/generate.h"
#include "generate/prompts.h"

namespace tl::cli {

namespace {

struct GenerateArgs {
  std::string checkpoint, tokenizer, prompts_file, json_out, device = "auto", prefix = "auto";
  std::vector<std::string> prompts;
  int max_new = 128, top_k = 0, threads = 0, prefill_tokens = 4096, warmup = 0;
  float temperature = 0.8f, top_p = 0.95f;
  uint64_t seed = 0;
  bool ids = false, no_cache = false, ignore_eos = false;
};

std::vector<std::string> prompt_texts(const GenerateArgs& a) {
  std::vector<std::string> out = a.prompts;
  if (!a.prompts_file.empty()) {
    std::ifstream in(a.prompts_file);
    TL_CHECK(in, "cannot read --prompts-file '", a.prompts_file, "'");
    for (std::string line; std::getline(in, line);)
      if (line.find_first_not_of(" \t\r") != std::string::npos) out.push_back(line);
  }
  TL_CHECK(!out.empty(), "no prompt: give --prompt (repeatable) or --prompts-file");
  return out;
}

void print_ids(const std::vector<int>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n");
}

void run_generate(const GenerateArgs& a) {
  TL_CHECK(a.max_new >= 1, "--max-new must be at least 1, got ", a.max_new);
  TL_CHECK(a.ids || !a.tokenizer.empty(), "--tokenizer is required unless --ids is given");
  std::unique_ptr<Tokenizer> tok;
  if (!a.tokenizer.empty()) tok = std::make_unique<Tokenizer>(Tokenizer::load(a.tokenizer));
  auto be = make_backend(a.device, a.threads);
  LoadedModel lm = load_model(a.checkpoint, *be);
  const int V = lm.model->config().vocab_size;
  if (tok)
    TL_CHECK(tok->vocab_size() <= V, "the tokenizer has ", tok->vocab_size(),
             " pieces but the model only ", V);

  // Prompts as ids; text prompts get the prefix token (bos for imported models, eos for
  // models trained here, whose documents each follow an EOS).
  const std::string prefix = resolve_prompt_prefix(a.prefix, lm.meta);
  const std::vector<std::string> texts = prompt_texts(a);
  std::vector<std::vector<int>> prompts;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int> ids;
    if (a.ids)
      ids = parse_token_ids(texts[i], i);
    else
      ids = encode_prompt(*tok, texts[i], prefix);
    TL_CHECK(!ids.empty(), "prompt ", i, " is empty");
    for (int id : ids)
      TL_CHECK(id < V, "prompt ", i, ": token id ", id, " is outside the model's vocabulary of ",
               V);
    prompts.push_back(std::move(ids));
  }
  const size_t B = prompts.size();
  if (!a.no_cache) {  // the cached path stops at the context (--no-cache slides its window)
    const int ctx = lm.model->config().max_seq_len;
    size_t longest = 0;
    for (size_t i = 1; i < B; ++i)
      if (prompts[i].size() > prompts[longest].size()) longest = i;
    const int64_t len = int64_t(prompts[longest].size());
    if (len <= ctx && len + a.max_new - 1 > ctx)  // the last new token is never fed back
      log_warn("--max-new ", a.max_new, ": the model has a context of ", ctx, " tokens and prompt ",
               longest, " has ", len, ", so at most ", ctx - len + 1,
               " new tokens fit; generation stops there");
  }

  BatchOptions bo;
  bo.max_new = a.max_new;
  bo.sampling.temperature = a.temperature;
  bo.sampling.top_k = a.top_k;
  bo.sampling.top_p = a.top_p;
  bo.seed = a.seed;
  bo.stop_id = a.ignore_eos || !tok ? -1 : tok->eos_id();  // no tokenizer: no EOS to stop at
  bo.prefill_tokens = a.prefill_tokens;

  // Streaming (one prompt): ids as they come, or the text decoded so far minus what is shown.
  const bool stream = B == 1;
  std::string shown;
  size_t skip = 0;  // prefix tokens not shown
  if (stream && !a.ids) {
    skip = prompts[0].size() - tok->encode(texts[0]).size();
    shown = tok->decode(std::vector<int>(prompts[0].begin() + ptrdiff_t(skip), prompts[0].end()));
    std::fputs(shown.c_str(), stdout);
    std::fflush(stdout);
  }
  std::vector<int> seq = prompts[0];
  auto on_token = [&](int row, int id) {
    if (!stream) return;
    if (a.ids) {
      std::printf(seq.size() == prompts[0].size() ? "%d" : " %d", id);
      seq.push_back(id);
      std::fflush(stdout);
      return;
    }
    seq.push_back(id);
    std::string text = tok->decode(std::vector<int>(seq.begin() + ptrdiff_t(skip), seq.end()));
    if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
      std::fputs(text.c_str() + shown.size(), stdout);
      std::fflush(stdout);
      shown = text;
    }
  };

  GenerateStats st;
  std::vector<std::vector<int>> outs;
  if (a.no_cache) {  // the reference path: each prompt alone, the window recomputed per token
    Timer timer;
    for (size_t b = 0; b < B; ++b) {
      std::vector<int> ids = prompts[b];
      generate(*lm.model, ids, a.max_new, bo.sampling, a.seed + b, bo.stop_id,
               [&](int id) { on_token(int(b), id); });
      outs.emplace_back(ids.begin() + ptrdiff_t(prompts[b].size()), ids.end());
      st.prompt_tokens += int64_t(prompts[b].size());
      st.new_tokens += int64_t(outs.back().size());
    }
    st.decode_seconds = timer.seconds();
  } else {
    // Untimed runs first (--warmup): kernels loaded and GEMM algorithms chosen, as in a
    // process that has generated before (what a timed comparison with a warmed-up reference
    // needs); the timed run gives the same tokens.
    for (int i = 0; i < a.warmup; ++i) generate_batch(*lm.model, prompts, bo, {}, nullptr);
    outs = generate_batch(*lm.model, prompts, bo, on_token, &st);
  }

  if (stream) {
    std::printf("\n");
  } else {
    for (size_t b = 0; b < B; ++b) {
      if (a.ids) {
        print_ids(outs[b]);
      } else {
        std::printf("=== %zu ===\n%s%s\n", b, texts[b].c_str(), tok->decode(outs[b]).c_str());
      }
    }
  }
  std::fflush(stdout);
  std::fprintf(stderr,
               "[%s | batch %zu | %lld prompt + %lld new tokens | prefill %.3f s | decode %.3f s "
               "(%d steps, %.1f tokens/s) | %.1f tokens/s overall]\n",
               be->describe().c_str(), B, (long long)st.prompt_tokens, (long long)st.new_tokens,
               st.prefill_seconds, st.decode_seconds, st.steps, st.decode_tokens_per_s(),
               st.tokens_per_s());
  if (!a.json_out.empty()) {
    json j = {{"device", be->describe()},
              {"batch", B},
              {"cache", !a.no_cache},
              {"warmup_runs", a.no_cache ? 0 : a.warmup},
              {"prompt_tokens", st.prompt_tokens},
              {"new_tokens", st.new_tokens},
              {"prefill_seconds", st.prefill_seconds},
              {"decode_seconds", st.decode_seconds},
              {"decode_steps", st.steps},
              {"decode_tokens_per_s", st.decode_tokens_per_s()},
              {"tokens_per_s", st.tokens_per_s()},
              {"outputs", outs}};
    write_file_atomic(a.json_out, j.dump() + "\n");
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "generate", "Generate text from a checkpoint (batched prompts, KV cache, CPU or GPU)");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint file (.tlck) or sharded step folder")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--tokenizer", a->tokenizer, "SentencePiece .model (not needed with --ids)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--prompt", a->prompts, "Prompt text (repeatable: the prompts run as one batch)");
  cmd->add_option("--prompts-file", a->prompts_file, "File of prompts, one per line")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--ids", a->ids,
                "Prompts are token ids ('1 450 4996'), given as is (no prefix); outputs are "
                "printed as ids, one line per prompt. Without --tokenizer nothing stops a row "
                "before --max-new");
  cmd->add_option("--max-new", a->max_new,
                  "Tokens to generate per prompt (at least 1; the cache stops at the context)");
  cmd->add_option("--temperature", a->temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->top_p, "Nucleus sampling mass (1 = off)")
      ->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--top-k", a->top_k, "Sample among the k most likely (0 = off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", a->seed, "Sampling seed (prompt i of a batch uses seed + i)");
  cmd->add_option("--prefix", a->prefix,
                  "Token before each text prompt: bos, eos, none, or auto (eos for models trained "
                  "here, whose documents follow an EOS; bos for imported ones)")
      ->check(CLI::IsMember({"auto", "bos", "eos", "none"}));
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Always generate --max-new tokens (benchmarks)");
  cmd->add_flag("--no-cache", a->no_cache,
                "Recompute the whole window for every token, one prompt at a time (reference)");
  cmd->add_option("--prefill-tokens", a->prefill_tokens,
                  "Prompt tokens per prefill pass over the batch (bounds activation memory)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", a->warmup,
                  "Untimed runs of the same generation before the timed one (benchmarks)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--json", a->json_out, "Also write timings and the new token ids as JSON here");
  cmd->add_option("--device", a->device, "cpu, cuda or auto");
  cmd->add_option("--threads", a->threads, "CPU threads (0 = all cores)");
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace tl::cli
