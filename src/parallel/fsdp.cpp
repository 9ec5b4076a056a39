#include "parallel/fsdp.h"

#include <cstring>

namespace tl {

namespace {
constexpr int kSlots = 2;  // unit buffers: the unit computing and the one being gathered
}

const char* strategy_name(ShardStrategy s) {
  switch (s) {
    case ShardStrategy::FullShard: return "full_shard";
    case ShardStrategy::ShardGradOp: return "shard_grad_op";
    case ShardStrategy::NoShard: return "no_shard";
    case ShardStrategy::HybridShard: return "hybrid_shard";
  }
  return "?";
}

ShardStrategy strategy_from_name(const std::string& name) {
  for (auto s : {ShardStrategy::FullShard, ShardStrategy::ShardGradOp, ShardStrategy::NoShard,
                 ShardStrategy::HybridShard})
    if (name == strategy_name(s)) return s;
  fail("unknown sharding strategy '", name,
       "' (expected full_shard, shard_grad_op, no_shard or hybrid_shard)");
}

FsdpGroups make_fsdp_groups(Communicator& world, ShardStrategy s, int hybrid_group_size) {
  const int W = world.world(), r = world.rank();
  int G = W;  // ranks per shard group
  if (s == ShardStrategy::NoShard) G = 1;
  if (s == ShardStrategy::HybridShard) {
    G = hybrid_group_size;
    TL_CHECK(G >= 1 && W % G == 0, "hybrid_shard: the group size (", G,
             ") must divide the number of ranks (", W, ")");
  }
  FsdpGroups g;
  g.shard = world.split(r / G, r);
  g.replica = world.split(r % G, r);
  return g;
}

Fsdp::Fsdp(const ModelConfig& cfg, Backend& be, ShardStrategy strategy, Communicator& shard,
           Communicator* replica, const AdamWConfig& adamw, DType reduce_dtype)
    : be_(be),
      strategy_(strategy),
      shard_(shard),
      replica_(replica && replica->world() > 1 ? replica : nullptr),
      layout_(cfg),
      sh_(layout_, shard.world()),
      cdt_(be.compute_dtype()),
      reduce_dt_(shard.world() > 1 ? reduce_dtype : DType::F32) {
  TL_CHECK(strategy != ShardStrategy::NoShard || shard.world() == 1,
           "no_shard: the shard group must be this rank alone, got ", shard.world(), " ranks");
  TL_CHECK(reduce_dtype == DType::F32 || reduce_dtype == DType::BF16,
           "fsdp: gradients reduce in f32 or bf16, not ", dtype_name(reduce_dtype));
  const int U = sh_.num_units();
  const size_t S = size_t(sh_.shard_total());
  // What the weights' all-gathers read (the compute-dtype shard) and write (the unit or
  // full buffers) comes from collective_buffer(): registered memory where the group gathers
  // on the copy engines (dist.all_gather), ordinary memory elsewhere.
  master_ = cdt_ == DType::F32 ? shard_.collective_buffer(be_, S * 4) : Buffer(be_, S * 4);
  grad_shard_ = Buffer(be_, S * 4);
  if (cdt_ != DType::F32) compute_shard_ = shard_.collective_buffer(be_, S * dtype_size(cdt_));
  be_.zero(master());
  be_.zero(grad_shard());
  if (cdt_ != DType::F32) be_.zero(compute_shard());
  if (sharded_params()) {
    const int64_t M = sh_.max_unit_padded();
    for (int s = 0; s < kSlots; ++s) {
      wbuf_[s] = shard_.collective_buffer(be_, size_t(M) * dtype_size(cdt_));
      gbuf_[s] = Buffer(be_, size_t(M) * 4);
    }
  } else if (shard.world() == 1) {
    // One shard is the whole (padded) model: the full buffers are the shard buffers.
    full_compute_t_ = compute_shard();
    full_grads_t_ = grad_shard();
  } else {
    const int64_t P = sh_.padded_total();
    full_compute_ = shard_.collective_buffer(be_, size_t(P) * dtype_size(cdt_));
    full_grads_ = Buffer(be_, size_t(P) * 4);
    full_compute_t_ = full_compute_.tensor(cdt_, {P});
    full_grads_t_ = full_grads_.tensor(DType::F32, {P});
    be_.zero(full_compute_t_);
    be_.zero(full_grads_t_);
  }
  if (reduce_dt_ == DType::BF16) {
    const int64_t M = sh_.max_unit_padded();  // a multiple of the world: chunks M / world
    for (int s = 0; s < kSlots; ++s) {
      rbuf_[s] = Buffer(be_, size_t(M) * 2);
      rchunk_[s] = Buffer(be_, size_t(M / shard.world()) * 2);
    }
  }
  grad_work_.assign(size_t(U), CommWork{});
  param_work_.assign(size_t(U), CommWork{});
  opt_ = std::make_unique<AdamW>(be_, sh_.shard_total(), adamw);
}

Fsdp::~Fsdp() = default;

// ---- views ----

Tensor Fsdp::master() const { return master_.tensor(DType::F32, {sh_.shard_total()}); }
Tensor Fsdp::grad_shard() const { return grad_shard_.tensor(DType::F32, {sh_.shard_total()}); }
Tensor Fsdp::compute_shard() const {
  return cdt_ == DType::F32 ? master() : compute_shard_.tensor(cdt_, {sh_.shard_total()});
}

Tensor Fsdp::shard_part(const Buffer& b, DType dt, int u) const {
  const ShardUnit& su = sh_.unit(u);
  return b.tensor(dt, {su.shard}, size_t(su.shard_offset) * dtype_size(dt));
}

Tensor Fsdp::padded_part(const Buffer& b, DType dt, int u) const {
  const ShardUnit& su = sh_.unit(u);
  return b.tensor(dt, {su.padded}, size_t(su.padded_offset) * dtype_size(dt));
}

namespace {
// A view of shape `shape` starting `offset` elements into t.
Tensor sub(const Tensor& t, int64_t offset, Shape shape) {
  TL_ASSERT(offset >= 0 && offset + shape.numel() <= t.numel());
  return Tensor(static_cast<char*>(t.data) + size_t(offset) * dtype_size(t.dtype), t.dtype,
                t.device, shape);
}
}  // namespace

Tensor Fsdp::weight(const ParamInfo& p) {
  const int u = sh_.unit_of(p.offset);
  if (!sharded_params()) return sub(full_compute_t_, sh_.padded_index(p.offset), p.shape);
  const WeightSlot& w = ws_[u % kSlots];
  TL_CHECK(w.unit == u && w.pinned, "fsdp: weight ", p.name, " used outside its unit's hooks");
  return sub(wbuf_[u % kSlots].tensor(cdt_, {sh_.unit(u).padded}), p.offset - sh_.unit(u).begin,
             p.shape);
}

Tensor Fsdp::grad(const ParamInfo& p) {
  const int u = sh_.unit_of(p.offset);
  if (!sharded_params()) return sub(full_grads_t_, sh_.padded_index(p.offset), p.shape);
  TL_CHECK(gs_[u % kSlots].unit == u, "fsdp: gradient ", p.name,
           " used outside its unit's backward hooks");
  return sub(gbuf_[u % kSlots].tensor(DType::F32, {sh_.unit(u).padded}),
             p.offset - sh_.unit(u).begin, p.shape);
}

// ---- full_shard: unit buffers ----

bool Fsdp::needs_weights(int u, bool backward) const {
  return u >= 0 && u < sh_.num_units() && (!backward || sh_.unit(u).backward_needs_weights);
}

void Fsdp::gather(int u) {
  WeightSlot& w = ws_[u % kSlots];
  if (w.unit == u) return;  // there already, or on its way
  TL_ASSERT(!w.pinned);
  w.unit = u;
  w.ready = shard_.all_gather(
      wbuf_[u % kSlots].tensor(cdt_, {sh_.unit(u).padded}),
      shard_part(sharded_params() && cdt_ != DType::F32 ? compute_shard_ : master_, cdt_, u));
}

// Makes the unit's weights usable by compute enqueued from now on, and starts the next
// unit's gather (dir: +1 forward, -1 backward) if its buffer is free.
void Fsdp::use_weights(int u, int dir) {
  gather(u);
  WeightSlot& w = ws_[u % kSlots];
  shard_.wait(w.ready);
  w.pinned = true;
  const int next = u + dir;
  if (needs_weights(next, dir < 0) && !ws_[next % kSlots].pinned) gather(next);
}

// The compute enqueued so far is the last to read the unit's weights: its buffer may take
// the unit after next (the all-gather waits for that compute on the device).
void Fsdp::release_weights(int u, int dir) {
  ws_[u % kSlots].pinned = false;
  const int after_next = u + 2 * dir;
  if (needs_weights(after_next, dir < 0)) {
    gather(after_next);
  } else if (dir < 0 && !last_micro_ && !ws_[0].pinned) {
    gather(0);  // end of a backward with more micro-batches to come: the next forward's first unit
  }
}

// The unit's gradient buffer starts as zeros except this rank's own chunk, which holds
// the gradient shard accumulated so far: the reduce-scatter (a sum) after the backward
// then yields accumulated + new, with no extra buffer and no add kernel.
void Fsdp::prepare_grads(int u) {
  GradSlot& g = gs_[u % kSlots];
  shard_.wait(g.reduced);      // the previous reduce-scatter out of this buffer is done
  shard_.wait(grad_work_[u]);  // and the last one into this unit's shard
  const ShardUnit& su = sh_.unit(u);
  Tensor full = gbuf_[u % kSlots].tensor(DType::F32, {su.padded});
  be_.zero(full);
  // (bf16 reduction: the f32 shard is not sent through a bf16 sum; the chunk is added
  // to it instead, add_reduced)
  if (reduce_dt_ == DType::F32)
    be_.copy(sub(full, int64_t(shard_.rank()) * su.shard, {su.shard}),
             shard_part(grad_shard_, DType::F32, u));
  g.unit = u;
}

void Fsdp::reduce_grads_bf16(int u, Tensor grad) {
  const int s = u % kSlots;
  add_reduced(s);  // the slot's previous chunk, two units ago
  const ShardUnit& su = sh_.unit(u);
  Tensor staged = rbuf_[s].tensor(DType::BF16, {su.padded});
  be_.convert(staged, grad);  // on the compute stream: grad's buffer is free after this
  rs_[s].unit = u;
  rs_[s].last = last_micro_;
  rs_[s].reduced =
      shard_.reduce_scatter(rchunk_[s].tensor(DType::BF16, {su.shard}), staged, ReduceOp::Sum);
}

void Fsdp::add_reduced(int s) {
  ReduceSlot& r = rs_[s];
  if (r.unit < 0) return;
  shard_.wait(r.reduced);
  const int u = r.unit;
  be_.accumulate(shard_part(grad_shard_, DType::F32, u),
                 rchunk_[s].tensor(DType::BF16, {sh_.unit(u).shard}));
  grad_work_[size_t(u)] =
      r.last && replica_
          ? replica_->all_reduce(shard_part(grad_shard_, DType::F32, u), ReduceOp::Sum)
          : CommWork{};
  r = ReduceSlot{};
}

// ---- hooks ----

void Fsdp::before_forward(int u) {
  if (sharded_params()) {
    use_weights(u, +1);
  } else {
    shard_.wait(param_work_[size_t(u)]);
  }
}

void Fsdp::after_forward(int u) {
  if (sharded_params()) release_weights(u, +1);
}

void Fsdp::before_backward(int u) {
  if (!sharded_params()) return;
  if (needs_weights(u, true)) use_weights(u, -1);
  prepare_grads(u);
}

void Fsdp::after_backward(int u) {
  if (reduce_dt_ == DType::BF16) {
    if (sharded_params()) {
      if (needs_weights(u, true)) release_weights(u, -1);
      reduce_grads_bf16(u, gbuf_[u % kSlots].tensor(DType::F32, {sh_.unit(u).padded}));
    } else if (last_micro_) {
      reduce_grads_bf16(u, padded_part(full_grads_, DType::F32, u));
    }
    return;
  }
  CommWork work;
  if (sharded_params()) {
    if (needs_weights(u, true)) release_weights(u, -1);
    GradSlot& g = gs_[u % kSlots];
    work = shard_.reduce_scatter(shard_part(grad_shard_, DType::F32, u),
                                 gbuf_[u % kSlots].tensor(DType::F32, {sh_.unit(u).padded}),
                                 ReduceOp::Sum);
    g.reduced = work;
  } else if (last_micro_ && shard_.world() > 1) {
    work = shard_.reduce_scatter(shard_part(grad_shard_, DType::F32, u),
                                 padded_part(full_grads_, DType::F32, u), ReduceOp::Sum);
  }
  if (last_micro_ && replica_)
    work = replica_->all_reduce(shard_part(grad_shard_, DType::F32, u), ReduceOp::Sum);
  if (work.id != 0 || sharded_params()) grad_work_[size_t(u)] = work;
}

// ---- step ----

void Fsdp::begin_micro_batch(bool last) {
  shard_.check();
  last_micro_ = last;
}

void Fsdp::zero_grads() {
  for (int s = 0; s < kSlots; ++s) add_reduced(s);  // (none pending after a step)
  for (auto& w : grad_work_) shard_.wait(w);
  be_.zero(grad_shard());
  if (!sharded_params() && full_grads_.data()) be_.zero(full_grads_t_);
}

StepResult Fsdp::step(float lr) {
  for (int s = 0; s < kSlots; ++s) add_reduced(s);
  for (auto& w : grad_work_) {
    shard_.wait(w);
    w = CommWork{};
  }
  auto global_norm = [&](Tensor norm_sq) {
    if (shard_.world() > 1) shard_.wait(shard_.all_reduce(norm_sq, ReduceOp::Sum));
  };
  StepResult r = opt_->step(master(), grad_shard(), cdt_ == DType::F32 ? Tensor() : compute_shard(),
                            lr, global_norm);
  if (r.applied) refresh_compute();
  shard_.check();
  return r;
}

// After the master shard changed: compute weights follow (AdamW already wrote the
// compute shard). full_shard drops its unit buffers and starts gathering the first two
// units for the next forward; shard_grad_op gathers every unit (each waited on by its
// forward).
void Fsdp::refresh_compute() {
  if (sharded_params()) {
    for (auto& w : ws_) w = WeightSlot{};
    gather(0);
    if (sh_.num_units() > 1) gather(1);
  } else if (shard_.world() > 1) {
    for (int u = 0; u < sh_.num_units(); ++u)
      param_work_[size_t(u)] =
          shard_.all_gather(padded_part(full_compute_, cdt_, u),
                            shard_part(cdt_ == DType::F32 ? master_ : compute_shard_, cdt_, u));
  }
}

// ---- parameters in and out ----

void Fsdp::set_params(const std::vector<float>& full) {
  TL_CHECK(int64_t(full.size()) == sh_.flat_total(), "set_params: got ", full.size(),
           " values for a model of ", sh_.flat_total());
  std::vector<float> shard(size_t(sh_.shard_total()));
  extract_shard(sh_, shard_.rank(), full.data(), shard.data());
  be_.upload(master(), shard.data());
  if (cdt_ != DType::F32) be_.convert(compute_shard(), master());
  refresh_compute();
}

std::vector<float> Fsdp::get_params() {
  std::vector<float> full(size_t(sh_.flat_total()));
  Buffer tmp(be_, size_t(sh_.max_unit_padded()) * 4);
  std::vector<float> host(size_t(sh_.max_unit_padded()));
  for (int u = 0; u < sh_.num_units(); ++u) {
    const ShardUnit& su = sh_.unit(u);
    Tensor t = tmp.tensor(DType::F32, {su.padded});
    shard_.wait(shard_.all_gather(t, shard_part(master_, DType::F32, u)));
    be_.download(host.data(), t);
    std::memcpy(full.data() + su.begin, host.data(), size_t(su.len()) * 4);
  }
  shard_.check();
  return full;
}

void Fsdp::get_master(std::vector<float>& master_out) const {
  master_out.resize(size_t(sh_.shard_total()));
  be_.download(master_out.data(), master());
}

void Fsdp::get_shard_state(std::vector<float>& master_out, std::vector<float>& m,
                           std::vector<float>& v) const {
  get_master(master_out);
  opt_->get_state(m, v);
}

void Fsdp::set_shard_state(const std::vector<float>& master_in, const std::vector<float>& m,
                           const std::vector<float>& v) {
  TL_CHECK(int64_t(master_in.size()) == sh_.shard_total(), "set_shard_state: got ",
           master_in.size(), " values for a shard of ", sh_.shard_total());
  be_.upload(master(), master_in.data());
  if (cdt_ != DType::F32) be_.convert(compute_shard(), master());
  opt_->set_state(m, v);
  refresh_compute();
}

}  // namespace tl
