// llama.cpp runs our GGUF files: a small model trained here with the Llama 2 tokenizer is
// exported as f32, f16, bf16 and q8_0 and loaded by llama.cpp itself (node-llama-cpp's
// prebuilt build) and by @huggingface/gguf; tokenization, greedy continuations and next-token
// probabilities must agree with ours. This is also the proof of the RoPE row order: with q/k
// rows in the wrong order llama.cpp's probabilities differ from ours at every position past 0.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "backend/backend.h"
#include "checkpoint/load.h"
#include "ckpt_test_util.h"
#include "data/tokenizer.h"
#include "data_test_util.h"
#include "generate/generate.h"
#include "interop_util.h"
#include "model/llama_infer.h"

using namespace tl;

namespace {

// f32 files: llama.cpp's CPU kernels against ours, both fp32 with other summation orders
// (measured 5e-7; the issue asked for 1e-4).
constexpr double kF32ProbTol = 1e-5;
// The other types: llama.cpp also rounds the activations that meet these weights (to f16 for
// f16 weights, bf16 for bf16, 8-bit blocks for q8_0), so its results move by about the
// relative error of that rounding (2^-11, 2^-8, ~1/254) times the logit spread; these bounds
// sit a few times above what this test measured (printed below: 1.1e-4, 9.3e-4, 5.2e-3 on the
// 2-core dev VM, 2026-12-05) and far below the probabilities' own size (top tokens of 0.05 to
// 0.85), so a wrong row order or tensor still fails them.
constexpr double kF16ProbTol = 5e-4, kBf16ProbTol = 4e-3, kQ8ProbTol = 1.5e-2;

std::string sh(const std::string& cmd) {
  const auto r = ckpt_test::run_cmd(cmd);
  EXPECT_EQ(r.rc, 0) << cmd << "\n" << r.output;
  return r.output;
}

std::vector<double> softmax(const float* x, int n) {
  double m = x[0], s = 0;
  for (int i = 1; i < n; ++i) m = std::max(m, double(x[i]));
  std::vector<double> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) s += p[size_t(i)] = std::exp(double(x[i]) - m);
  for (double& v : p) v /= s;
  return p;
}

}  // namespace

