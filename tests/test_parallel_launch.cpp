// Launching: the launcher variables of torchrun, OpenMPI and Slurm; the TCP rendezvous on
// loopback (bounded in time, with messages naming who is missing); the health links that
// make every rank stop, naming the rank, when one dies, fails or hangs.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <thread>

#include "core/error.h"
#include "core/timer.h"
#include "parallel/bootstrap.h"
#include "parallel/health.h"
#include "parallel/launch_env.h"
#include "parallel/rendezvous.h"

using namespace tl;

namespace {

LaunchInfo launch(const std::map<std::string, std::string>& vars) {
  return detect_launch([&](const char* n) -> const char* {
    auto it = vars.find(n);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string launch_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(DistLaunch, NoLauncherIsOneProcess) {
  LaunchInfo li = launch({});
  EXPECT_EQ(li.launcher, "none");
  EXPECT_EQ(li.world, 1);
  EXPECT_EQ(li.rank, 0);
}

TEST(DistLaunch, TorchrunVariables) {
  LaunchInfo li = launch({{"RANK", "5"},
                          {"WORLD_SIZE", "8"},
                          {"LOCAL_RANK", "1"},
                          {"LOCAL_WORLD_SIZE", "4"},
                          {"MASTER_ADDR", "node7"},
                          {"MASTER_PORT", "23456"}});
  EXPECT_EQ(li.launcher, "torchrun");
  EXPECT_EQ(li.rank, 5);
  EXPECT_EQ(li.world, 8);
  EXPECT_EQ(li.local_rank, 1);
  EXPECT_EQ(li.local_world, 4);
  EXPECT_EQ(li.master_addr, "node7");
  EXPECT_EQ(li.master_port, 23456);
  EXPECT_NE(launch_error_of([] {
              launch({{"RANK", "8"}, {"WORLD_SIZE", "8"}});
            }).find("rank 8 is not below"),
            std::string::npos);
  EXPECT_NE(launch_error_of([] {
              launch({{"RANK", "x"}, {"WORLD_SIZE", "8"}});
            }).find("RANK='x'"),
            std::string::npos);
}

TEST(DistLaunch, OpenMpiVariables) {
  LaunchInfo one_node = launch({{"OMPI_COMM_WORLD_RANK", "2"},
                                {"OMPI_COMM_WORLD_SIZE", "4"},
                                {"OMPI_COMM_WORLD_LOCAL_RANK", "2"},
                                {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}});
  EXPECT_EQ(one_node.launcher, "openmpi");
  EXPECT_EQ(one_node.rank, 2);
  EXPECT_EQ(one_node.local_rank, 2);
  EXPECT_EQ(one_node.master_addr, "127.0.0.1");  // one node: rank 0 is local
  EXPECT_EQ(one_node.master_port, 29500);
  // Several nodes need MASTER_ADDR (mpirun -x MASTER_ADDR=...).
  EXPECT_NE(launch_error_of([] {
              launch({{"OMPI_COMM_WORLD_RANK", "5"},
                      {"OMPI_COMM_WORLD_SIZE", "8"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                      {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}});
            }).find("set MASTER_ADDR"),
            std::string::npos);
  LaunchInfo two = launch({{"OMPI_COMM_WORLD_RANK", "5"},
                           {"OMPI_COMM_WORLD_SIZE", "8"},
                           {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                           {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                           {"MASTER_ADDR", "gpu01"},
                           {"MASTER_PORT", "31000"}});
  EXPECT_EQ(two.master_addr, "gpu01");
  EXPECT_EQ(two.master_port, 31000);
  EXPECT_EQ(two.local_world, 4);
}

TEST(DistLaunch, SlurmVariablesAndHostLists) {
  LaunchInfo li = launch({{"SLURM_PROCID", "6"},
                          {"SLURM_NTASKS", "8"},
                          {"SLURM_LOCALID", "2"},
                          {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"},
                          {"SLURM_JOB_ID", "123456"},
                          {"SLURM_JOB_NODELIST", "gpu[07-08]"}});
  EXPECT_EQ(li.launcher, "slurm");
  EXPECT_EQ(li.rank, 6);
  EXPECT_EQ(li.world, 8);
  EXPECT_EQ(li.local_rank, 2);
  EXPECT_EQ(li.local_world, 4);
  EXPECT_EQ(li.master_addr, "gpu07");
  EXPECT_EQ(li.master_port, 29500 + 456);  // per job, so jobs sharing a node differ
  // The step's own counts win over the job's.
  LaunchInfo step = launch({{"SLURM_PROCID", "1"},
                            {"SLURM_NTASKS", "16"},
                            {"SLURM_STEP_NUM_TASKS", "2"},
                            {"SLURM_STEP_NODELIST", "a1"},
                            {"MASTER_PORT", "4000"}});
  EXPECT_EQ(step.world, 2);
  EXPECT_EQ(step.master_addr, "a1");
  EXPECT_EQ(step.master_port, 4000);
  EXPECT_EQ(slurm_first_host("node[001-004,010],login"), "node001");
  EXPECT_EQ(slurm_first_host("n5,n6"), "n5");
  EXPECT_EQ(slurm_first_host("gpu[12,14]"), "gpu12");
  EXPECT_EQ(slurm_first_host("single"), "single");
  EXPECT_THROW(slurm_first_host("[1-2]"), Error);
  EXPECT_THROW(slurm_first_host("n[x]"), Error);
}

TEST(DistLaunch, TorchrunWinsOverSlurmWhenBothAreSet) {
  // torchrun started inside a Slurm allocation: its variables describe this process.
  LaunchInfo li =
      launch({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}});
  EXPECT_EQ(li.launcher, "torchrun");
  EXPECT_EQ(li.world, 2);
}

// Issue #18: under Slurm/MPI per-task binding each rank sees one GPU, device 0, whatever its
// local rank; several visible but too few for the local ranks is an error naming both.
TEST(DistLaunch, CudaDeviceFollowsTheVisibleDevices) {
  EXPECT_EQ(cuda_device_for_local_rank(4, 0), 0);
  EXPECT_EQ(cuda_device_for_local_rank(4, 3), 3);  // all of the node's GPUs visible
  EXPECT_EQ(cuda_device_for_local_rank(8, 3), 3);
  EXPECT_EQ(cuda_device_for_local_rank(1, 0), 0);
  EXPECT_EQ(cuda_device_for_local_rank(1, 3), 0);  // one GPU bound to this task
  EXPECT_EQ(cuda_device_for_local_rank(1, 7), 0);
  std::string msg = launch_error_of([] { cuda_device_for_local_rank(2, 3); });
  EXPECT_NE(msg.find("local rank 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 CUDA devices"), std::string::npos) << msg;
  msg = launch_error_of([] { cuda_device_for_local_rank(0, 1); });
  EXPECT_NE(msg.find("no CUDA device"), std::string::npos) << msg;

  LaunchInfo li = launch({{"SLURM_PROCID", "3"},
                          {"SLURM_NTASKS", "4"},
                          {"SLURM_LOCALID", "3"},
                          {"MASTER_ADDR", "node1"}});
  EXPECT_EQ(device_for_rank("cuda", li, 1), "cuda:0");
  EXPECT_EQ(device_for_rank("auto", li, 1), "cuda:0");
  EXPECT_EQ(device_for_rank("cuda", li, 4), "cuda:3");
  EXPECT_EQ(device_for_rank("auto", li, 0), "auto");  // no GPU: auto falls back to the CPU
  EXPECT_EQ(device_for_rank("cuda", li, 0), "cuda");  // and make_backend says why cuda cannot be
  EXPECT_EQ(device_for_rank("cpu", li, 4), "cpu");
  EXPECT_EQ(device_for_rank("cuda:1", li, 4), "cuda:1");  // an explicit device is kept
  msg = launch_error_of([&] { device_for_rank("cuda", li, 2); });
  EXPECT_NE(msg.find("local rank 3"), std::string::npos) << msg;
}

TEST(DistRendezvous, FourRanksMeetOnLoopback) {
  RendezvousServer server(0);
  const int port = server.port(), world = 4;
  Timer t;
  std::vector<std::future<Rendezvous>> others;
  for (int r = 1; r < world; ++r)
    others.push_back(std::async(std::launch::async, [=] {
      return rendezvous_join("127.0.0.1", port, r, world, cat("host", r), 10.0);
    }));
  Rendezvous r0 = server.serve(world, std::string("\x01\x00id", 4), "host0", 10.0);
  EXPECT_EQ(r0.hosts, (std::vector<std::string>{"host0", "host1", "host2", "host3"}));
  for (auto& f : others) {
    Rendezvous r = f.get();
    EXPECT_EQ(r.payload, std::string("\x01\x00id", 4));
    EXPECT_EQ(r.hosts, r0.hosts);
    EXPECT_EQ(r.links.size(), 1u);
  }
  EXPECT_LT(t.seconds(), 5.0);
}

TEST(DistRendezvous, MissingRankAndMissingServerTimeOutWithClearMessages) {
  {
    RendezvousServer server(0);
    const int port = server.port();
    auto joined = std::async(std::launch::async, [=] {
      return launch_error_of([=] { rendezvous_join("127.0.0.1", port, 1, 3, "h1", 5.0); });
    });
    Timer t;
    const std::string e = launch_error_of([&] { server.serve(3, "id", "h0", 0.5); });
    EXPECT_LT(t.seconds(), 3.0);
    EXPECT_NE(e.find("rank(s) 2 of 3 have not connected"), std::string::npos) << e;
    joined.get();  // its connection closes when the server gives up
  }
  {
    // Nobody listens: the joining rank gives up after its timeout, naming the address.
    int port = 0;
    {
      RendezvousServer probe(0);  // a port that was free a moment ago, closed again
      port = probe.port();
    }
    Timer t;
    const std::string e =
        launch_error_of([=] { rendezvous_join("127.0.0.1", port, 1, 2, "h1", 0.5); });
    EXPECT_LT(t.seconds(), 3.0);
    EXPECT_NE(e.find("could not reach rank 0 at 127.0.0.1:"), std::string::npos) << e;
  }
  {
    // Two processes claiming the same rank: refused, with both named.
    RendezvousServer server(0);
    const int port = server.port();
    auto a = std::async(std::launch::async, [=] {
      return launch_error_of([=] { rendezvous_join("127.0.0.1", port, 1, 3, "ha", 5.0); });
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto b = std::async(std::launch::async, [=] {
      return launch_error_of([=] { rendezvous_join("127.0.0.1", port, 1, 3, "hb", 5.0); });
    });
    const std::string e = launch_error_of([&] { server.serve(3, "id", "h0", 5.0); });
    EXPECT_NE(e.find("two processes claim rank 1"), std::string::npos) << e;
    const std::string eb = b.get();
    EXPECT_NE(eb.find("refused rank 1"), std::string::npos) << eb;
    a.get();
  }
}

namespace {

// A job of `world` health monitors over loopback links; probes are set per rank.
struct HealthJob {
  struct Rank {
    std::atomic<uint64_t> issued{0};
    std::atomic<double> pending{0};
    std::mutex mu;
    std::string failure;  // what on_failure received
    std::unique_ptr<HealthMonitor> monitor;
    std::vector<Socket> raw;  // links kept without a monitor (a rank that "dies")
  };
  std::vector<std::unique_ptr<Rank>> ranks;

  HealthJob(int world, double timeout, int no_monitor_rank = -1) {
    RendezvousServer server(0);
    const int port = server.port();
    std::vector<std::future<Rendezvous>> f;
    for (int r = 1; r < world; ++r)
      f.push_back(std::async(std::launch::async, [=] {
        return rendezvous_join("127.0.0.1", port, r, world, "h", 5.0);
      }));
    std::vector<Rendezvous> rv;
    rv.push_back(server.serve(world, "", "h", 5.0));
    for (auto& x : f) rv.push_back(x.get());
    for (int r = 0; r < world; ++r) ranks.push_back(std::make_unique<Rank>());
    for (int r = 0; r < world; ++r) {
      Rank& k = *ranks[size_t(r)];
      if (r == no_monitor_rank) {
        k.raw = std::move(rv[size_t(r)].links);
        continue;
      }
      HealthOptions o;
      o.timeout_s = timeout;
      o.interval_s = 0.05;
      o.exit_grace_s = 0;  // a test must not exit the process
      k.monitor = std::make_unique<HealthMonitor>(
          std::move(rv[size_t(r)].links), r, world, o,
          [&k] {
            return HealthProbe{k.issued.load(), k.pending.load(), ""};
          },
          [&k](const std::string& why) {
            std::lock_guard<std::mutex> lock(k.mu);
            k.failure = why;
          });
    }
  }
  std::string failure(int r) {
    std::lock_guard<std::mutex> lock(ranks[size_t(r)]->mu);
    return ranks[size_t(r)]->failure;
  }
  // Waits until every listed rank saw a failure (or `seconds` pass).
  bool all_failed(const std::vector<int>& rs, double seconds) {
    Timer t;
    while (t.seconds() < seconds) {
      bool all = true;
      for (int r : rs) all = all && !failure(r).empty();
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
};

}  // namespace

TEST(DistHealth, HealthyJobFinishesCleanly) {
  HealthJob job(3, 1.5);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // longer than the timeout
  for (int r : {2, 1, 0}) job.ranks[size_t(r)]->monitor->finish();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int r = 0; r < 3; ++r) EXPECT_EQ(job.failure(r), "") << "rank " << r;
}

TEST(DistHealth, AKilledRankIsNamedAtOnce) {
  HealthJob job(4, 30.0, /*no_monitor_rank=*/2);
  Timer t;
  job.ranks[2]->raw.clear();  // its links close, as when the process is killed
  ASSERT_TRUE(job.all_failed({0, 1, 3}, 5.0));
  EXPECT_LT(t.seconds(), 5.0) << "detected by the closed link, not by the 30 s timeout";
  for (int r : {0, 1, 3})
    EXPECT_NE(job.failure(r).find("rank 2 exited unexpectedly"), std::string::npos)
        << job.failure(r);
}

TEST(DistHealth, ARankReportingAnErrorStopsEveryone) {
  HealthJob job(3, 30.0);
  job.ranks[1]->monitor->report_failure("CUDA out of memory");
  ASSERT_TRUE(job.all_failed({0, 1, 2}, 5.0));
  for (int r : {0, 2})
    EXPECT_EQ(job.failure(r), "rank 1 failed: CUDA out of memory") << "rank " << r;
}

TEST(DistHealth, AHungRankIsNamedAfterTheTimeout) {
  HealthJob job(3, 1.0);
  // Ranks 0 and 2 issued collective #7 and wait on it; rank 1 is stuck before issuing it.
  job.ranks[0]->issued = 7;
  job.ranks[2]->issued = 7;
  job.ranks[1]->issued = 6;
  Timer t;
  std::thread clock([&] {
    while (t.seconds() < 5 && job.failure(0).empty()) {
      job.ranks[0]->pending = t.seconds();
      job.ranks[2]->pending = t.seconds();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  ASSERT_TRUE(job.all_failed({0, 1, 2}, 5.0));
  clock.join();
  EXPECT_GE(t.seconds(), 1.0);
  EXPECT_LT(t.seconds(), 4.0);
  for (int r : {0, 1, 2})
    EXPECT_NE(job.failure(r).find("rank(s) 1 (issued 6) hung"), std::string::npos)
        << job.failure(r);
}

TEST(DistHealth, RankZeroDyingIsSeenByTheOthers) {
  HealthJob job(3, 30.0);
  job.ranks[0]->monitor.reset();  // destroyed without finish(): as on an exception in rank 0
  ASSERT_TRUE(job.all_failed({1, 2}, 5.0));
  for (int r : {1, 2})
    EXPECT_NE(job.failure(r).find("rank 0"), std::string::npos) << job.failure(r);
}
