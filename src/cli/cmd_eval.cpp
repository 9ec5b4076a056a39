// tinyllama eval --checkpoint CK --data DIR|FILES... [--seq-len T]
#include <cmath>
#include <cstdio>

#include "checkpoint/load.h"
#include "cli/commands.h"
#include "core/log.h"
#include "train/evaluate.h"

namespace tl::cli {

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Mean next-token cross-entropy of a checkpoint over the non-overlapping (T+1)-token blocks "
      "of packed shards, in file-name and position order");
  struct Opts {
    std::string checkpoint, device = "auto";
    std::vector<std::string> data;
    int seq_len = 0, batch = 8, threads = 0;
    int64_t max_blocks = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "Checkpoint file (.tlck) or sharded step folder")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--data", o->data, "Shard files or folders of *.bin shards")->required();
  cmd->add_option("--seq-len", o->seq_len, "Block length T (default: the model's context)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", o->batch, "Blocks per forward pass")->check(CLI::PositiveNumber);
  cmd->add_option("--max-blocks", o->max_blocks, "Evaluate only the first N blocks (0 = all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", o->device, "cpu, cuda or auto");
  cmd->add_option("--threads", o->threads, "CPU threads (0 = all cores)");
  cmd->callback([o] {
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
