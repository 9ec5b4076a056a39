#include "train/dist_run.h"

#include <exception>

#include "checkpoint/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "dist/sharded_checkpoint.h"

namespace tl {

std::unique_ptr<DistRun> DistRun::create(const TrainConfig& cfg, std::unique_ptr<Communicator> ranks) {
  LaunchInfo li;
  if (ranks) {
    li.launcher = "in-process";
    li.rank = ranks->rank();
    li.world = ranks->world();
    li.local_world = ranks->world();
  } else {
    li = detect_launch();
  }
  if (!ranks && li.world == 1 && cfg.dist.strategy.empty()) return nullptr;
  std::unique_ptr<DistRun> d(new DistRun());
  d->cfg_ = cfg;
  d->launch_ = li;
  d->injected_ = std::move(ranks);
  d->strategy_ = cfg.dist.strategy.empty() ? ShardStrategy::FullShard
                                           : strategy_from_name(cfg.dist.strategy);
  // One log, not one per rank: the other ranks report warnings and errors only.
  if (!d->injected_ && li.rank != 0) set_log_level(LogLevel::Warn);
  return d;
}

DistRun::~DistRun() {
  if (std::uncaught_exceptions() > 0) {
    report_failure("stopped with an error (see its log)");  // kept if one was reported
    if (session_) {
      session_->health.reset();  // delivers the report now, before anything can block
      // Collectives this rank will never join would hold its own kernels (and so cudaFree
      // below) forever: abort them.
      if (session_->world) session_->world->abort("this rank stopped with an error");
    }
  } else if (session_ && session_->health) {
    session_->health->finish();
  }
  // The provider's buffers go before the communicators they were gathered with.
  fsdp_.reset();
  groups_ = FsdpGroups{};
}

std::unique_ptr<Backend> DistRun::make_backend(const TrainConfig& cfg) const {
  return tl::make_backend(injected_ ? cfg.device : device_for_rank(cfg.device, launch_), cfg.threads);
}

void DistRun::connect(Backend& be) {
  be_ = &be;
  if (injected_) {
    world_ = injected_.get();
  } else {
    session_ = start_session(launch_, be, cfg_.dist.timeout_seconds);
    world_ = session_->world.get();
  }
  int group = cfg_.dist.hybrid_group_size;
  if (group == 0) group = session_ ? session_->ranks_per_node : launch_.world;
  if (strategy_ == ShardStrategy::HybridShard && cfg_.dist.hybrid_group_size == 0 && session_ &&
      rank() == 0) {
    // Groups are consecutive ranks: right when the launcher numbers ranks node by node.
    const auto& h = session_->hosts;
    for (size_t r = 0; r < h.size(); ++r)
      if (h[r] != h[r / size_t(group) * size_t(group)]) {
        log_warn("hybrid_shard: ranks ", r / group * group, " and ", r, " share a group but run on ",
                 h[r / size_t(group) * size_t(group)], " and ", h[r],
                 ": the launcher does not number ranks node by node (use block distribution)");
        break;
      }
  }
  groups_ = make_fsdp_groups(*world_, strategy_, group);
  loss_buf_ = Buffer(be, 2 * sizeof(double));
  log_info("dist: ", describe());
}

std::string DistRun::describe() const {
  std::string s = cat(world(), " rank(s), strategy ", strategy_name(strategy_));
  if (groups_.shard)
    s += cat(", shard groups of ", groups_.shard->world(), ", ",
             groups_.replica ? groups_.replica->world() : 1, " replica(s)");
  return s;
}

ParamProvider* DistRun::provider(const TrainConfig& cfg, Backend& be) {
  fsdp_ = std::make_unique<Fsdp>(cfg.model, be, strategy_, *groups_.shard, groups_.replica.get(),
                                 cfg.adamw);
  return fsdp_.get();
}

LossSum DistRun::global_loss(const LossSum& local) {
  Tensor t = loss_buf_.tensor(DType::F64, {2});
  const double host[2] = {local.sum, double(local.count)};
  be_->upload(t, host);
  world_->wait(world_->all_reduce(t, ReduceOp::Sum));
  double out[2];
  be_->download(out, t);
  return LossSum{out[0], int64_t(out[1])};
}

std::string DistRun::save(const std::string& checkpoint_dir, int64_t step, const json& meta, int keep) {
  const std::string path = checkpoint_dir + "/" + sharded_checkpoint_name(step);
  json m = meta;
  m["dist"] = json{{"world", world()}, {"strategy", strategy_name(strategy_)}};
  save_sharded_checkpoint(path, m, *fsdp_, *world_);
  if (rank() == 0) prune_sharded_checkpoints(checkpoint_dir, keep);
  return path;
}

json DistRun::restore(const std::string& path) {
  if (is_directory(path)) return load_sharded_checkpoint(path, *fsdp_);
  // A single-file checkpoint (a one-GPU run) continues on many: every rank keeps its shard.
  CheckpointData ck = load_checkpoint(path, true);
  TL_CHECK(!ck.adam_m.empty(), "cannot resume from '", path, "': it holds no optimizer state");
  const Sharding& sh = fsdp_->sharding();
  TL_CHECK(int64_t(ck.params.size()) == sh.flat_total(), "'", path, "' holds ", ck.params.size(),
           " parameters, this model has ", sh.flat_total());
  std::vector<float> p(size_t(sh.shard_total())), m(p.size()), v(p.size());
  extract_shard(sh, fsdp_->shard_rank(), ck.params.data(), p.data());
  extract_shard(sh, fsdp_->shard_rank(), ck.adam_m.data(), m.data());
  extract_shard(sh, fsdp_->shard_rank(), ck.adam_v.data(), v.data());
  fsdp_->set_shard_state(p, m, v);
  return ck.meta;
}

void DistRun::report_failure(const std::string& why) {
  if (reported_) return;
  reported_ = true;
  if (session_ && session_->health) session_->health->report_failure(why);
  else if (world_) world_->abort(why);
  else if (injected_) injected_->abort(why);
}

}  // namespace tl
