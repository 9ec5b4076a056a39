#include "train/parallelism.h"

#include <algorithm>
#include <cmath>

#include "checkpoint/load.h"
#include "checkpoint/run_folder.h"
#include "parallel/launch_env.h"
#include "train/sharded_run.h"
#include "train/stop_signal.h"
#include "train/train_step.h"

namespace tl {

namespace {

// One process: the model holds its weights and gradients, AdamW its moments; checkpoints
// are single files, which a background thread may write (the state is in host memory).
class SingleProcess final : public Parallelism {
 public:
  explicit SingleProcess(ParallelOptions o) : o_(std::move(o)) {}

  std::unique_ptr<Backend> make_backend() const override {
    return tl::make_backend(o_.device, o_.threads);
  }
  void connect(Backend& be) override { be_ = &be; }
  ParamProvider* provider() override { return nullptr; }
  void attach(LlamaModel& model) override {
    model_ = &model;
    opt_ = std::make_unique<AdamW>(*be_, model.layout().total(), o_.adamw);
  }

  int rank() const override { return 0; }
  int world() const override { return 1; }
  AdamW& optimizer() override { return *opt_; }

  void begin_micro_batch(bool) override {}
  LossSum global_loss(const LossSum& local) override { return local; }
  StepResult update(float lr) override { return optimizer_step(*opt_, *model_, lr); }
  bool should_stop() const override { return stop_requested(); }
  bool all_true(bool mine) override { return mine; }

  std::string checkpoint_path(const std::string& run_dir, int64_t step) const override {
    return tl::checkpoint_path(run_dir, step);
  }
  bool collect(CheckpointData& ck) override {
    ck.params = model_->get_params();
    if (!std::all_of(ck.params.begin(), ck.params.end(), [](float x) { return std::isfinite(x); }))
      return false;
    opt_->get_state(ck.adam_m, ck.adam_v);
    return true;
  }
  void begin_save(const std::string&) override {}
  void write(const std::string& path, CheckpointData ck,
             const std::function<void()>& before_commit) const override {
    save_checkpoint(path, ck, before_commit);  // atomic: complete once renamed
  }
  void commit_save(const std::string&, const json&) override {}
  void read(const std::string& path, CheckpointData& ck) const override {
    ck = load_any_checkpoint(path, /*with_optimizer=*/true);  // a sharded folder as one model
  }
  void apply(const CheckpointData& ck) override {
    model_->set_params(ck.params);
    opt_->set_state(ck.adam_m, ck.adam_v);
  }
  void report_failure(const std::string&) override {}

 private:
  ParallelOptions o_;
  Backend* be_ = nullptr;
  LlamaModel* model_ = nullptr;
  std::unique_ptr<AdamW> opt_;
};

}  // namespace

std::unique_ptr<Parallelism> make_single_process(const ParallelOptions& o) {
  return std::make_unique<SingleProcess>(o);
}

std::unique_ptr<Parallelism> make_parallelism(const ParallelOptions& o,
                                              std::unique_ptr<Communicator> ranks) {
  LaunchInfo li;
  if (ranks) {
    li.launcher = "in-process";
    li.rank = ranks->rank();
    li.world = ranks->world();
    li.local_world = ranks->world();
  } else {
    li = detect_launch();
  }
  if (!ranks && li.world == 1 && o.dist.strategy.empty()) return make_single_process(o);
  return std::make_unique<ShardedRun>(o, li, std::move(ranks));
}

}  // namespace tl
