// The evaluator's prompts against lm-evaluation-harness 0.4's rules, written out by hand for
// the fixture rows (tests/fixtures/eval): Python string semantics, each task's context and
// continuations, gold indices, acc_norm lengths, MMLU's 5-shot prompt (the harness's own
// test_prompt.py case), the token split and truncation, and the metrics' formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "data_test_util.h"
#include "eval/requests.h"
#include "eval/results.h"
#include "eval/tasks.h"
#include "eval/text.h"

using namespace tl;
using namespace tl::eval;

namespace {

std::string fixture(const std::string& name) {
  return std::string(TL_SOURCE_DIR) + "/tests/fixtures/eval/" + name;
}

void expect_choices(const Doc& d, const std::vector<std::string>& conts, int gold) {
  ASSERT_EQ(d.choices.size(), conts.size()) << d.where;
  for (size_t i = 0; i < conts.size(); ++i) {
    EXPECT_EQ(d.choices[i].continuation, " " + conts[i]) << d.where << " choice " << i;
    EXPECT_EQ(d.choices[i].length, int64_t(py_len(conts[i]))) << d.where << " choice " << i;
  }
  EXPECT_EQ(d.gold, gold) << d.where;
}

}  // namespace

TEST(EvalText, PythonStringRules) {
  EXPECT_EQ(py_strip("\u00a0 \t x y \u3000\n"), "x y");
  EXPECT_EQ(py_rstrip("a \x1c\x1f"), "a");
  EXPECT_EQ(py_lstrip("\u2028\u2029a "), "a ");
  EXPECT_EQ(py_len("héllo ✓ 🚀"), 9u);
  EXPECT_EQ(py_capitalize("then Add THE Flour "), "Then add the flour ");
  EXPECT_EQ(py_capitalize("ÉLODIE then"), "Élodie then");
  EXPECT_EQ(py_capitalize(""), "");
  EXPECT_EQ(py_replace("a   b    c", "  ", " "), "a  b  c");  // one pass: 3 -> 2, 4 -> 2
  EXPECT_EQ(utf8_problem("ok é"), "");
  EXPECT_NE(utf8_problem("\xc3"), "");
  EXPECT_NE(utf8_problem("\xed\xa0\x80"), "");  // a surrogate
  EXPECT_NE(utf8_problem("\xc0\xaf"), "");      // overlong
}

TEST(EvalText, HellaswagPreprocess) {
  EXPECT_EQ(hellaswag_preprocess("  A [title] B [step] C  D   E "), "A. B C D  E");
  EXPECT_EQ(hellaswag_preprocess("[title] Stir  until smooth."), " Stir until smooth.");
  EXPECT_EQ(hellaswag_preprocess("x [a[b] y"), "x y");  // the span from the first [ to the first ]
  EXPECT_EQ(hellaswag_preprocess("x [a\nb] y [c]"), "x [a\nb] y ");  // '.' stops at a newline
  EXPECT_EQ(hellaswag_preprocess("wash [unclosed"), "wash [unclosed");
}

