#include "train/sharded_run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>
#include <utility>

#include "checkpoint/checkpoint.h"
#include "checkpoint/run_folder.h"
#include "checkpoint/sharded.h"
#include "core/fs.h"
#include "core/log.h"
#include "parallel/sharded_io.h"
#include "train/stop_signal.h"

namespace tl {

namespace {
constexpr int kShutdownGraceSeconds = 30;  // for this rank's teardown after an error
}  // namespace

ShardedRun::ShardedRun(ParallelOptions o, LaunchInfo launch, std::unique_ptr<Communicator> ranks)
    : o_(std::move(o)), launch_(std::move(launch)), injected_(std::move(ranks)) {
  strategy_ =
      o_.dist.strategy.empty() ? ShardStrategy::FullShard : strategy_from_name(o_.dist.strategy);
  // One log, not one per rank: the other ranks report warnings and errors only.
  if (!injected_ && launch_.rank != 0) set_log_level(LogLevel::Warn);
}

ShardedRun::~ShardedRun() {
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

std::unique_ptr<Backend> ShardedRun::make_backend() const {
  return tl::make_backend(injected_ ? o_.device : device_for_rank(o_.device, launch_), o_.threads);
}

void ShardedRun::connect(Backend& be) {
  be_ = &be;
  if (injected_) {
    world_ = injected_.get();
  } else {
    session_ = start_session(launch_, be, o_.dist.timeout_seconds, o_.dist.copy_engines());
    world_ = session_->world.get();
  }
  int group = o_.dist.hybrid_group_size;
  if (group == 0) group = session_ ? session_->ranks_per_node : launch_.world;
  if (strategy_ == ShardStrategy::HybridShard && o_.dist.hybrid_group_size == 0 && session_ &&
      rank() == 0) {
    // Groups are consecutive ranks: right when the launcher numbers ranks node by node.
    const auto& h = session_->hosts;
    for (size_t r = 0; r < h.size(); ++r)
      if (h[r] != h[r / size_t(group) * size_t(group)]) {
        log_warn("hybrid_shard: ranks ", r / group * group, " and ", r,
                 " share a group but run on ", h[r / size_t(group) * size_t(group)], " and ", h[r],
                 ": the launcher does not number ranks node by node (use block distribution)");
        break;
      }
  }
  groups_ = make_fsdp_groups(*world_, strategy_, group);
  reduce_buf_ = Buffer(be, kMaxReduce * sizeof(double));
  fsdp_ = std::make_unique<Fsdp>(o_.model, be, strategy_, *groups_.shard, groups_.replica.get(),
                                 o_.adamw, dtype_from_name(o_.dist.reduce_dtype));
  log_info("dist: ", describe());
}

std::string ShardedRun::describe() const {
  std::string s = cat(world(), " rank(s), strategy ", strategy_name(strategy_));
  if (groups_.shard) s += ", " + layout();
  if (o_.dist.reduce_dtype != "f32") s += ", gradients reduced in " + o_.dist.reduce_dtype;
  if (o_.dist.copy_engines()) s += ", all-gathers on the copy engines";
  return s;
}

std::string ShardedRun::layout() const {
  return cat("shard groups of ", groups_.shard->world(), ", ",
             groups_.replica ? groups_.replica->world() : 1, " replica(s)");
}

void ShardedRun::all_reduce(double* values, int n, ReduceOp op) {
  TL_ASSERT(n >= 1 && n <= kMaxReduce);
  Tensor t = reduce_buf_.tensor(DType::F64, {n});
  be_->upload(t, values);
  world_->wait(world_->all_reduce(t, op));
  be_->download(values, t);
}

LossSum ShardedRun::global_loss(const LossSum& local) {
  // The loss and whether any rank was asked to stop, in one collective.
  double v[3] = {local.sum, double(local.count), stop_requested() ? 1.0 : 0.0};
  all_reduce(v, 3, ReduceOp::Sum);
  stop_agreed_ = v[2] > 0;
  return LossSum{v[0], int64_t(v[1])};
}

bool ShardedRun::all_true(bool mine) {
  double no = mine ? 0.0 : 1.0;
  all_reduce(&no, 1, ReduceOp::Max);
  return no == 0;
}

std::string ShardedRun::checkpoint_path(const std::string& run_dir, int64_t step) const {
  return sharded_checkpoint_path(run_dir, step);
}

bool ShardedRun::collect(CheckpointData& ck) {
  // Every rank checks its own master-weight shard; all ranks get the same answer.
  if (writes_shard(*fsdp_, *world_))
    fsdp_->get_shard_state(ck.params, ck.adam_m, ck.adam_v);
  else
    fsdp_->get_master(ck.params);
  const bool finite =
      std::all_of(ck.params.begin(), ck.params.end(), [](float x) { return std::isfinite(x); });
  if (!writes_shard(*fsdp_, *world_)) ck.params.clear();
  return all_true(finite);
}

void ShardedRun::begin_save(const std::string& path) { start_sharded_save(path, *world_); }

void ShardedRun::write(const std::string& path, CheckpointData ck,
                       const std::function<void()>& before_commit) const {
  const json model = ck.meta.at("model");
  ck.meta = json::object();  // the shard's own header meta is written by write_shard
  write_rank_shard(path, model, *fsdp_, *world_, std::move(ck), before_commit);
}

void ShardedRun::commit_save(const std::string& path, const json& meta) {
  json m = meta;
  m["dist"] = json{{"world", world()}, {"strategy", strategy_name(strategy_)}};
  commit_sharded_save(path, m, *fsdp_, *world_);
}

void ShardedRun::read(const std::string& path, CheckpointData& out) const {
  const Sharding& sh = fsdp_->sharding();
  read_stats_ = ShardedReadStats{};
  if (is_directory(path)) {
    read_stats_ = read_sharded_checkpoint(path, sh, fsdp_->shard_rank(), out);
    return;
  }
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

void ShardedRun::apply(const CheckpointData& ck) {
  fsdp_->set_shard_state(ck.params, ck.adam_m, ck.adam_v);
  const ShardedReadStats& st = read_stats_;
  // The most any rank read, against its share (about 1x, not the whole set per rank).
  double most[2] = {double(st.bytes_read),
                    double(st.bytes_read) / double(std::max<uint64_t>(st.share_bytes, 1))};
  all_reduce(most, 2, ReduceOp::Max);
  const auto mib = [](double b) { return cat(std::lround(b / double(1 << 20)), " MiB"); };
  if (st.set_bytes > 0) {
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.3f", most[1]);
    log_info("resume: each rank read at most ", mib(most[0]), " (", ratio, " x its share of ",
             mib(double(st.share_bytes)), "; the set holds ", mib(double(st.set_bytes)), ")");
  }
}

void ShardedRun::report_failure(const std::string& why) {
  if (reported_) return;
  reported_ = true;
  if (session_ && session_->health)
    session_->health->report_failure(why);
  else if (world_)
    world_->abort(why);
  else if (injected_)
    injected_->abort(why);
}

}  // namespace tl
