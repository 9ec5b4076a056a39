// Decode throughput of the server's scheduler (continuous batching, in-process: no HTTP),
// beside static batching (generate_batch) on the same model, at several batch sizes.
//   tinyllama_serve_bench [--device cuda] [--preset tinyllama-1.1b] [--batches 1,8,32,64]
//                         [--prompt 128] [--new 256] [--json FILE] [--profile]
// --profile: afterwards, batch-1 and batch-32 decode steps op by op with the backend's
// profiler on: device milliseconds a step by op category, and the weight bandwidth the GEMMs
// reach (where a decode step's time goes).
// Random weights (TinyLlama's init), greedy, EOS ignored, prompts of random ids. For each
// batch B: B sequences are submitted at once to a scheduler of B rows; "decode tokens/s" is
// the new tokens after each sequence's first over the time from the last first token to the
// end (steady decoding with every row busy), "overall" includes the prefill.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/fs.h"
#include "core/json_reader.h"
#include "core/rng.h"
#include "core/timer.h"
#include "generate/generate.h"
#include "model/llama_infer.h"
#include "serve/scheduler.h"

using namespace tl;

namespace {

struct Args {
  std::string device = "cuda", preset = "tinyllama-1.1b", json_out;
  std::vector<int> batches = {1, 8, 32, 64};
  int prompt = 128, new_tokens = 256;
  bool profile = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--profile") {
      a.profile = true;
      continue;
    }
    TL_CHECK(i + 1 < argc, "serve_bench: ", k, " needs a value");
    const std::string v = argv[++i];
    if (k == "--device")
      a.device = v;
    else if (k == "--preset")
      a.preset = v;
    else if (k == "--json")
      a.json_out = v;
    else if (k == "--prompt")
      a.prompt = std::stoi(v);
    else if (k == "--new")
      a.new_tokens = std::stoi(v);
    else if (k == "--batches") {
      a.batches.clear();
      std::stringstream ss(v);
      for (std::string b; std::getline(ss, b, ',');) a.batches.push_back(std::stoi(b));
    } else {
      fail("serve_bench: unknown option ", k);
    }
  }
  return a;
}

struct Result {
  int batch;
  double sched_decode, sched_overall, static_decode, static_overall;
};

Result run(LlamaModel& model, const Args& a, int B) {
  const int V = model.config().vocab_size;
  std::vector<std::vector<int>> prompts;
  Rng rng(static_cast<uint64_t>(B));
  for (int b = 0; b < B; ++b) {
    std::vector<int> p(static_cast<size_t>(a.prompt));
    for (int& x : p) x = int(rng.below(uint64_t(V)));
    prompts.push_back(p);
  }
  Result r{B, 0, 0, 0, 0};
  {
    serve::SchedulerOptions so;
    so.max_batch = B;
    so.max_len = a.prompt + a.new_tokens;
    so.prefill_tokens = std::max(2048, a.prompt);
    so.max_queue = B;
    serve::Scheduler sched(model, so);
    std::vector<std::shared_ptr<serve::Job>> jobs;
    for (int b = 0; b < B; ++b) {
      serve::SeqSpec s;
      s.prompt = prompts[size_t(b)];
      s.max_new = a.new_tokens;
      s.sampling.temperature = 0;
      jobs.push_back(std::make_shared<serve::Job>(std::vector<serve::SeqSpec>{s}));
    }
    Timer t;
    for (auto& j : jobs)
      TL_CHECK(sched.submit(j).status == serve::SubmitStatus::Ok, "submit failed");
    double all_first = 0;
    for (auto& j : jobs) {  // the time every sequence has its first token
      std::unique_lock lk(j->mu);
      j->cv.wait(
          lk, [&] { return !j->out[0].tokens.empty() || j->out[0].finish != serve::Finish::None; });
    }
    all_first = t.seconds();
    int64_t total = 0;
    for (auto& j : jobs) {
      j->wait_finished();
      total += int64_t(j->out[0].tokens.size());
    }
    const double end = t.seconds();
    r.sched_decode = double(total - B) / (end - all_first);
    r.sched_overall = double(total) / end;
  }
  BatchOptions bo;
  bo.max_new = a.new_tokens;
  bo.sampling.temperature = 0;
  bo.prefill_tokens = std::max(2048, a.prompt);
  GenerateStats st;
  generate_batch(model, prompts, bo, nullptr, &st);
  r.static_decode = st.decode_tokens_per_s();
  r.static_overall = st.tokens_per_s();
  return r;
}

