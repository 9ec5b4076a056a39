#include "backend/cuda/profile.h"

#include "backend/cuda/cuda_common.h"

namespace tl::gpu {
namespace {
// Beyond this many pending records, begin() folds them (a host sync, profiling only).
constexpr size_t kMaxPending = 4096;
}  // namespace

Profiler::~Profiler() {
  for (auto& r : records_) {
    cudaEventDestroy(r.start);
    cudaEventDestroy(r.stop);
  }
  for (cudaEvent_t e : pool_) cudaEventDestroy(e);
}

Profiler::Scope::Scope(Profiler* p, ProfCat cat) : p_(p) {
  if (p_) rec_ = p_->begin(cat);
}

Profiler::Scope::~Scope() {
  if (p_) p_->end(rec_);
}

size_t Profiler::begin(ProfCat cat) {
  if (records_.size() >= kMaxPending) fold();
  cudaEvent_t ev[2];
  for (cudaEvent_t& e : ev) {
    if (pool_.empty()) {
      TL_CUDA_CHECK(cudaEventCreate(&e));
    } else {
      e = pool_.back();
      pool_.pop_back();
    }
  }
  records_.push_back({cat, ev[0], ev[1]});
  TL_CUDA_CHECK(cudaEventRecord(ev[0], stream_));
  return records_.size() - 1;
}

void Profiler::end(size_t rec) noexcept {
  cudaError_t err = cudaEventRecord(records_[rec].stop, stream_);
  if (err != cudaSuccess && deferred_ == cudaSuccess) deferred_ = err;
}

void Profiler::fold() {
  TL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (auto& r : records_) {
    float ms = 0;
    TL_CUDA_CHECK(cudaEventElapsedTime(&ms, r.start, r.stop));
    seconds_[int(r.cat)] += double(ms) * 1e-3;
    pool_.push_back(r.start);
    pool_.push_back(r.stop);
  }
  records_.clear();
}

std::vector<std::pair<std::string, double>> Profiler::take() {
  if (deferred_ != cudaSuccess) {
    cudaError_t err = deferred_;
    deferred_ = cudaSuccess;
    TL_CUDA_CHECK(err);
  }
  fold();
  static const char* names[] = {"matmul", "attention", "optimizer", "other", "copy"};
  std::vector<std::pair<std::string, double>> out;
  for (int i = 0; i < int(ProfCat::Count); ++i) {
    out.emplace_back(names[i], seconds_[i]);
    seconds_[i] = 0;
  }
  return out;
}

}  // namespace tl::gpu