TEST(EvalTasks, Hellaswag) {
  TaskData t = load_task("hellaswag", fixture("hellaswag"), 0, -1);
  ASSERT_EQ(t.docs.size(), 4u);
  EXPECT_EQ(t.docs[0].choices[0].context, "Roof shingle removal: A man is sitting on a roof. He");
  expect_choices(t.docs[0],
                 {"is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                  "is holding a rubik's cube.", "starts pulling up roofing on a roof."},
                 3);
  EXPECT_EQ(t.docs[1].choices[0].context,
            "Baking cookies: How to bake cookies. Preheat the oven.  Mix the butter and sugar. "
            "Then add the flour");
  expect_choices(t.docs[1],
                 {" Stir until smooth.", "pour the batter into the pan.", "eat it raw  enjoy.",
                  "wash the bowl [unclosed bracket"},
                 0);
  EXPECT_EQ(t.docs[2].choices[0].context,
            "Café visit: Élodie orders a crème brûlée at the counter. Élodie then");
  expect_choices(t.docs[2],
                 {"pays with a card.", "sings loudly  at the barista.", " Leaves the café."}, 2);
  EXPECT_EQ(t.docs[1].where.substr(t.docs[1].where.size() - 14), "row 1 (line 2)");
}

TEST(EvalTasks, OpenbookqaArcPiqaBoolq) {
  TaskData o = load_task("openbookqa", fixture("openbookqa/test.jsonl"), 0, -1);
  EXPECT_EQ(o.docs[1].choices[0].context, "When water freezes it becomes ");
  expect_choices(o.docs[1], {"steam", "ice", "a gas", "lighter than air"}, 1);  // key " B"
  TaskData a = load_task("arc_easy", fixture("arc_easy"), 0, -1);
  EXPECT_EQ(a.docs[0].choices[0].context,
            "Question: Which statement best explains why photosynthesis is the foundation of most "
            "food webs?\nAnswer:");
  expect_choices(a.docs[1], {"a ruler", "a balance", "a thermometer"}, 1);  // labels "1".."3"
  EXPECT_EQ(a.docs[2].choices.size(), 5u);
  EXPECT_EQ(a.docs[2].gold, 3);
  TaskData c = load_task("arc_challenge", fixture("arc_challenge"), 0, -1);  // parquet
  ASSERT_EQ(c.docs.size(), 3u);
  expect_choices(c.docs[1], {"newton", "joule", "watt"}, 0);
  EXPECT_EQ(c.docs[2].choices[0].context,
            "Question: Which of these would best keep a drink cold? \nAnswer:");
  TaskData p = load_task("piqa", fixture("piqa"), 0, -1);
  EXPECT_EQ(p.docs[1].choices[0].context, "Question: To open a stuck jar lid,  \nAnswer:");
  expect_choices(
      p.docs[1],
      {" run the lid under hot water for a minute.", "put the jar in the freezer overnight."}, 0);
  TaskData b = load_task("boolq", fixture("boolq"), 0, -1);
  EXPECT_EQ(b.docs[0].choices[0].context,
            "Ethanol fuel -- All biomass goes through at least some of these steps: it needs to be "
            "grown, "
            "collected, dried, fermented, distilled, and burned.\nQuestion: does ethanol take more "
            "energy make "
            "that produces?\nAnswer:");
  expect_choices(b.docs[2], {"no", "yes"}, 1);
}

TEST(EvalTasks, WinograndePartialScoring) {
  TaskData t = load_task("winogrande", fixture("winogrande"), 0, -1);
  ASSERT_EQ(t.docs.size(), 4u);
  const Doc& d0 = t.docs[0];
  EXPECT_EQ(d0.choices[0].context, "Sarah was a much better surgeon than Maria so Sarah");
  EXPECT_EQ(d0.choices[1].context, "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(d0.choices[1].continuation, " always got the easier cases.");
  EXPECT_EQ(d0.gold, 1);
  EXPECT_EQ(t.docs[1].choices[1].context, "The fridge");  // the blank at the start
  EXPECT_EQ(t.docs[1].choices[1].continuation,
            " went to the store because the fridge at home was empty.");
  EXPECT_EQ(t.docs[2].choices[0].continuation, " ");  // the blank at the end
  EXPECT_EQ(t.docs[3].choices[0].context, "The dog chased the cat until the dog");
  EXPECT_EQ(t.docs[3].choices[0].continuation, " 's owner  called it back.");
}

TEST(EvalTasks, MmluFiveShotMatchesTheHarnessPrompt) {
  TaskData t = load_task("mmlu", fixture("mmlu"), 0, -1);
  EXPECT_EQ(t.num_fewshot, 5);
  ASSERT_EQ(t.docs.size(), 4u);  // subjects in name order: abstract_algebra, anatomy
  const Doc& d = t.docs[2];
  EXPECT_EQ(d.subject, "anatomy");
  const std::string want =
      "The following are multiple choice questions (with answers) about anatomy.\n\n"
      "What is the embryological origin of the hyoid bone?\nA. The first pharyngeal arch\n"
      "B. The first and second pharyngeal arches\nC. The second pharyngeal arch\n"
      "D. The second and third pharyngeal arches\nAnswer: D\n\n"
      "Which of these branches of the trigeminal nerve contain somatic motor processes?\n"
      "A. The supraorbital nerve\nB. The infraorbital nerve\nC. The mental nerve\nD. None of the "
      "above\n"
      "Answer: D\n\n"
      "The pleura\nA. have no sensory innervation.\nB. are separated by a 2 mm space.\n"
      "C. extend into the neck.\nD. are composed of respiratory epithelium.\nAnswer: C\n\n"
      "In Angle's Class II Div 2 occlusion there is\nA. excess overbite of the upper lateral "
      "incisors.\n"
      "B. negative overjet of the upper central incisors.\nC. excess overjet of the upper lateral "
      "incisors.\n"
      "D. excess overjet of the upper central incisors.\nAnswer: C\n\n"
      "Which of the following is the body cavity that contains the pituitary gland?\nA. Abdominal\n"
      "B. Cranial\nC. Pleural\nD. Spinal\nAnswer: B\n\n"
      "A lesion causing compression of the facial nerve at the stylomastoid foramen will cause "
      "ipsilateral\nA. paralysis of the facial muscles.\nB. paralysis of the facial muscles and "
      "loss of "
      "taste.\nC. paralysis of the facial muscles, loss of taste and lacrimation.\nD. paralysis of "
      "the "
      "facial muscles, loss of taste, lacrimation and decreased salivation.\nAnswer:";
  EXPECT_EQ(d.choices[0].context, want);
  expect_choices(d, {"A", "B", "C", "D"}, 0);
  // The question is stripped; the subject's underscores become spaces.
  EXPECT_NE(t.docs[3].choices[0].context.find(
                "\n\nWhich bone is the longest in the human body?\nA. Femur"),
            std::string::npos);
  EXPECT_EQ(
      t.docs[0].choices[0].context.rfind(
          "The following are multiple choice questions (with answers) about abstract algebra.\n\n",
          0),
      0u);
  TaskData zero = load_task("mmlu", fixture("mmlu"), 1, 0);
  ASSERT_EQ(zero.docs.size(), 2u);  // --limit is per subject
  EXPECT_EQ(zero.docs[1].choices[0].context,
            "The following are multiple choice questions (with answers) about anatomy.\n\n" +
                want.substr(want.find("A lesion")));
}

TEST(EvalTasks, LimitKeepsTheFirstRows) {
  TaskData t = load_task("hellaswag", fixture("hellaswag"), 2, -1);
  ASSERT_EQ(t.docs.size(), 2u);
  EXPECT_EQ(t.docs[1].gold, 0);
}

TEST(EvalTokens, ContextWhitespaceMovesAndTheSplitIsByCount) {
  DT_REQUIRE_SHARED_DATA();
  const Tokenizer tok = Tokenizer::load(dt::llama_model());
  auto enc = [&](const std::string& s) {
    std::vector<int32_t> v;
    for (int id : tok.encode(s)) v.push_back(id);
    return v;
  };
  EncodedPair p = encode_pair(tok, "Question: why?\nAnswer: \n", " yes", BosMode::Off);
  EXPECT_EQ(p.context, enc("Question: why?\nAnswer:"));
  std::vector<int32_t> whole = enc("Question: why?\nAnswer: \n yes");
  EXPECT_EQ(p.continuation,
            std::vector<int32_t>(whole.begin() + std::ptrdiff_t(p.context.size()), whole.end()));
  EncodedPair b = encode_pair(tok, "Question: why?\nAnswer: \n", " yes", BosMode::On);
  EXPECT_EQ(b.context.front(), tok.bos_id());
  EXPECT_EQ(std::vector<int32_t>(b.context.begin() + 1, b.context.end()), p.context);
  EXPECT_EQ(b.continuation, p.continuation);
  EncodedPair e = encode_pair(tok, "", " yes", BosMode::Off);
  EXPECT_EQ(e.context, std::vector<int32_t>{tok.bos_id()});
  EXPECT_EQ(e.continuation, enc(" yes"));

  EncodedPair q{{1, 2, 3, 4, 5, 6, 7}, {8, 9}};
  TokenRequest r = make_request(q, 4, "case");  // keep the last 5 tokens
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{5, 6, 7, 8, 9}));
  EXPECT_EQ(r.contlen, 2);
  EXPECT_TRUE(r.truncated);
  EXPECT_FALSE(make_request(q, 8, "case").truncated);
  DT_EXPECT_THROW_WITH(make_request(EncodedPair{{1}, {}}, 8, "doc 3"), "doc 3", "no token");
  DT_EXPECT_THROW_WITH(make_request(EncodedPair{{1}, {2, 3, 4}}, 2, "doc 4"), "doc 4",
                       "window of 2");
}

