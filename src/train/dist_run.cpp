#include "train/dist_run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>
#include <utility>

#include "checkpoint/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "checkpoint/sharded.h"
#include "parallel/sharded_io.h"

namespace tl {

namespace {
constexpr int kShutdownGraceSeconds = 30;  // for this rank's teardown after an error
}  // namespace

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
      // Whatever below blocks (an abort waiting for the other ranks, a free waiting for
      // kernels), this process ends: one rank per process, so _Exit takes only this rank.
      std::thread([] {
        std::this_thread::sleep_for(std::chrono::seconds(kShutdownGraceSeconds));
        std::fprintf(stderr, "error: shutdown after the error did not finish in %d s; exiting\n",
                     kShutdownGraceSeconds);
        std::_Exit(1);
      }).detach();
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
  loss_buf_ = Buffer(be, 3 * sizeof(double));
  flag_buf_ = Buffer(be, sizeof(double));
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

LossSum DistRun::global_loss(const LossSum& local, bool& stop) {
  Tensor t = loss_buf_.tensor(DType::F64, {3});
  const double host[3] = {local.sum, double(local.count), stop ? 1.0 : 0.0};
  be_->upload(t, host);
  world_->wait(world_->all_reduce(t, ReduceOp::Sum));
  double out[3];
  be_->download(out, t);
  stop = out[2] > 0;
  return LossSum{out[0], int64_t(out[1])};
}

bool DistRun::all_true(bool mine) {
  Tensor t = flag_buf_.tensor(DType::F64, {1});
  const double no = mine ? 0.0 : 1.0;
  be_->upload(t, &no);
  world_->wait(world_->all_reduce(t, ReduceOp::Max));
  double out = 0;
  be_->download(&out, t);
  return out == 0;
}

bool DistRun::weights_finite() {
  std::vector<float> p;
  fsdp_->get_master(p);
  return all_true(std::all_of(p.begin(), p.end(), [](float x) { return std::isfinite(x); }));
}

void DistRun::save(const std::string& path, const json& meta,
                   const std::function<void()>& before_commit) {
  json m = meta;
  m["dist"] = json{{"world", world()}, {"strategy", strategy_name(strategy_)}};
  save_sharded_checkpoint(path, m, *fsdp_, *world_, before_commit);
}

void DistRun::read(const std::string& path, CheckpointData& out) const {
  const Sharding& sh = fsdp_->sharding();
  if (is_directory(path)) return read_sharded_checkpoint(path, sh, fsdp_->shard_rank(), out);
  // A single-file checkpoint (a one-GPU run) continues on many: every rank keeps its shard.
  CheckpointData ck = load_checkpoint(path, true);
  out.meta = ck.meta;
  if (ck.adam_m.empty()) return;  // the caller refuses it, naming the reason
  TL_CHECK(int64_t(ck.params.size()) == sh.flat_total(), "'", path, "' holds ", ck.params.size(),
           " parameters, this model has ", sh.flat_total());
  for (auto [from, to] : {std::pair{&ck.params, &out.params}, std::pair{&ck.adam_m, &out.adam_m},
                          std::pair{&ck.adam_v, &out.adam_v}}) {
    to->assign(size_t(sh.shard_total()), 0.0f);
    extract_shard(sh, fsdp_->shard_rank(), from->data(), to->data());
  }
}

void DistRun::apply(const CheckpointData& ck) {
  fsdp_->set_shard_state(ck.params, ck.adam_m, ck.adam_v);
}

void DistRun::report_failure(const std::string& why) {
  if (reported_) return;
  reported_ = true;
  if (session_ && session_->health) session_->health->report_failure(why);
  else if (world_) world_->abort(why);
  else if (injected_) injected_->abort(why);
}

}  // namespace tl
