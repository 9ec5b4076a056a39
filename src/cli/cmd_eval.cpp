// tinyllama eval --checkpoint CK --data DIR|FILES... [--seq-len T]          (loss, perplexity)
// tinyllama eval --checkpoint CK --tokenizer MODEL --task NAME=PATH [...]   (zero-shot tasks)
#include <cmath>
#include <cstdio>

#include "checkpoint/load.h"
#include "cli/commands.h"
#include "core/log.h"
#include "eval/command.h"
#include "train/evaluate.h"

namespace tl::cli {

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "With --data: mean next-token cross-entropy of a checkpoint over the non-overlapping "
      "(T+1)-token blocks of packed shards. With --task: accuracy on hellaswag, "
      "openbookqa, winogrande, arc_easy, arc_challenge, boolq, piqa and mmlu, as "
      "lm-evaluation-harness 0.4 scores them, zero- or few-shot (docs/eval.md)");
  struct Opts {
    std::string checkpoint, device = "auto";
    std::vector<std::string> data;
    int seq_len = 0, batch = 8, threads = 0;
    int64_t max_blocks = 0;
    eval::TaskEvalArgs tasks;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "Checkpoint file (.tlck) or sharded step folder")
      ->required()
      ->check(CLI::ExistingPath);
  auto* data = cmd->add_option("--data", o->data, "Shard files or folders of *.bin shards");
  cmd->add_option("--seq-len", o->seq_len, "Block length T (default: the model's context)")
      ->check(CLI::NonNegativeNumber);
  auto* batch = cmd->add_option("--batch", o->batch,
                                "--data: blocks per forward pass (8); --task: requests per forward "
                                "pass (cpu 32, cuda 512)")
                    ->check(CLI::PositiveNumber);
  cmd->add_option("--max-blocks", o->max_blocks, "Evaluate only the first N blocks (0 = all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", o->device, "cpu, cuda or auto");
  cmd->add_option("--threads", o->threads, "CPU threads (0 = all cores)");
  eval::TaskEvalArgs& t = o->tasks;
  auto* task = cmd->add_option("--task", t.tasks,
                               "NAME=PATH: a task and its dataset (a file, folder or glob of "
                               ".parquet/.jsonl/.json); repeatable");
  data->excludes(task);
  cmd->add_option("--tokenizer", t.tokenizer, "--task: SentencePiece .model of the checkpoint");
  cmd->add_option("--limit", t.limit,
                  "--task: only the first N documents of each task (each MMLU subject); 0 = all")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--num-fewshot", t.num_fewshot,
                  "--task: few-shot examples per document (default 5 for mmlu, 0 otherwise); "
                  "tasks other than mmlu need --fewshot-from")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--fewshot-from", t.fewshot_from,
                  "--task: NAME=PATH: the split a task's few-shot examples are sampled from "
                  "(its training split, as the harness); repeatable; not for mmlu (dev files)");
  cmd->add_option("--fewshot-seed", t.fewshot_seed,
                  "--task: seed of the few-shot sampler (the harness's fewshot seed, 1234)");
  cmd->add_option("--bos", t.bos,
                  "--task: prepend BOS to every request: off (harness <= 0.4.9.1, TinyLlama's "
                  "numbers) or on (harness >= 0.4.9.2 with Llama tokenizers)")
      ->check(CLI::IsMember({"off", "on"}));
  cmd->add_option("--max-batch-tokens", t.max_tokens,
                  "--task: tokens per forward pass, padding included (cpu 2048, cuda 32768)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-prefix-reuse", t.no_prefix_reuse,
                "--task: compute each choice's context separately (slower; same results)");
  cmd->add_option("--json", t.json_out, "--task: also write the results as JSON");
  cmd->add_option("--samples", t.samples_out,
                  "--task: write one JSON line per document (log-likelihoods, lengths, greedy "
                  "flags, prediction, label)");
  cmd->callback([o, batch] {
    if (!o->tasks.tasks.empty()) {
      if (batch->count()) o->tasks.batch = o->batch;
      o->tasks.checkpoint = o->checkpoint;
      o->tasks.device = o->device;
      o->tasks.threads = o->threads;
      eval::run_task_eval(o->tasks);
      return;
    }
    TL_CHECK(!o->data.empty(), "eval needs --data (loss) or --task (zero-shot accuracy)");
    auto be = make_backend(o->device, o->threads);
    LoadedModel lm = load_model(o->checkpoint, *be);
    const int T = lm.model->config().seq_len_or_context(o->seq_len);
    TL_CHECK(T <= lm.model->config().max_seq_len, "--seq-len ", T,
             " exceeds the model's context of ", lm.model->config().max_seq_len);
    SequentialBlocks blocks(expand_shard_paths(o->data), T);
    TL_CHECK(blocks.num_blocks() > 0, "the data holds no complete block of ", T + 1, " tokens");
    LossSum s = evaluate(*lm.model, blocks, T, o->batch, o->max_blocks);
    TL_CHECK(std::isfinite(s.mean()), "eval: the loss over ", s.count, " tokens is not finite (",
             s.mean(), "): the checkpoint '", o->checkpoint,
             "' holds NaN/Inf weights, or its activations overflow");
    std::printf("blocks %lld | tokens %lld | loss %.6f | perplexity %.4f\n",
                (long long)(o->max_blocks > 0 ? std::min(o->max_blocks, blocks.num_blocks())
                                              : blocks.num_blocks()),
                (long long)s.count, s.mean(), std::exp(s.mean()));
  });
}

}  // namespace tl::cli
