// LlamaInference's row ranges and row moves, which the server's continuous batching uses:
// sequences prefilled in chunks into some rows while other rows decode, then compacted by
// move_row, give the logits each sequence gets alone in its own cache (bit for bit on the
// CPU; within bf16 rounding on the GPU, where the GEMM may tile another batch differently).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "backend/backend.h"
#include "ckpt_test_util.h"
#include "model/llama.h"
#include "model/llama_infer.h"

using namespace tl;

namespace {

struct IrSeq {
  std::vector<int32_t> prompt, next;  // next: tokens fed one at a time after the prompt
};

std::vector<IrSeq> ir_seqs(int V) {
  std::vector<IrSeq> s(3);
  const int plen[3] = {7, 5, 9};
  for (int i = 0; i < 3; ++i) {
    for (int t = 0; t < plen[i]; ++t) s[size_t(i)].prompt.push_back((t * 7 + i * 13 + 3) % V);
    for (int t = 0; t < 4; ++t) s[size_t(i)].next.push_back((t * 5 + i * 11 + 1) % V);
  }
  return s;
}

// Logits of one sequence alone: the prompt's last token, then each fed token.
std::vector<float> ir_alone(LlamaModel& model, const IrSeq& s) {
  const int V = model.config().vocab_size;
  LlamaInference inf(model, 1, model.config().max_seq_len);
  std::vector<float> out(static_cast<size_t>(V)), step(static_cast<size_t>(V));
  int32_t pos = 0, pick = int32_t(s.prompt.size()) - 1;
  inf.forward(s.prompt.data(), int(s.prompt.size()), &pos, &pick, out.data());
  for (size_t t = 0; t < s.next.size(); ++t) {
    pos = int32_t(s.prompt.size() + t);
    inf.forward(&s.next[t], 1, &pos, nullptr, step.data());
    out.insert(out.end(), step.begin(), step.end());
  }
  return out;
}

// The same sequences through a 4-row cache: A prefilled in two chunks into row 0, B into
// row 1; A and B decode while C is prefilled into row 2 between their steps; A leaves, C moves
// into row 0 and decodes beside B.
std::map<int, std::vector<float>> ir_batched(LlamaModel& model, const std::vector<IrSeq>& s) {
  const int V = model.config().vocab_size;
  LlamaInference inf(model, 4, model.config().max_seq_len);
  std::map<int, std::vector<float>> out;
  std::vector<float> buf(size_t(4 * V));
  auto keep = [&](int seq, int row) {
    out[seq].insert(out[seq].end(), buf.begin() + ptrdiff_t(row) * V,
                    buf.begin() + ptrdiff_t(row + 1) * V);
  };
  // A: chunks of 4 and 3 tokens into row 0.
  int32_t pos = 0, pick = 3;
  inf.forward(s[0].prompt.data(), 4, &pos, &pick, buf.data(), 1, 0);
  pos = 4, pick = 2;
  inf.forward(s[0].prompt.data() + 4, 3, &pos, &pick, buf.data(), 1, 0);
  keep(0, 0);
  // B: one chunk into row 1.
  pos = 0, pick = 4;
  inf.forward(s[1].prompt.data(), 5, &pos, &pick, buf.data(), 1, 1);
  keep(1, 0);
  // Decode rows [0, 2) for two steps, with C's prefill chunks (5, then 4 tokens) in between.
  for (int t = 0; t < 2; ++t) {
    const int32_t toks[2] = {s[0].next[size_t(t)], s[1].next[size_t(t)]};
    const int32_t p[2] = {int32_t(7 + t), int32_t(5 + t)};
    inf.forward(toks, 1, p, nullptr, buf.data(), 2, 0);
    keep(0, 0);
    keep(1, 1);
    const int32_t cpos = t * 5, cpick = t == 0 ? 4 : 3;
    inf.forward(s[2].prompt.data() + cpos, t == 0 ? 5 : 4, &cpos, &cpick, buf.data(), 1, 2);
    if (t == 1) keep(2, 0);
  }
  // A's last two steps alone (row 0 only), then A leaves and C takes its row.
  for (int t = 2; t < 4; ++t) {
    const int32_t p = int32_t(7 + t);
    inf.forward(&s[0].next[size_t(t)], 1, &p, nullptr, buf.data(), 1, 0);
    keep(0, 0);
  }
  inf.move_row(2, 0, 9);
  for (int t = 0; t < 4; ++t) {
    const int32_t toks[2] = {s[2].next[size_t(t)], s[1].next[size_t(std::min(t + 2, 3))]};
    const int32_t p[2] = {int32_t(9 + t), int32_t(7 + std::min(t, 1))};
    // B feeds its steps 2 and 3, then re-feeds step 3 at the same position (overwritten, and
    // not kept) while C finishes.
    inf.forward(toks, 1, p, nullptr, buf.data(), 2, 0);
    keep(2, 0);
    if (t < 2) keep(1, 1);
  }
  return out;
}

double ir_max_rel(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, ref = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err = std::max(err, double(std::fabs(got[i] - want[i])));
    ref = std::max(ref, double(std::fabs(want[i])));
  }
  return err / ref;
}

void ir_check(const char* device, double tol) {
  ModelConfig cfg = ckpt_test::small_config();
  cfg.max_seq_len = 24;
  auto be = make_backend(device, 2);
  LlamaModel model(cfg, *be);
  model.set_params(ckpt_test::random_params(cfg, 11));
  const std::vector<IrSeq> seqs = ir_seqs(cfg.vocab_size);
  const auto batched = ir_batched(model, seqs);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(cat(device, " sequence ", i));
    const std::vector<float> alone = ir_alone(model, seqs[size_t(i)]);
    ASSERT_EQ(batched.at(i).size(), alone.size());
    if (tol == 0)
      EXPECT_EQ(std::memcmp(batched.at(i).data(), alone.data(), alone.size() * 4), 0)
          << "max rel diff " << ir_max_rel(batched.at(i), alone);
    else
      EXPECT_LE(ir_max_rel(batched.at(i), alone), tol);
  }
}

}  // namespace

TEST(InferRows, ChunkedPrefillBesideDecodeAndMovedRowsEqualAlone) { ir_check("cpu", 0); }

TEST(InferRows, CudaMatchesAlone) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU visible (or built without CUDA)";
  ir_check("cuda", 3e-2);
}

TEST(InferRows, RejectsBadRangesNamingThem) {
  ModelConfig cfg = ckpt_test::small_config();
  auto be = make_backend("cpu", 1);
  LlamaModel model(cfg, *be);
  model.set_params(ckpt_test::random_params(cfg, 1));
  LlamaInference inf(model, 2, 8);
  std::vector<float> logits(size_t(2 * cfg.vocab_size));
  const int32_t tok[2] = {1, 2}, pos[2] = {0, 0};
  EXPECT_TRUE(ckpt_test::has(
      ckpt_test::error_of([&] { inf.forward(tok, 1, pos, nullptr, logits.data(), 2, 1); }),
      "rows [1, 3)"));
  EXPECT_TRUE(ckpt_test::has(
      ckpt_test::error_of([&] { inf.forward(tok, 1, pos, nullptr, logits.data(), 0, 2); }),
      "rows [2, 2)"));
  EXPECT_TRUE(
      ckpt_test::has(ckpt_test::error_of([&] { inf.move_row(0, 2, 3); }), "move_row(0, 2)"));
  EXPECT_TRUE(ckpt_test::has(ckpt_test::error_of([&] { inf.move_row(0, 1, 9); }), "length 9"));
}