TEST(EvalMetrics, ArgmaxStderrAndPooling) {
  EXPECT_EQ(argmax_first({-3, -1, -1, -2}), 1);  // ties: the first
  EXPECT_EQ(argmax_first({-3, NAN, 0}), 1);      // numpy: the first NaN
  Doc d;
  d.choices = {{"c", " a", 1}, {"c", " bbbb", 4}};
  d.gold = 1;
  DocScore s = score_doc(d, {{-2.0, false}, {-4.0, false}});
  EXPECT_EQ(s.pred, 0);
  EXPECT_EQ(s.pred_norm, 1);  // -2/1 < -4/4
  EXPECT_FALSE(s.acc);
  EXPECT_TRUE(s.acc_norm);
  // sqrt(p(1-p)/(n-1)) for 0/1 values: p = 0.3, n = 10
  EXPECT_NEAR(mean_stderr(10, 3), std::sqrt(0.3 * 0.7 / 9), 1e-15);
  EXPECT_TRUE(std::isnan(mean_stderr(1, 1)));
  // pooled: sqrt(sum((n-1) n se^2) / (N - S) / N)
  const double se1 = mean_stderr(10, 3), se2 = mean_stderr(20, 15);
  EXPECT_NEAR(pooled_stderr({10, 20}, {se1, se2}),
              std::sqrt((9 * 10 * se1 * se1 + 19 * 20 * se2 * se2) / 28.0 / 30.0), 1e-15);
}
