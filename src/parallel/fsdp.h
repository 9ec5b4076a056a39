// Fully sharded data parallel: the model's ParamProvider when training on several ranks.
//
// Strategies (dist.strategy):
//   full_shard     ZeRO-3. f32 master weights, AdamW state and gradients sharded; the
//                  compute-dtype weights of a unit are all-gathered into one of two unit
//                  buffers just before use and dropped after; the next unit's all-gather
//                  runs while this one computes (forward and backward). A unit's gradient
//                  goes to its own buffer and is reduce-scattered into the f32 gradient
//                  shard right after its backward, overlapping the next unit's backward;
//                  micro-batches accumulate in the shard (no extra full-size buffer).
//   shard_grad_op  ZeRO-2. Full compute-dtype weights and f32 gradients stay resident;
//                  gradients accumulate locally across micro-batches and each unit is
//                  reduce-scattered once per step, during the last backward; the
//                  optimizer updates this rank's shard, then the units are all-gathered
//                  back (waited on by the next forward, unit by unit).
//   no_shard       plain data parallel: everything replicated; each unit's gradient is
//                  all-reduced once per step, during the last backward.
//   hybrid_shard   full_shard inside groups of hybrid_group_size ranks (a node), the
//                  groups being replicas: shard gradients are all-reduced across groups
//                  once per step, during the last backward.
//
// Gradients are sums (the loss scale already divides by the global token count), so
// every strategy computes the same step as one rank with the same global batch.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/param_provider.h"
#include "model/sharding.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"

namespace tl {

enum class ShardStrategy { FullShard, ShardGradOp, NoShard, HybridShard };
const char* strategy_name(ShardStrategy s);
ShardStrategy strategy_from_name(const std::string& name);  // throws listing the names

// The groups a rank takes part in for a strategy: shard (who splits the parameters) and
// replica (who holds the same shard elsewhere; null when there is one group). Ranks are
// grouped as launchers number them, node by node: hybrid group g = ranks [g*G, (g+1)*G).
// Collective: every rank of `world` calls it.
struct FsdpGroups {
  std::unique_ptr<Communicator> shard, replica;
};
FsdpGroups make_fsdp_groups(Communicator& world, ShardStrategy s, int hybrid_group_size);

class Fsdp final : public ParamProvider {
 public:
  // shard: the ranks that split the parameters (every rank for full_shard and
  // shard_grad_op, the node for hybrid_shard, just this rank for no_shard); replica: the
  // ranks holding the same shard in the other groups, or null when there is one group.
  // reduce_dtype: f32, or bf16 (dist.reduce_dtype): gradients are converted to bf16 for the
  // reduce-scatter and the reduced chunk added into the f32 shard.
  Fsdp(const ModelConfig& cfg, Backend& be, ShardStrategy strategy, Communicator& shard,
       Communicator* replica, const AdamWConfig& adamw, DType reduce_dtype = DType::F32);
  ~Fsdp() override;

  // ParamProvider
  Tensor weight(const ParamInfo& p) override;
  Tensor grad(const ParamInfo& p) override;
  void before_forward(int unit) override;
  void after_forward(int unit) override;
  void before_backward(int unit) override;
  void after_backward(int unit) override;
  void set_params(const std::vector<float>& full) override;  // keeps this rank's shard
  std::vector<float> get_params() override;                  // collective
  void zero_grads() override;

  // Call before each micro-batch's forward_backward: on the last one of a step, the
  // strategies that reduce once per step issue their collectives during the backward.
  void begin_micro_batch(bool last);
  // Waits for the reductions, clips by the global norm, runs AdamW on this rank's shard and
  // starts refreshing the compute weights. Skips a non-finite gradient (as AdamW does).
  StepResult step(float lr);

  ShardStrategy strategy() const { return strategy_; }
  const Sharding& sharding() const { return sh_; }
  int shard_rank() const { return shard_.rank(); }
  AdamW& optimizer() { return *opt_; }
  // This rank's shard of the master weights and AdamW moments [shard_total], host side.
  void get_shard_state(std::vector<float>& master, std::vector<float>& m,
                       std::vector<float>& v) const;
  void get_master(std::vector<float>& master) const;  // the master-weight shard only
  void set_shard_state(const std::vector<float>& master, const std::vector<float>& m,
                       const std::vector<float>& v);
  // Seconds the compute stream waited on communication since the last call (0 on CPU).
  double take_comm_wait_seconds() { return shard_.take_wait_seconds(); }

 private:
  struct WeightSlot {
    int unit = -1;        // whose weights the buffer holds (or is receiving)
    CommWork ready;       // the all-gather that fills it
    bool pinned = false;  // between before_* and after_*: must not be overwritten
  };
  struct GradSlot {
    int unit = -1;
    CommWork reduced;  // the reduce-scatter reading it
  };
  // reduce_dtype bf16: a unit's gradient converted to bf16 [padded] and reduce-scattered
  // into a bf16 chunk [shard]; the chunk is added into the f32 shard when the slot is
  // needed again or at the step (add_reduced), so compute never waits for the collective
  // it just issued.
  struct ReduceSlot {
    int unit = -1;      // whose chunk is on its way; -1: none
    bool last = false;  // issued in the step's last micro-batch (hybrid: then all-reduce)
    CommWork reduced;
  };

  bool sharded_params() const {
    return strategy_ == ShardStrategy::FullShard || strategy_ == ShardStrategy::HybridShard;
  }
  bool needs_weights(int unit, bool backward) const;
  Tensor shard_part(const Buffer& b, DType dt, int unit) const;   // [shard(unit)]
  Tensor padded_part(const Buffer& b, DType dt, int unit) const;  // [padded(unit)]
  Tensor master() const;
  Tensor grad_shard() const;
  Tensor compute_shard() const;  // the master itself when compute is f32
  void gather(int unit);         // full_shard: start filling the unit's slot
  void use_weights(int unit, int dir);
  void release_weights(int unit, int dir);
  void prepare_grads(int unit);
  void reduce_grads_bf16(int unit, Tensor grad);  // grad: the unit's f32 gradient [padded]
  void add_reduced(int slot);
  void refresh_compute();

  Backend& be_;
  ShardStrategy strategy_;
  Communicator& shard_;
  Communicator* replica_;
  ParamLayout layout_;
  Sharding sh_;
  DType cdt_;
  DType reduce_dt_;
  bool last_micro_ = true;
  Buffer master_, grad_shard_, compute_shard_;  // [shard_total]; compute_shard_ unused if f32
  Buffer wbuf_[2], gbuf_[2];                    // full_shard: [max_unit_padded] unit buffers
  WeightSlot ws_[2];
  GradSlot gs_[2];
  Buffer rbuf_[2], rchunk_[2];  // reduce_dtype bf16: [max_unit_padded], [its shard]
  ReduceSlot rs_[2];
  Buffer full_compute_, full_grads_;      // other strategies: [padded_total]
  Tensor full_compute_t_, full_grads_t_;  // (views; may alias the shard buffers)
  std::vector<CommWork> grad_work_;       // per unit: last collective writing its grad shard
  std::vector<CommWork> param_work_;      // per unit: all-gather refreshing its weights
  std::unique_ptr<AdamW> opt_;
};

}  // namespace tl
