// Few-shot prompts of the seven non-MMLU tasks against Python: PyRandom against CPython's
// random module (run at test time), and every request of the fixture cases against
// tests/fixtures/eval/fewshot/prompts.json, written by tools/fixtures/make_fewshot_prompts.py
// (the harness's sampler rules with Python's random, independent of our code).
#include <gtest/gtest.h>

#include "core/fs.h"
#include "data_test_util.h"
#include "eval/fewshot.h"
#include "eval/py_random.h"
#include "eval/tasks.h"

using namespace tl;
using namespace tl::eval;

namespace {

std::string fixture(const std::string& name) {
  return std::string(TL_SOURCE_DIR) + "/tests/fixtures/eval/" + name;
}

// Python's own draws for a few seeds: raw words, getrandbits(1..64), _randbelow, and
// sample(range(n), k) on both of its algorithms (pool for n <= setsize, set otherwise).
const char* kPythonScript = R"PY(
import json, random
SEEDS = [0, 1, 1234, 2**32 - 1, 2**32, 2**40 + 5, 2**64 - 1]
SAMPLES = [(1, 1), (3, 3), (5, 0), (21, 5), (22, 5), (30, 6), (60, 6), (85, 8), (86, 8),
           (1000, 11), (39905, 11), (10, 10), (100000, 40)]
out = []
for s in SEEDS:
    r = random.Random(s)
    words = [r.getrandbits(32) for _ in range(5)]
    bits = [r.getrandbits(k) for k in range(1, 65)]
    below = [r._randbelow(n) for n in (1, 2, 3, 7, 100, 2**31 + 1, 2**40 - 3)]
    samples = [r.sample(range(n), k) for n, k in SAMPLES]
    out.append({"seed": s, "words": words, "bits": bits, "below": below,
                "samples": [[n, k, v] for (n, k), v in zip(SAMPLES, samples)]})
print(json.dumps(out))
)PY";

}  // namespace

TEST(EvalPyRandom, MatchesCPython) {
  dt::TempDir tmp;
  dt::write_text(tmp / "draws.py", kPythonScript);
  const auto r = dt::run_command("python3 " + (tmp / "draws.py"), tmp.path());
  if (r.exit_code == 127) GTEST_SKIP() << "python3 not found";
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json want = json::parse(r.out);
  ASSERT_EQ(want.size(), 7u);
  for (const json& w : want) {
    const uint64_t seed = w["seed"];
    PyRandom rng(seed);
    const std::string at = "seed " + std::to_string(seed);
    for (const json& v : w["words"]) EXPECT_EQ(rng.next_u32(), v.get<uint64_t>()) << at;
    for (int k = 1; k <= 64; ++k)
      EXPECT_EQ(rng.getrandbits(k), w["bits"][size_t(k - 1)].get<uint64_t>()) << at << " k " << k;
    const uint64_t ns[] = {1, 2, 3, 7, 100, (1ull << 31) + 1, (1ull << 40) - 3};
    for (size_t i = 0; i < 7; ++i)
      EXPECT_EQ(rng.randbelow(ns[i]), w["below"][i].get<uint64_t>()) << at << " n " << ns[i];
    for (const json& s : w["samples"]) {
      const size_t n = s[0], k = s[1];
      EXPECT_EQ(rng.sample(n, k), s[2].get<std::vector<size_t>>())
          << at << " n " << n << " k " << k;
    }
  }
}

TEST(EvalPyRandom, KnownValuesAndBadArguments) {
  // CPython 3.11: random.Random(1234).getrandbits(32) and .sample(range(10), 3).
  EXPECT_EQ(PyRandom(1234).next_u32(), 4150886329u);
  EXPECT_EQ(PyRandom(1234).sample(10, 3), (std::vector<size_t>{7, 1, 0}));
  PyRandom rng(1);
  EXPECT_TRUE(rng.sample(4, 0).empty());
  DT_EXPECT_THROW_WITH(rng.sample(3, 4), "4 items from a population of 3");
  DT_EXPECT_THROW_WITH(rng.randbelow(0), "randbelow(0)");
}