// Device time of `steps` greedy decode steps at batch B after a prompt, by op category.
void profile_decode(LlamaModel& model, int B, int prompt, int steps) {
  const ModelConfig& c = model.config();
  Backend& be = model.backend();
  LlamaInference inf(model, B, prompt + steps + 1);
  std::vector<int32_t> toks(size_t(B) * size_t(prompt), 7), pos(size_t(B), 0);
  std::vector<int32_t> ids(size_t(B), 0);
  inf.forward(toks.data(), prompt, pos.data(), nullptr, nullptr);
  toks.assign(size_t(B), 7);
  for (int& p : pos) p = prompt;
  inf.forward_argmax(toks.data(), 1, pos.data(), nullptr, ids.data());  // warm-up
  be.synchronize();
  be.take_profile();
  be.set_profiling(true);
  Timer t;
  for (int s = 0; s < steps; ++s) {
    for (int& p : pos) ++p;
    inf.forward_argmax(ids.data(), 1, pos.data(), nullptr, ids.data());
  }
  const double wall = t.seconds();
  be.set_profiling(false);
  const double weight_bytes = 2.0 * double(c.num_params_no_embedding());  // bf16, head included
  std::printf("decode profile, batch %d, %d steps, op by op with events: %.3f ms a step (wall)\n",
              B, steps, 1e3 * wall / steps);
  double total = 0;
  for (const auto& [cat, sec] : be.take_profile()) {
    total += sec;
    std::printf("  %-10s %8.3f ms a step", cat.c_str(), 1e3 * sec / steps);
    if (cat == "matmul")
      std::printf("  (%.2f GB of bf16 weights a step: %.0f GB/s)", weight_bytes / 1e9,
                  weight_bytes / (sec / steps) / 1e9);
    std::printf("\n");
  }
  std::printf("  %-10s %8.3f ms a step on the device\n", "sum", 1e3 * total / steps);
}

}  // namespace

int main(int argc, char** argv) {
  // As the tinyllama binary does: OpenMP threads that spin at barriers starve the other
  // thread's team on shared cores (the scheduler runs on its own thread). Set it, run again.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
  }
  try {
    const Args a = parse(argc, argv);
    auto be = make_backend(a.device, 0);
    const ModelConfig cfg = ModelConfig::from_preset(a.preset);
    LlamaModel model(cfg, *be);
    model.init_weights(1);
    std::printf("%s | %s | prompt %d | %d new tokens | greedy\n", be->describe().c_str(),
                a.preset.c_str(), a.prompt, a.new_tokens);
    std::printf("%6s  %22s  %22s  %22s  %22s\n", "batch", "scheduler decode tok/s",
                "scheduler overall", "static decode tok/s", "static overall");
    json out = json::array();
    for (int B : a.batches) {
      const Result r = run(model, a, B);
      std::printf("%6d  %22.1f  %22.1f  %22.1f  %22.1f\n", B, r.sched_decode, r.sched_overall,
                  r.static_decode, r.static_overall);
      std::fflush(stdout);
      out.push_back({{"batch", B},
                     {"scheduler_decode_tokens_per_s", r.sched_decode},
                     {"scheduler_tokens_per_s", r.sched_overall},
                     {"static_decode_tokens_per_s", r.static_decode},
                     {"static_tokens_per_s", r.static_overall}});
    }
    if (a.profile)
      for (int B : {1, 32}) profile_decode(model, B, a.prompt, 64);
    if (!a.json_out.empty())
      write_file_atomic(a.json_out, json{{"device", be->describe()},
                                         {"preset", a.preset},
                                         {"prompt", a.prompt},
                                         {"new_tokens", a.new_tokens},
                                         {"results", out}}
                                            .dump(2) +
                                        "\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
