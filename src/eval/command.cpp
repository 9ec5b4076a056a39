#include "eval/command.h"

#include <cstdio>
#include <filesystem>

#include "checkpoint/load.h"
#include "core/fs.h"
#include "core/log.h"
#include "eval/run.h"

namespace tl::eval {

namespace {

void check_output_folder(const std::string& path, const char* flag) {
  if (path.empty()) return;
  const std::string dir = std::filesystem::path(path).parent_path().string();
  TL_CHECK(dir.empty() || is_directory(dir), flag, " '", path, "': the folder '", dir,
           "' does not exist");
  TL_CHECK(!is_directory(path), flag, " '", path, "' is a folder");
}

}  // namespace

void run_task_eval(const TaskEvalArgs& a) {
  TL_CHECK(!a.tokenizer.empty(), "eval --task needs --tokenizer (the checkpoint's .model)");
  check_output_folder(a.json_out, "--json");
  check_output_folder(a.samples_out, "--samples");
  EvalOptions opts;
  for (const auto& spec : a.tasks) {
    TaskSpec t = parse_task_spec(spec);
    t.limit = a.limit;
    opts.tasks.push_back(t);
  }
  add_fewshot_paths(opts.tasks, a.fewshot_from);
  opts.num_fewshot = a.num_fewshot;
  opts.fewshot_seed = a.fewshot_seed;
  opts.bos = a.bos == "on" ? BosMode::On : BosMode::Off;
  const Tokenizer tok = Tokenizer::load(a.tokenizer);
  auto be = make_backend(a.device, a.threads);
  const bool gpu = be->device() == Device::CUDA;
  opts.scorer.max_rows = a.batch > 0 ? a.batch : gpu ? 512 : 32;
  opts.scorer.max_tokens = a.max_tokens > 0 ? a.max_tokens : gpu ? 32768 : 2048;
  opts.scorer.prefix_reuse = !a.no_prefix_reuse;
  LoadedModel lm = load_model(a.checkpoint, *be);
  LlamaModel& model = *lm.model;
  TL_CHECK(tok.vocab_size() <= model.config().vocab_size, "the tokenizer has ", tok.vocab_size(),
           " pieces but the model only ", model.config().vocab_size);

  // Every task is read, validated and tokenized before anything is scored.
  const int window = model.config().max_seq_len;
  std::vector<PreparedTask> tasks = prepare_tasks(opts, tok, window);
  log_info("eval: ", be->describe(), ", window ", window, ", BOS ", a.bos, ", ",
           opts.scorer.prefix_reuse ? "prefix reuse" : "no prefix reuse", ", batch ",
           opts.scorer.max_rows, " requests / ", opts.scorer.max_tokens, " tokens");
  std::vector<MetricRow> rows;
  std::string samples;
  for (const PreparedTask& t : tasks) {
    int64_t requests = 0;
    for (const auto& r : t.requests) requests += int64_t(r.size());
    log_info("eval: ", t.data.name, ": ", t.data.docs.size(), " documents, ", requests, " requests",
             t.data.num_fewshot ? cat(", ", t.data.num_fewshot, "-shot") : "",
             t.truncated ? cat(", ", t.truncated, " cut on the left to the window") : "");
    TaskOutcome out = run_task(model, t, opts.scorer);
    log_info("eval: ", t.data.name, ": ", cat(out.rows[0].seconds), " s, ", out.stats.tokens,
             " tokens run (", out.stats.real_tokens, " real, ", out.stats.shared_tokens,
             " saved by prefix reuse) in ", out.stats.batches, " batches");
    rows.insert(rows.end(), out.rows.begin(), out.rows.end());
    if (!a.samples_out.empty())
      for (size_t d = 0; d < out.scores.size(); ++d)
        samples += sample_json(t.data.name, t.data.docs[d], out.scores[d]).dump() + "\n";
  }
  std::printf("%s", metrics_table(rows).c_str());
  std::fflush(stdout);
  if (!a.json_out.empty()) {
    json j = {{"checkpoint", a.checkpoint}, {"tokenizer", a.tokenizer},
              {"device", be->describe()},   {"bos", a.bos},
              {"window", window},           {"results", metrics_json(rows)}};
    if (a.num_fewshot >= 0) j["num_fewshot"] = a.num_fewshot;
    if (!a.fewshot_from.empty()) {
      json from = json::object();
      for (const TaskSpec& t : opts.tasks)
        if (!t.fewshot_path.empty()) from[t.name] = t.fewshot_path;
      j["fewshot_from"] = from;
      j["fewshot_seed"] = a.fewshot_seed;
    }
    if (a.limit > 0) j["limit"] = a.limit;
    write_file_atomic(a.json_out, j.dump(2) + "\n");
  }
  if (!a.samples_out.empty()) write_file_atomic(a.samples_out, samples);
}

}  // namespace tl::eval