TEST(EvalFewshot, PromptsMatchPython) {
  const json want = json::parse(read_file(fixture("fewshot/prompts.json")));
  ASSERT_GE(want["cases"].size(), 10u);
  for (const json& c : want["cases"]) {
    const std::string task = c["task"], what = c.dump().substr(0, 160);
    TaskData t = load_task(task, fixture(c["path"]), 0, c["num_fewshot"],
                           {fixture(c["fewshot_path"]), c["seed"].get<uint64_t>()});
    EXPECT_EQ(t.num_fewshot, c["num_fewshot"].get<int>()) << what;
    ASSERT_EQ(t.docs.size(), c["docs"].size()) << what;
    for (size_t d = 0; d < t.docs.size(); ++d) {
      const json& wd = c["docs"][d];
      EXPECT_EQ(t.docs[d].shots, wd["fewshot_rows"].get<std::vector<int64_t>>())
          << what << " doc " << d;
      ASSERT_EQ(t.docs[d].choices.size(), wd["requests"].size()) << what << " doc " << d;
      for (size_t i = 0; i < t.docs[d].choices.size(); ++i) {
        EXPECT_EQ(t.docs[d].choices[i].context, wd["requests"][i][0].get<std::string>())
            << what << " doc " << d << " choice " << i;
        EXPECT_EQ(t.docs[d].choices[i].continuation, wd["requests"][i][1].get<std::string>())
            << what << " doc " << d << " choice " << i;
      }
    }
  }
}

TEST(EvalFewshot, ExamplesAndLimit) {
  // Written out by hand: hellaswag's cleanup applies to the example, the gold ending follows
  // one space, a blank line ends it.
  TaskData t = load_task("hellaswag", fixture("hellaswag"), 1, 1,
                         {fixture("fewshot/hellaswag/train.jsonl"), 1234});
  ASSERT_EQ(t.docs.size(), 1u);
  EXPECT_EQ(t.docs[0].shots, std::vector<int64_t>{3});  // Python: sample(range(6), 2) -> [3, 0]
  // " [title]" -> ". ", brackets dropped, one pass of "  " -> " " (3 spaces become 2).
  const std::string shot =
      "Painting a fence: How to painting a fence. Get ready.  Step 3 begins. Then the person "
      "looks around the room 3.\n\n";
  EXPECT_EQ(t.docs[0].choices[0].context,
            shot + "Roof shingle removal: A man is sitting on a roof. He");
  EXPECT_EQ(t.docs[0].choices[0].continuation, " is using wrap to wrap a pair of skis.");
  // --limit evaluates a prefix of the same draws.
  TaskData all = load_task("hellaswag", fixture("hellaswag"), 0, 2,
                           {fixture("fewshot/hellaswag/train.jsonl"), 1234});
  TaskData two = load_task("hellaswag", fixture("hellaswag"), 2, 2,
                           {fixture("fewshot/hellaswag/train.jsonl"), 1234});
  for (size_t d = 0; d < 2; ++d) EXPECT_EQ(two.docs[d].shots, all.docs[d].shots);
  // Zero-shot ignores the few-shot split.
  TaskData zero = load_task("piqa", fixture("piqa"), 0, 0, {fixture("fewshot/piqa"), 1234});
  EXPECT_EQ(zero.docs[0].choices[0].context,
            "Question: How do I ready a guinea pig cage for "
            "it's new occupants?\nAnswer:");
  EXPECT_TRUE(zero.docs[0].shots.empty());
}

TEST(EvalFewshot, BadInput) {
  // K > 0 without a few-shot split: the harness samples from train, not the evaluated split.
  DT_EXPECT_THROW_WITH(load_task("arc_easy", fixture("arc_easy"), 0, 2), "arc_easy",
                       "--num-fewshot 2", "--fewshot-from arc_easy=PATH");
  // Too few rows: hellaswag draws K + 1, ARC draws K.
  DT_EXPECT_THROW_WITH(
      load_task("hellaswag", fixture("hellaswag"), 0, 6, {fixture("fewshot/hellaswag"), 1234}),
      "hellaswag", "--num-fewshot 6 draws 7 examples", "K + 1", "holds 6 rows");
  EXPECT_NO_THROW(
      load_task("hellaswag", fixture("hellaswag"), 0, 5, {fixture("fewshot/hellaswag"), 1234}));
  DT_EXPECT_THROW_WITH(
      load_task("arc_easy", fixture("arc_easy"), 0, 6, {fixture("fewshot/arc_easy"), 1234}),
      "arc_easy", "draws 6 examples but", "holds 5 rows");
  // A bad row of the few-shot split names its file, row and field.
  dt::TempDir tmp;
  dt::write_text(tmp / "train.jsonl",
                 "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n"
                 "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 2}\n");
  DT_EXPECT_THROW_WITH(load_task("piqa", fixture("piqa"), 0, 1, {tmp / "train.jsonl", 1234}),
                       "piqa", "train.jsonl' row 1", "label", "out of range");
  // mmlu's examples are its dev files.
  DT_EXPECT_THROW_WITH(load_task("mmlu", fixture("mmlu"), 0, 1, {fixture("fewshot/piqa"), 1}),
                       "mmlu", "dev files");
}
