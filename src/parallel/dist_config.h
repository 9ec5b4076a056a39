// The `dist` section of the training config (read strictly, like the rest):
//   strategy           full_shard | shard_grad_op | no_shard | hybrid_shard; "" (default)
//                      means full_shard when launched on several ranks, and the plain
//                      single-process trainer otherwise
//   timeout_seconds    a rank that dies, hangs this long, or fails stops every rank (300)
//   hybrid_group_size  hybrid_shard: ranks per shard group; 0 = the ranks of one node.
//                      Set it to simulate nodes on one machine (4 GPUs as 2 x 2).
//   reduce_dtype       f32 (default) | bf16: the dtype gradients are reduce-scattered in
//                      (bf16 halves the bytes and the collective's SM time; each rank's
//                      shard still accumulates in f32). full_shard, shard_grad_op and
//                      hybrid_shard (its reduce-scatter; the replica all-reduce stays f32).
//   all_gather         kernels (default) | copy_engines: the weights' all-gathers run as
//                      NCCL kernels on SMs, or on the copy engines over NVLink (NCCL >= 2.28,
//                      zero-CTA policy, buffers registered as symmetric windows), leaving the
//                      SMs to the GEMMs they overlap. One node's NVLink domain.
#pragma once
#include <string>

#include "core/json_reader.h"

namespace tl {

struct DistConfig {
  std::string strategy;
  double timeout_seconds = 300;
  int hybrid_group_size = 0;
  std::string reduce_dtype = "f32";
  std::string all_gather = "kernels";
  bool copy_engines() const { return all_gather == "copy_engines"; }

  static DistConfig from_json(const json& j, const std::string& path = "dist");
  void validate() const;  // throws naming the key
};

}  // namespace tl
