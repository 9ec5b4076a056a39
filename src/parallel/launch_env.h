// Who am I in the job: rank, world size, local rank (the GPU) and where rank 0 listens,
// from the variables a launcher sets. One process per GPU.
//   torchrun-style  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   OpenMPI mpirun  OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE; rank 0's address
//                   from MASTER_ADDR (mpirun -x MASTER_ADDR=host), or 127.0.0.1 when all
//                   ranks are on one node
//   Slurm srun      SLURM_PROCID, SLURM_NTASKS (SLURM_STEP_NUM_TASKS), SLURM_LOCALID,
//                   SLURM_STEP_TASKS_PER_NODE; rank 0's address from MASTER_ADDR or the
//                   first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST
// MASTER_PORT defaults to 29500 (Slurm: 29500 + job id % 1000, so jobs sharing a node
// differ). Checked in that order; with none of them, a single process (world 1).
#pragma once
#include <functional>
#include <string>

namespace tl {

struct LaunchInfo {
  std::string launcher = "none";  // "torchrun", "openmpi", "slurm" or "none"
  int rank = 0, world = 1;
  int local_rank = 0;   // its GPU among the node's (cuda_device_for_local_rank)
  int local_world = 0;  // ranks on this node; 0 when the launcher does not say
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string describe() const;  // "rank 3 of 8 (local 3 of 4) via slurm, rendezvous node01:29517"
};

using EnvLookup = std::function<const char*(const char*)>;

// Throws naming the variable when a value is missing, malformed or inconsistent.
LaunchInfo detect_launch(const EnvLookup& env);
LaunchInfo detect_launch();  // from the process environment

// The first host of a Slurm host list: "gpu[07-09,12],login1" -> "gpu07".
std::string slurm_first_host(const std::string& nodelist);

}  // namespace tl
