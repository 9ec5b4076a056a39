#include "optim/adamw.h"

#include <cmath>

namespace tl {

AdamW::AdamW(Backend& be, int64_t num_params, AdamWConfig cfg)
    : be_(be), cfg_(cfg), n_(num_params) {
  m_ = Buffer(be_, size_t(n_) * 4);
  v_ = Buffer(be_, size_t(n_) * 4);
  norm_sq_ = Buffer(be_, 4);
  be_.zero(m_.tensor(DType::F32, {n_}));
  be_.zero(v_.tensor(DType::F32, {n_}));
}

StepResult AdamW::step(Tensor params, Tensor grads, Tensor params_compute, float lr,
                       const std::function<void(Tensor)>& reduce_norm_sq) {
  TL_CHECK(params.numel() == n_ && grads.numel() == n_, "optimizer built for ", n_,
           " parameters, got ", params.str(), " and gradients ", grads.str());
  Tensor norm_sq = norm_sq_.tensor(DType::F32, {1});
  be_.sum_squares(norm_sq, grads);
  if (reduce_norm_sq) reduce_norm_sq(norm_sq);
  float host_norm_sq = 0;
  be_.download(&host_norm_sq, norm_sq);
  StepResult r;
  r.grad_norm = std::sqrt(double(host_norm_sq));
  if (!std::isfinite(r.grad_norm)) return r;
  AdamWArgs args;
  args.lr = lr;
  args.beta1 = cfg_.beta1;
  args.beta2 = cfg_.beta2;
  args.eps = cfg_.eps;
  args.weight_decay = cfg_.weight_decay;
  args.step = ++t_;
  args.max_grad_norm = cfg_.grad_clip;
  be_.adamw_update(params, grads, m_.tensor(DType::F32, {n_}), v_.tensor(DType::F32, {n_}),
                   params_compute, norm_sq, args);
  r.applied = true;
  return r;
}

void AdamW::get_state(std::vector<float>& m, std::vector<float>& v) const {
  m.resize(size_t(n_));
  v.resize(size_t(n_));
  be_.download(m.data(), m_.tensor(DType::F32, {n_}));
  be_.download(v.data(), v_.tensor(DType::F32, {n_}));
}

void AdamW::set_state(const std::vector<float>& m, const std::vector<float>& v) {
  TL_CHECK(int64_t(m.size()) == n_ && int64_t(v.size()) == n_, "optimizer state has ", m.size(),
           "/", v.size(), " values, expected ", n_);
  be_.upload(m_.tensor(DType::F32, {n_}), m.data());
  be_.upload(v_.tensor(DType::F32, {n_}), v.data());
}

}  // namespace tl
