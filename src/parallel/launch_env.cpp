#include "parallel/launch_env.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace tl {

namespace {

// An integer variable, or `fallback` when it is unset; throws naming it when malformed.
int env_int(const EnvLookup& env, const char* name, int fallback) {
  const char* v = env(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  TL_CHECK(end && *end == '\0' && x >= 0 && x < (1L << 30), "launcher variable ", name, "='", v,
           "' is not a non-negative integer");
  return int(x);
}

bool has(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  return v && *v;
}

std::string env_str(const EnvLookup& env, const char* name, const std::string& fallback) {
  return has(env, name) ? std::string(env(name)) : fallback;
}

// "4(x2),3" -> 4: tasks on the first node listed (ours when nodes are uniform).
int slurm_tasks_per_node(const std::string& s) { return s.empty() ? 0 : std::atoi(s.c_str()); }

void validate(const LaunchInfo& li) {
  TL_CHECK(li.world >= 1, li.launcher, ": world size must be at least 1, got ", li.world);
  TL_CHECK(li.rank < li.world, li.launcher, ": rank ", li.rank, " is not below the world size ",
           li.world);
  TL_CHECK(li.local_world == 0 || li.local_rank < li.local_world, li.launcher, ": local rank ",
           li.local_rank, " is not below the ranks per node ", li.local_world);
  TL_CHECK(li.master_port > 0 && li.master_port < 65536, li.launcher, ": MASTER_PORT ",
           li.master_port, " is not a TCP port");
  TL_CHECK(!li.master_addr.empty(), li.launcher, ": no rendezvous address (set MASTER_ADDR)");
}

}  // namespace

std::string LaunchInfo::describe() const {
  return cat("rank ", rank, " of ", world, " (local ", local_rank,
             local_world > 0 ? cat(" of ", local_world) : std::string(), ") via ", launcher,
             ", rendezvous ", master_addr, ":", master_port);
}

std::string slurm_first_host(const std::string& list) {
  // A host is a prefix and optionally a bracketed range list; hosts are comma-separated
  // outside brackets.
  size_t i = 0;
  std::string prefix;
  while (i < list.size() && list[i] != ',' && list[i] != '[') prefix += list[i++];
  TL_CHECK(!prefix.empty(), "Slurm node list '", list, "' does not start with a host name");
  if (i >= list.size() || list[i] == ',') return prefix;
  // "[07-09,12]": the first number of the first range, zero padding kept.
  size_t j = i + 1;
  std::string first;
  while (j < list.size() && std::isdigit(static_cast<unsigned char>(list[j]))) first += list[j++];
  TL_CHECK(
      !first.empty() && j < list.size() && (list[j] == '-' || list[j] == ',' || list[j] == ']'),
      "Slurm node list '", list, "' has a malformed range");
  return prefix + first;
}

LaunchInfo detect_launch(const EnvLookup& env) {
  LaunchInfo li;
  if (has(env, "RANK") && has(env, "WORLD_SIZE")) {
    li.launcher = "torchrun";
    li.rank = env_int(env, "RANK", 0);
    li.world = env_int(env, "WORLD_SIZE", 1);
    li.local_rank = env_int(env, "LOCAL_RANK", li.rank);
    li.local_world = env_int(env, "LOCAL_WORLD_SIZE", 0);
    li.master_addr = env_str(env, "MASTER_ADDR", "127.0.0.1");
    li.master_port = env_int(env, "MASTER_PORT", 29500);
  } else if (has(env, "OMPI_COMM_WORLD_RANK") && has(env, "OMPI_COMM_WORLD_SIZE")) {
    li.launcher = "openmpi";
    li.rank = env_int(env, "OMPI_COMM_WORLD_RANK", 0);
    li.world = env_int(env, "OMPI_COMM_WORLD_SIZE", 1);
    li.local_rank = env_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0);
    li.local_world = env_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 0);
    if (has(env, "MASTER_ADDR")) {
      li.master_addr = env("MASTER_ADDR");
    } else {
      TL_CHECK(li.local_world == li.world, "mpirun over several nodes (", li.world, " ranks, ",
               li.local_world,
               " on this one): set MASTER_ADDR to rank 0's host name, e.g. mpirun -x "
               "MASTER_ADDR=$(hostname) "
               "-x MASTER_PORT=29500 ...");
    }
    li.master_port = env_int(env, "MASTER_PORT", 29500);
  } else if (has(env, "SLURM_PROCID") &&
             (has(env, "SLURM_STEP_NUM_TASKS") || has(env, "SLURM_NTASKS"))) {
    li.launcher = "slurm";
    li.rank = env_int(env, "SLURM_PROCID", 0);
    li.world = env_int(env, "SLURM_STEP_NUM_TASKS", env_int(env, "SLURM_NTASKS", 1));
    li.local_rank = env_int(env, "SLURM_LOCALID", 0);
    li.local_world = slurm_tasks_per_node(
        env_str(env, "SLURM_STEP_TASKS_PER_NODE", env_str(env, "SLURM_TASKS_PER_NODE", "")));
    if (has(env, "MASTER_ADDR")) {
      li.master_addr = env("MASTER_ADDR");
    } else {
      const std::string nodes =
          env_str(env, "SLURM_STEP_NODELIST", env_str(env, "SLURM_JOB_NODELIST", ""));
      TL_CHECK(!nodes.empty(), "slurm: neither MASTER_ADDR nor SLURM_JOB_NODELIST is set");
      li.master_addr = slurm_first_host(nodes);
    }
    li.master_port = env_int(env, "MASTER_PORT", 29500 + env_int(env, "SLURM_JOB_ID", 0) % 1000);
  }
  validate(li);
  return li;
}

LaunchInfo detect_launch() {
  return detect_launch([](const char* n) { return static_cast<const char*>(std::getenv(n)); });
}

}  // namespace tl
