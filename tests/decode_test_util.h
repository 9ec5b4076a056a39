// Checks shared by the CPU and CUDA decode tests (test_decode.cpp, test_cuda_decode.cpp).
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend_test_util.h"
#include "ckpt_test_util.h"
#include "model/llama.h"
#include "model/llama_infer.h"

namespace decode_test {

// Greedy steps submitted ahead (submit_argmax, each step's tokens the last one's ids taken on
// the device, two steps in flight) give the ids forward_argmax gives step by step, across key
// buckets (the CUDA backend records and replays graphs while a step is in flight) and a
// restart from host tokens; misuse is refused with a message saying what to do.
inline void expect_submitted_steps_equal_forward_argmax(tl::LlamaModel& model) {
  using tl::LlamaInference;
  const int B = 3, P = 4, steps = 300, V = model.config().vocab_size;
  ASSERT_GE(model.config().max_seq_len, P + steps + 1);
  std::vector<int32_t> prompt(size_t(B * P)), pick(B, P - 1), first(B);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7 + 3) % size_t(V));
  const auto prefill = [&](LlamaInference& inf) {
    std::vector<int32_t> pos(B, 0);
    inf.forward_argmax(prompt.data(), P, pos.data(), pick.data(), first.data());
  };

  std::vector<int32_t> want;  // step t's ids, t = 0 .. steps-1
  {
    LlamaInference inf(model, B, P + steps + 1);
    prefill(inf);
    std::vector<int32_t> tok = first, pos(B), ids(B);
    for (int t = 0; t < steps; ++t) {
      pos.assign(B, P + t);
      inf.forward_argmax(tok.data(), 1, pos.data(), nullptr, ids.data());
      want.insert(want.end(), ids.begin(), ids.end());
      tok = ids;
    }
  }

  std::vector<int32_t> ids(B), pos(B);
  // By default the argmax writes each step's ids into the pinned slot itself, and a replayed
  // step enqueues no copy; with TL_DECODE_IDS_MAPPED=0 they are downloaded after it.
  for (const char* mapped : {"0", "1"}) {
    backend_test::ScopedEnv lever("TL_DECODE_IDS_MAPPED", mapped);
    LlamaInference inf(model, B, P + steps + 1);
    prefill(inf);
    std::vector<int32_t> got;
    const int restart = 150;  // collected up to here, then submitted again from host tokens
    pos.assign(B, P);
    inf.submit_argmax(first.data(), pos.data(), B);
    for (int t = 1; t <= steps; ++t) {
      if (t < steps && t != restart) {
        pos.assign(B, P + t);
        inf.submit_argmax(nullptr, pos.data(), B);
        EXPECT_EQ(inf.steps_in_flight(), 2);
      }
      inf.collect_argmax(ids.data());
      got.insert(got.end(), ids.begin(), ids.end());
      if (t == restart) {
        EXPECT_EQ(inf.steps_in_flight(), 0);
        pos.assign(B, P + t);
        inf.submit_argmax(ids.data(), pos.data(), B);
      }
    }
    EXPECT_EQ(inf.steps_in_flight(), 0);
    ASSERT_EQ(got.size(), want.size());
    int first_diff = -1;
    for (size_t i = 0; i < got.size() && first_diff < 0; ++i)
      if (got[i] != want[i]) first_diff = int(i);
    EXPECT_EQ(first_diff, -1) << "step " << first_diff / B << " row " << first_diff % B
                              << (mapped[0] == '1' ? " (ids written by the argmax)"
                                                   : " (ids downloaded)");
  }

  // Misuse.
  using ckpt_test::error_of;
  using ckpt_test::has;
  LlamaInference inf(model, B, P + steps + 1);
  std::string m = error_of([&] { inf.collect_argmax(ids.data()); });
  EXPECT_TRUE(has(m, "no step in flight")) << m;
  LlamaInference fresh(model, B, P + steps + 1);
  m = error_of([&] { fresh.submit_argmax(nullptr, pos.data(), B); });
  EXPECT_TRUE(has(m, "continues the last submitted step")) << m;
  pos.assign(B, P);
  fresh.submit_argmax(first.data(), pos.data(), B);
  m = error_of([&] { fresh.submit_argmax(nullptr, pos.data(), 2); });  // other rows
  EXPECT_TRUE(has(m, "same rows")) << m;
  m = error_of([&] { fresh.forward_argmax(first.data(), 1, pos.data(), nullptr, ids.data()); });
  EXPECT_TRUE(has(m, "collect_argmax first")) << m;
  m = error_of([&] { fresh.move_row(0, 1, 2); });
  EXPECT_TRUE(has(m, "move_row")) << m;
  fresh.submit_argmax(nullptr, pos.data(), B);
  m = error_of([&] { fresh.submit_argmax(nullptr, pos.data(), B); });
  EXPECT_TRUE(has(m, "two steps in flight")) << m;
  pos[1] = P + steps + 1;  // outside the cache: checked before anything is enqueued
  fresh.collect_argmax(nullptr);
  m = error_of([&] { fresh.submit_argmax(nullptr, pos.data(), B); });
  EXPECT_TRUE(has(m, "outside the cache")) << m;
  EXPECT_EQ(fresh.steps_in_flight(), 1);
  // The destructor collects the step still in flight.
}

}  // namespace decode_test
