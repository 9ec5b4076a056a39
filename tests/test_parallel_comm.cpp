// The in-process fake communicator: each collective's result on every rank, splitting
// into groups (hybrid sharding), and failures: a rank that throws or stops coming makes
// the others stop within the timeout with a message that names it.
#include <gtest/gtest.h>

#include <chrono>

#include "core/timer.h"
#include "parallel_test_util.h"

using namespace tl;

namespace {
Tensor host(std::vector<float>& v) {
  return Tensor(v.data(), DType::F32, Device::CPU, {int64_t(v.size())});
}
}  // namespace

TEST(DistFakeComm, CollectivesGiveTheSameAnswerOnEveryRank) {
  for (int world : {1, 2, 3, 4}) {
    auto comms = make_fake_communicators(world, 10.0);
    auto outcome = run_ranks(comms, [&](int r, Communicator& c) {
      const int64_t n = 5;
      // all_gather: rank r sends r*100 + i
      std::vector<float> send(n), recv(size_t(n * world));
      for (int64_t i = 0; i < n; ++i) send[size_t(i)] = float(r * 100 + i);
      c.all_gather(host(recv), host(send));
      for (int q = 0; q < world; ++q)
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(recv[size_t(q * n + i)], float(q * 100 + i));
      // reduce_scatter sum and avg: element j of rank q's input is q + j
      std::vector<float> big(size_t(n * world)), out(n);
      for (size_t j = 0; j < big.size(); ++j) big[j] = float(r) + float(j);
      c.reduce_scatter(host(out), host(big), ReduceOp::Sum);
      const float rank_sum = float(world * (world - 1) / 2);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(out[size_t(i)], rank_sum + float(world * (r * n + i)));
      c.reduce_scatter(host(out), host(big), ReduceOp::Avg);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_FLOAT_EQ(out[size_t(i)], (rank_sum + float(world * (r * n + i))) / float(world));
      // all_reduce in place: sum, max; f64 too
      std::vector<float> buf = {float(r), float(-r), 1.0f};
      c.all_reduce(host(buf), ReduceOp::Sum);
      ASSERT_EQ(buf, (std::vector<float>{rank_sum, -rank_sum, float(world)}));
      buf = {float(r), float(-r), 1.0f};
      c.all_reduce(host(buf), ReduceOp::Max);
      ASSERT_EQ(buf, (std::vector<float>{float(world - 1), 0.0f, 1.0f}));
      std::vector<double> d = {0.1 * r};
      c.all_reduce(Tensor(d.data(), DType::F64, Device::CPU, {1}), ReduceOp::Sum);
      ASSERT_NEAR(d[0], 0.1 * world * (world - 1) / 2, 1e-12);
      // broadcast from the last rank
      std::vector<float> b = {float(r), float(r)};
      c.broadcast(host(b), world - 1);
      ASSERT_EQ(b, (std::vector<float>{float(world - 1), float(world - 1)}));
      c.barrier();
      c.check();
    });
    ASSERT_EQ(rank_errors(outcome), "") << "world " << world;
    EXPECT_EQ(fake_comm_counts(*comms[0]).at("all_gather"), 1);
    EXPECT_EQ(fake_comm_counts(*comms[0]).at("all_reduce"), 3);
  }
}

TEST(DistFakeComm, SplitMakesNodeAndReplicaGroups) {
  // 6 ranks as 3 "nodes" of 2: node groups {0,1} {2,3} {4,5}; replica groups {0,2,4} {1,3,5}.
  auto comms = make_fake_communicators(6, 10.0);
  auto outcome = run_ranks(comms, [&](int r, Communicator& c) {
    auto node = c.split(r / 2, r);
    auto rep = c.split(r % 2, r);
    ASSERT_EQ(node->world(), 2);
    ASSERT_EQ(node->rank(), r % 2);
    ASSERT_EQ(rep->world(), 3);
    ASSERT_EQ(rep->rank(), r / 2);
    std::vector<float> v = {float(r)};
    node->all_reduce(host(v), ReduceOp::Sum);
    ASSERT_EQ(v[0], float(2 * (r / 2) * 2 + 1));  // r0 + r1 of the node
    v = {float(r)};
    rep->all_reduce(host(v), ReduceOp::Sum);
    ASSERT_EQ(v[0], float(3 * (r % 2) + 6));  // e.g. 0+2+4 or 1+3+5
  });
  ASSERT_EQ(rank_errors(outcome), "");
}

TEST(DistFakeComm, MismatchedCollectivesAreAnErrorNamingTheRanks) {
  auto comms = make_fake_communicators(2, 10.0);
  auto outcome = run_ranks(comms, [&](int r, Communicator& c) {
    std::vector<float> v(r == 0 ? 3 : 4);
    c.all_reduce(host(v), ReduceOp::Sum);
  });
  ASSERT_FALSE(outcome[0].ok);
  ASSERT_FALSE(outcome[1].ok);
  EXPECT_NE(outcome[0].error.find("differs between ranks"), std::string::npos) << outcome[0].error;
}

TEST(DistFakeComm, ARankThatThrowsStopsTheOthersWithItsName) {
  auto comms = make_fake_communicators(3, 30.0);
  Timer t;
  auto outcome = run_ranks(comms, [&](int r, Communicator& c) {
    std::vector<float> v = {1.0f};
    c.all_reduce(host(v), ReduceOp::Sum);
    if (r == 1) throw Error("disk full while writing the checkpoint");
    c.all_reduce(host(v), ReduceOp::Sum);  // ranks 0 and 2 wait here for rank 1
  });
  EXPECT_LT(t.seconds(), 5.0) << "the others must not wait for the timeout";
  for (int r : {0, 2}) {
    ASSERT_FALSE(outcome[size_t(r)].ok);
    EXPECT_NE(outcome[size_t(r)].error.find("rank 1 failed: disk full"), std::string::npos)
        << outcome[size_t(r)].error;
  }
}

TEST(DistFakeComm, ARankThatHangsIsNamedAfterTheTimeout) {
  auto comms = make_fake_communicators(3, 0.5);
  Timer t;
  auto outcome = run_ranks(comms, [&](int r, Communicator& c) {
    std::vector<float> v = {1.0f};
    c.all_reduce(host(v), ReduceOp::Sum);
    if (r == 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // "hangs"
      c.check();                                                     // then finds the group failed
    }
    c.all_reduce(host(v), ReduceOp::Sum);
  });
  const double s = t.seconds();
  EXPECT_LT(s, 3.0);
  for (int r : {0, 1}) {
    ASSERT_FALSE(outcome[size_t(r)].ok);
    EXPECT_NE(outcome[size_t(r)].error.find("timed out after 0.5 s"), std::string::npos)
        << outcome[size_t(r)].error;
    EXPECT_NE(outcome[size_t(r)].error.find("waiting for rank(s) 2 (issued 1)"), std::string::npos)
        << outcome[size_t(r)].error;
  }
  EXPECT_FALSE(outcome[2].ok) << "the hung rank learns of the failure when it comes back";
}
