// `tinyllama eval --task` end to end on the fixture tasks (tests/fixtures/eval) with a tiny
// random model: the table, --json, --samples, --limit; and every kind of bad input gives one
// message naming the file, row and field, a non-zero exit, and no output written.
#include <gtest/gtest.h>

#include "data_test_util.h"

using namespace tl;

namespace {

class EvalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (dt::shared_data_dir().empty())
      GTEST_SKIP() << "no llama2-tokenizer.model in the shared data";
    auto r =
        run(std::string(TL_BINARY) +
            " init --preset tinyllama-1.1b --set vocab_size=32000 --set dim=32 --set n_layers=2"
            " --set n_heads=4 --set n_kv_heads=2 --set ffn_dim=64 --set max_seq_len=128 --out " +
            ck());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string ck() const { return tmp_ / "tiny.tlck"; }
  dt::CommandResult run(const std::string& cmd) const { return dt::run_command(cmd, tmp_.path()); }
  dt::CommandResult eval(const std::string& args) const {
    return run(std::string(TL_BINARY) + " eval --device cpu --threads 2 --checkpoint " + ck() +
               " --tokenizer " + dt::llama_model() + " " + args);
  }
  static std::string fx(const std::string& name) {
    return std::string(TL_SOURCE_DIR) + "/tests/fixtures/eval/" + name;
  }
  // One bad row: runs the task on it; the message must name the file, row and field, and
  // the --json file written before must be left as it was.
  void expect_bad(const std::string& task, const std::string& file, const std::string& content,
                  const std::vector<std::string>& parts) {
    dt::write_text(tmp_ / file, content);
    dt::write_text(tmp_ / "out.json", "old");
    auto r = eval("--task " + task + "=" + (tmp_ / file) + " --json " + (tmp_ / "out.json") +
                  " --samples " + (tmp_ / "s.jsonl"));
    EXPECT_NE(r.exit_code, 0) << file;
    for (const auto& p : parts)
      EXPECT_NE(r.err.find(p), std::string::npos) << "stderr '" << r.err << "' lacks '" << p << "'";
    EXPECT_EQ(dt::read_text(tmp_ / "out.json"), "old") << file;
    EXPECT_FALSE(std::filesystem::exists(tmp_ / "s.jsonl")) << file;
    EXPECT_EQ(r.out, "") << file;
  }
  dt::TempDir tmp_;
};

const char* kTasks[] = {"hellaswag",     "openbookqa", "winogrande", "arc_easy",
                        "arc_challenge", "boolq",      "piqa",       "mmlu"};

}  // namespace