TEST(LlamaCpp, RunsOurGgufExportsLikeWeDo) {
  if (!interop::have_node())
    GTEST_SKIP() << "Node.js/npm not installed: llama.cpp (node-llama-cpp) cannot run";
  if (dt::shared_data_dir().empty())
    GTEST_SKIP() << "../shared/data (the Llama 2 tokenizer) is absent";
  std::string npm_error;
  const std::string node = interop::node_dir(&npm_error);
  ASSERT_FALSE(node.empty()) << npm_error;

  // Train a small model on tinyshakespeare with the Llama 2 tokenizer: prepare, then train.
  ckpt_test::TempDir dir;
  const std::string bin = TL_BINARY, tok = dt::llama_model(),
                    shakes = dt::shared_data_dir() + "/tinyshakespeare.txt";
  sh(bin + " prepare --quiet --tokenizer " + tok +
     " --source shakes --separator '' --val-fraction 0.02 --out " + dir.file("data") + " " +
     shakes);
  json cfg = {{"model",
               {{"vocab_size", 32000},
                {"dim", 64},
                {"n_layers", 2},
                {"n_heads", 4},
                {"n_kv_heads", 2},
                {"ffn_dim", 128},
                {"max_seq_len", 128}}},
              {"data",
               {{"sources",
                 json::array({json{
                     {"name", "shakes"}, {"paths", {dir.file("data/train")}}, {"weight", 1.0}}})},
                {"val", {dir.file("data/val")}},
                {"seq_len", 64},
                {"tokenizer", tok}}},
              {"batch", {{"micro_batch", 8}, {"grad_accum", 1}}},
              {"optim", {{"lr", 1e-2}, {"min_lr", 1e-3}, {"warmup_steps", 10}}},
              {"train",
               {{"steps", 60},
                {"seed", 3},
                {"device", "cpu"},
                {"threads", 2},
                {"run_dir", dir.file("run")},
                {"log_interval", 20}}},
              {"eval", {{"interval", 0}, {"batches", 2}}},
              {"checkpoint", {{"interval", 0}, {"keep", 1}}}};
  ckpt_test::write_bytes(dir.file("cfg.json"), cfg.dump());
  sh(bin + " train --config " + dir.file("cfg.json"));
  const std::string ck = dir.file("run/checkpoints/step_00000060.tlck");
  ASSERT_TRUE(std::filesystem::exists(ck)) << ckpt_test::run_cmd("ls -R " + dir.path()).output;
  const std::vector<std::string> types = {"f32", "f16", "bf16", "q8_0"};
  for (const auto& t : types)
    sh(bin + " export --checkpoint " + ck + " --format gguf --dtype " + t + " --out " +
       dir.file(t + ".gguf"));

  // Ours: tokenization, greedy continuations, next-token probabilities (fp32, CPU).
  const Tokenizer tokenizer = Tokenizer::load(tok);
  const auto cases = dt::llama_cases();
  std::vector<std::string> texts;
  for (const auto& c : cases) texts.push_back(c.first);
  const std::string excerpt = dt::read_text(shakes).substr(2000, 1500);
  texts.push_back(excerpt);
  const std::vector<std::string> prompt_texts = {"First Citizen:\nBefore we proceed",
                                                 "ROMEO:\nO, she doth", "To be, or not to be",
                                                 "The king"};
  std::vector<std::vector<int>> prompts;
  for (const auto& p : prompt_texts) {
    std::vector<int> ids = tokenizer.encode(p);
    ids.insert(ids.begin(), tokenizer.bos_id());
    prompts.push_back(ids);
  }
  std::vector<int> probe = tokenizer.encode(excerpt.substr(0, 300));
  probe.insert(probe.begin(), tokenizer.bos_id());
  probe.resize(std::min<size_t>(probe.size(), 48));
  const int n_new = 24;

  auto be = make_backend("cpu", 2);
  LoadedModel ours = load_model(ck, *be);
  BatchOptions bo;
  bo.max_new = n_new;
  bo.sampling.temperature = 0;
  std::vector<std::vector<int>> our_greedy;
  for (const auto& p : prompts)
    our_greedy.push_back(generate_batch(*ours.model, {p}, bo, nullptr)[0]);
  const int V = 32000, P = int(probe.size());
  std::vector<float> logits(size_t(P) * V);
  {
    LlamaInference inf(*ours.model, 1, P);
    std::vector<int32_t> ids(probe.begin(), probe.end()), pos = {0};
    inf.forward(ids.data(), P, pos.data(), nullptr, logits.data());
  }
  std::vector<std::vector<double>> our_p;
  for (int i = 0; i < P; ++i) our_p.push_back(softmax(logits.data() + size_t(i) * V, V));

  // llama.cpp's.
  json req = {{"texts", texts},    {"prompts", prompts}, {"n_new", n_new},
              {"probes", {probe}}, {"top", 8},           {"context", 128}};
  req["models"] = json::array();
  for (const auto& t : types) req["models"].push_back(dir.file(t + ".gguf"));
  json probe_ids = json::array();
  for (int i = 0; i < P; ++i) {  // our 5 most likely next tokens at each position
    std::vector<int> idx(V);
    for (int k = 0; k < V; ++k) idx[size_t(k)] = k;
    std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](int a, int b) {
      return our_p[size_t(i)][size_t(a)] > our_p[size_t(i)][size_t(b)];
    });
    for (int k = 0; k < 5; ++k) probe_ids.push_back(idx[size_t(k)]);
  }
  req["probe_ids"] = probe_ids;
  ckpt_test::write_bytes(dir.file("req.json"), req.dump());
  const auto run = ckpt_test::run_cmd("(cd '" + node + "' && node llamacpp_check.mjs " +
                                      dir.file("req.json") + " 2>" + dir.file("node.err") + ")");
  ASSERT_EQ(run.rc, 0) << run.output << ckpt_test::read_bytes(dir.file("node.err"));
  const json res = json::parse(run.output);
  ASSERT_EQ(res["models"].size(), types.size());

  for (size_t m = 0; m < types.size(); ++m) {
    const json& r = res["models"][m];
    const std::string& type = types[m];
    SCOPED_TRACE("GGUF " + type);
    // @huggingface/gguf reads our metadata and tensor table.
    const json& meta = r["gguf"]["metadata"];
    EXPECT_EQ(meta["general.architecture"], "llama");
    EXPECT_EQ(meta["llama.embedding_length"], 64);
    EXPECT_EQ(meta["llama.block_count"], 2);
    EXPECT_EQ(meta["llama.attention.head_count_kv"], 2);
    EXPECT_EQ(meta["llama.rope.dimension_count"], 16);
    EXPECT_EQ(meta["tokenizer.ggml.model"], "llama");
    EXPECT_EQ(meta["tokenizer.ggml.tokens"]["length"], 32000);
    EXPECT_EQ(meta["tokenizer.ggml.tokens"]["first"][1], "<s>");
    EXPECT_EQ(meta["tokenizer.ggml.token_type"]["first"][3], 6);  // <0x00> is a byte token
    EXPECT_EQ(r["gguf"]["tensors"].size(), 2u * 9 + 3);
    for (const json& t : r["gguf"]["tensors"]) {
      if (t["name"] == "blk.0.ffn_down.weight") {
        EXPECT_EQ(t["shape"], json::array({128, 64}));
      }
      if (t["name"] == "blk.0.attn_q.weight") {
        EXPECT_EQ(t["dtype"], type == "f32" ? 0 : type == "f16" ? 1 : type == "bf16" ? 30 : 8);
      }
    }

    // Tokenization: llama.cpp's tokenizer from our metadata gives SentencePiece's ids.
    ASSERT_EQ(r["tokens"].size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::vector<int> got = r["tokens"][i].get<std::vector<int>>();
      EXPECT_EQ(got, tokenizer.encode(texts[i])) << "text " << i << ": " << texts[i].substr(0, 60);
      if (i < cases.size()) {
        EXPECT_EQ(got, std::vector<int>(cases[i].second.begin() + 1, cases[i].second.end()))
            << texts[i];
      }
    }

    // Next-token probabilities at every position of the probe.
    const double tol = type == "f32"    ? kF32ProbTol
                       : type == "f16"  ? kF16ProbTol
                       : type == "bf16" ? kBf16ProbTol
                                        : kQ8ProbTol;
    double worst = 0;
    int worst_at = -1;
    const json& rows = r["probes"][0];
    ASSERT_EQ(rows.size(), size_t(P));
    for (int i = 0; i < P; ++i) {
      ASSERT_TRUE(rows[i].is_object()) << "position " << i;
      EXPECT_EQ(rows[i]["count"], V) << "llama.cpp returned a truncated distribution";
      // llama.cpp's sampler normalizes in float32; renormalizing by its sum (in double) leaves the
      // model's own arithmetic to compare.
      const double sum = rows[i]["sum"].get<double>();
      EXPECT_NEAR(sum, 1.0, 1e-3);
      auto diff = [&](int id, double p) {
        const double d = std::fabs(p / sum - our_p[size_t(i)][size_t(id)]);
        if (d > worst) worst = d, worst_at = i;
      };
      for (const auto& [id, p] : rows[i]["p_of"].items()) diff(std::stoi(id), p.get<double>());
      for (const json& e : rows[i]["top"]) diff(e[0].get<int>(), e[1].get<double>());
    }
    std::printf(
        "[ llama.cpp ] %s: max |p_llama.cpp - p_ours| over %d positions = %.3g at position %d "
        "(bound %.1g)\n",
        type.c_str(), P, worst, worst_at, tol);
    EXPECT_LE(worst, tol);

    // Greedy continuations, token for token (f32; the rounded types where the margins allow,
    // so they are only reported).
    int same = 0;
    for (size_t k = 0; k < prompts.size(); ++k) {
      const std::vector<int> got = r["greedy"][k].get<std::vector<int>>();
      if (type == "f32") {
        EXPECT_EQ(got, our_greedy[k]) << "prompt '" << prompt_texts[k] << "'";
      }
      same += got == our_greedy[k];
    }
    std::printf("[ llama.cpp ] %s: %d of %zu greedy continuations (%d tokens) identical\n",
                type.c_str(), same, prompts.size(), n_new);
  }
}