TEST_F(EvalCli, AllTasksTableJsonAndSamples) {
  std::string args;
  for (const char* t : kTasks) args += std::string(" --task ") + t + "=" + fx(t);
  auto r = eval(args + " --json " + (tmp_ / "out.json") + " --samples " + (tmp_ / "s.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* t : kTasks)
    EXPECT_NE(r.out.find(std::string("\n") + t + " "), std::string::npos) << t;
  EXPECT_NE(r.out.find("- mmlu_anatomy"), std::string::npos);
  const json j = json::parse(dt::read_text(tmp_ / "out.json"));
  std::map<std::string, int64_t> n;
  for (const auto& row : j["results"]) n[row["task"]] = row["n"];
  EXPECT_EQ(n["hellaswag"], 4);
  EXPECT_EQ(n["arc_challenge"], 3);
  EXPECT_EQ(n["mmlu"], 4);
  EXPECT_EQ(n["mmlu_stem"], 4);
  EXPECT_EQ(n["mmlu_anatomy"], 2);
  EXPECT_EQ(j["bos"], "off");
  for (const auto& row : j["results"]) {
    const std::string t = row["task"];
    const bool norm = t == "hellaswag" || t == "openbookqa" || t == "arc_easy" ||
                      t == "arc_challenge" || t == "piqa";
    EXPECT_EQ(row.contains("acc_norm"), norm) << t;
  }
  // Samples: one line per document; the prediction is the argmax of its log-likelihoods.
  std::istringstream lines(dt::read_text(tmp_ / "s.jsonl"));
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    const json s = json::parse(line);
    const auto lls = s["lls"].get<std::vector<double>>();
    ASSERT_EQ(lls.size(), s["lengths"].size());
    ASSERT_EQ(lls.size(), s["greedy"].size());
    EXPECT_EQ(s["pred"], std::max_element(lls.begin(), lls.end()) - lls.begin());
    EXPECT_EQ(s["acc"], s["pred"] == s["label"] ? 1 : 0);
    for (double ll : lls) EXPECT_LT(ll, 0);
  }
  EXPECT_EQ(count, 4 + 3 + 4 + 3 + 3 + 3 + 3 + 4);
}

TEST_F(EvalCli, LimitAndPrefixReuseGiveTheSameScores) {
  auto a = eval("--task hellaswag=" + fx("hellaswag") + " --task mmlu=" + fx("mmlu") +
                " --limit 1 --samples " + (tmp_ / "a.jsonl"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto b = eval("--task hellaswag=" + fx("hellaswag") + " --task mmlu=" + fx("mmlu") +
                " --limit 1 --no-prefix-reuse --batch 1 --samples " + (tmp_ / "b.jsonl"));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::istringstream la(dt::read_text(tmp_ / "a.jsonl")), lb(dt::read_text(tmp_ / "b.jsonl"));
  int count = 0;
  for (std::string x, y; std::getline(la, x) && std::getline(lb, y); ++count) {
    const json ja = json::parse(x), jb = json::parse(y);
    EXPECT_EQ(ja["pred"], jb["pred"]);
    for (size_t i = 0; i < ja["lls"].size(); ++i)
      EXPECT_NEAR(ja["lls"][i].get<double>(), jb["lls"][i].get<double>(), 1e-3);
  }
  EXPECT_EQ(count, 1 + 2);  // hellaswag 1, mmlu 1 per subject
}

TEST_F(EvalCli, BadInputIsOneClearMessageAndNothingWritten) {
  expect_bad("hellaswag", "h.jsonl",
             "{\"activity_label\":\"a\",\"ctx_a\":\"b\",\"ctx_b\":\"c\",\"endings\":[\"x\",\"y\"],"
             "\"label\":\"0\"}\n"
             "{\"activity_label\":\"a\",\"ctx_a\":\"b\",\"ctx_b\":\"c\",\"label\":\"0\"}\n",
             {"hellaswag", "h.jsonl", "row 1", "field 'endings'", "missing"});
  expect_bad(
      "hellaswag", "e.jsonl",
      "{\"activity_label\":\"a\",\"ctx_a\":\"b\",\"ctx_b\":\"c\",\"endings\":[],\"label\":\"0\"}\n",
      {"e.jsonl", "row 0", "field 'endings'", "empty list"});
  expect_bad("piqa", "p.json", "[{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":2}]",
             {"piqa", "p.json", "row 0", "field 'label'", "2 is out of range for 2 choices"});
  expect_bad("boolq", "b.jsonl", "{\"passage\":\"p\",\"question\":\"q\",\"label\":\"yes\"}\n",
             {"b.jsonl", "row 0", "field 'label'", "not an integer"});
  expect_bad("arc_easy", "a.jsonl",
             "{\"question\":\"q\",\"choices\":{\"text\":[\"x\",\"y\"],\"label\":[\"A\",\"B\"]},"
             "\"answerKey\":\"C\"}\n",
             {"a.jsonl", "row 0", "field 'answerKey'", "'C' is not one of the labels (A, B)"});
  expect_bad("openbookqa", "o.jsonl",
             "{\"question_stem\":\"q\",\"choices\":{\"text\":[\"x\",\"y\"]},\"answerKey\":\"A\"}\n",
             {"o.jsonl", "row 0", "field 'choices.label'", "missing"});
  expect_bad(
      "winogrande", "w.jsonl",
      "{\"sentence\":\"no blank here\",\"option1\":\"a\",\"option2\":\"b\",\"answer\":\"1\"}\n",
      {"w.jsonl", "row 0", "field 'sentence'", "no '_' blank"});
  expect_bad("winogrande", "w2.jsonl",
             "{\"sentence\":\"a _ b\",\"option1\":\"a\",\"option2\":\"b\",\"answer\":\"\"}\n",
             {"w2.jsonl", "row 0", "field 'answer'"});
  expect_bad("boolq", "bad.jsonl", "{\"passage\":\"p\",\"question\":\"q\",\"label\":1}\n{oops\n",
             {"bad.jsonl", "line 2", "not JSON"});
  expect_bad("arc_easy", "fake.parquet", "{\"question\": \"q\"}\n", {"fake.parquet", "PAR1"});
  expect_bad("mmlu", "mmlu/notes.jsonl", "{}\n", {"notes.jsonl", "must start with test or dev"});
  dt::write_text(tmp_ / "x.jsonl", "{}\n");
  auto r = eval("--task squad=" + (tmp_ / "x.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("unknown task 'squad' (known tasks: hellaswag, openbookqa, winogrande, "
                       "arc_easy, arc_challenge, boolq, piqa, mmlu)"),
            std::string::npos)
      << r.err;
  // A bad row after good ones in a second task: still nothing printed or written.
  dt::write_text(tmp_ / "p2.jsonl",
                 "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":0}\n{\"goal\":null}\n");
  r = eval("--task boolq=" + fx("boolq") + " --task piqa=" + (tmp_ / "p2.jsonl") + " --json " +
           (tmp_ / "o2.json"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("p2.jsonl' row 1 (line 2): field 'goal': is null"), std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp_ / "o2.json"));
  EXPECT_EQ(r.out, "");
}

TEST_F(EvalCli, FewshotFromAnotherSplit) {
  auto r =
      eval("--task hellaswag=" + fx("hellaswag") + " --task piqa=" + fx("piqa") +
           " --task mmlu=" + fx("mmlu") + " --fewshot-from hellaswag=" + fx("fewshot/hellaswag") +
           " --fewshot-from piqa=" + fx("fewshot/piqa") + " --num-fewshot 2 --limit 2 --json " +
           (tmp_ / "out.json") + " --samples " + (tmp_ / "s.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("hellaswag: 2 documents, 8 requests, 2-shot"), std::string::npos) << r.err;
  const json j = json::parse(dt::read_text(tmp_ / "out.json"));
  EXPECT_EQ(j["num_fewshot"], 2);
  EXPECT_EQ(j["fewshot_seed"], 1234);
  EXPECT_EQ(j["fewshot_from"]["piqa"], fx("fewshot/piqa"));
  // The rows drawn, as tools/fixtures/make_fewshot_prompts.py's Python draws them.
  std::istringstream lines(dt::read_text(tmp_ / "s.jsonl"));
  std::string first;
  std::getline(lines, first);
  EXPECT_EQ(json::parse(first)["fewshot_rows"], json::array({3, 0}));

  // --fewshot-seed changes the draws.
  r = eval("--task hellaswag=" + fx("hellaswag") +
           " --fewshot-from hellaswag=" + fx("fewshot/hellaswag") +
           " --num-fewshot 5 --fewshot-seed 7 --limit 1 --samples " + (tmp_ / "s7.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(dt::read_text(tmp_ / "s7.jsonl"))["fewshot_rows"],
            json::array({2, 1, 3, 5, 0}));
}

TEST_F(EvalCli, FewshotBadInput) {
  auto expect_error = [&](const std::string& args, const std::vector<std::string>& parts) {
    auto r = eval(args);
    EXPECT_NE(r.exit_code, 0) << args;
    for (const auto& p : parts)
      EXPECT_NE(r.err.find(p), std::string::npos) << "stderr '" << r.err << "' lacks '" << p << "'";
    EXPECT_EQ(r.out, "") << args;
  };
  const std::string arc = "--task arc_easy=" + fx("arc_easy");
  expect_error(arc + " --num-fewshot 2", {"arc_easy", "--fewshot-from arc_easy=PATH"});
  expect_error(arc + " --num-fewshot 9 --fewshot-from arc_easy=" + fx("fewshot/arc_easy"),
               {"arc_easy", "--num-fewshot 9 draws 9 examples", "holds 5 rows"});
  expect_error(arc + " --num-fewshot -1", {"--num-fewshot"});
  expect_error(arc + " --num-fewshot 1 --fewshot-from piqa=" + fx("fewshot/piqa"),
               {"no --task piqa=PATH"});
  expect_error(arc + " --num-fewshot 1 --fewshot-from arc_easy", {"expected NAME=PATH"});
  expect_error(arc + " --num-fewshot 1 --fewshot-from arc_easy=" + fx("fewshot/arc_easy") +
                   " --fewshot-from arc_easy=" + fx("fewshot/arc_easy"),
               {"'arc_easy' is given twice"});
  expect_error("--task mmlu=" + fx("mmlu") + " --fewshot-from mmlu=" + fx("mmlu"),
               {"mmlu takes its few-shot examples from the dev files"});
}
