// The CUDA backend: owns the device context (stream, cuBLASLt handle and workspace), the
// memory accounting, the GEMM plans, the profiler and each op's scratch. Every op is a
// profiled call of its launcher (ops.h, head.h, matmul.h, attention.h), which checks the
// op's preconditions and enqueues work on the one stream; only download, synchronize and
// take_profile wait for the device.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>

#include "backend/cuda/attention.h"
#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/decode_attention.h"
#include "backend/cuda/head_cross_entropy.h"
#include "backend/cuda/logprob.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/memory.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/profile.h"
#include "backend/decode_linear_args.h"
#include "backend/fp8_args.h"

namespace tl::gpu {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no GPU: not an error for the caller
    return 0;
  }
  return n;
}

namespace {

constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;  // cuBLASLt's advice for Hopper

// Dense bf16 peak by architecture, scaled by the SM count from the data-center part each
// figure is quoted for: Hopper (cc 9.0) 989 TFLOP/s on 132 SMs (H100 SXM, H200); Ampere
// (cc 8.0) 312 TFLOP/s on 108 SMs (A100). Other architectures: unknown (0, no MFU).
double dense_bf16_peak(int cc_major, int cc_minor, int sm_count) {
  if (cc_major == 9 && cc_minor == 0) return 989e12 * (sm_count / 132.0);
  if (cc_major == 8 && cc_minor == 0) return 312e12 * (sm_count / 108.0);
  return 0;
}

// An instantiated CUDA graph, replayed on the stream it was captured from.
class GraphRecording final : public Backend::Recording {
 public:
  GraphRecording(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~GraphRecording() override {
    cudaStreamSynchronize(stream_);  // a replay may still be running
    cudaGraphExecDestroy(exec_);
  }
  void replay() override { TL_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

// A CUDA event on the backend's stream (no timing: the cheapest kind to record and wait on).
// wait() spins the calling thread rather than sleeping (no cudaEventBlockingSync): a decode
// step is ~1 ms and a sleeping waiter wakes tens of microseconds late.
class EventMarker final : public Backend::Marker {
 public:
  explicit EventMarker(cudaStream_t stream) : stream_(stream) {
    TL_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  }
  ~EventMarker() override { cudaEventDestroy(event_); }
  void record() override { TL_CUDA_CHECK(cudaEventRecord(event_, stream_)); }
  void wait() override { TL_CUDA_CHECK(cudaEventSynchronize(event_)); }

 private:
  cudaStream_t stream_;
  cudaEvent_t event_ = nullptr;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : mem_(device) {
    const int count = cuda_device_count();
    TL_CHECK(device >= 0 && device < count, "cuda: device ", device, " requested, but ", count,
             " CUDA device(s) are visible");
    try {
      init(device);
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaBackend() override { release(); }

  Device device() const override { return Device::CUDA; }
  std::string describe() const override { return description_; }
  DType compute_dtype() const override { return DType::BF16; }

  // ---- memory ----
  void* allocate(size_t bytes) override { return mem_.allocate(bytes, "a tensor buffer"); }
  void deallocate(void* p) noexcept override { mem_.release(p); }
  // From pageable host memory cudaMemcpyAsync returns once the bytes are staged, so the
  // caller may reuse host_src at once.
  void upload(Tensor dst, const void* host_src) override {
    enqueue_upload("upload", dst, host_src);
  }
  void download(void* host_dst, Tensor src) override {
    enqueue_download("download", host_dst, src);
    if (src.nbytes()) TL_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  }
  void* host_allocate(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t err = cudaMallocHost(&p, std::max<size_t>(bytes, 1));
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw Error(
          cat("cuda: cannot pin ", bytes, " bytes of host memory: ", cudaGetErrorString(err)));
    }
    return p;
  }
  void host_deallocate(void* p) noexcept override {
    if (p) cudaFreeHost(p);
  }
  void upload_async(Tensor dst, const void* host_src) override {
    enqueue_upload("upload_async", dst, host_src);
  }
  void download_async(void* host_dst, Tensor src) override {
    enqueue_download("download_async", host_dst, src);
  }
  std::unique_ptr<Marker> make_marker() override {
    return std::make_unique<EventMarker>(ctx_.stream);
  }
  void copy(Tensor dst, Tensor src) override {
    check_device("copy", "dst", dst, Device::CUDA);
    check_device("copy", "src", src, Device::CUDA);
    check_dtype("copy", "src", src, dst.dtype);
    TL_CHECK(dst.numel() == src.numel(), "copy: dst ", dst.str(), " and src ", src.str(),
             " differ in size");
    auto s = prof_->scope(ProfCat::Copy);
    if (dst.nbytes())
      TL_CUDA_CHECK(
          cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDeviceToDevice, ctx_.stream));
  }
  void zero(Tensor t) override {
    check_device("zero", "t", t, Device::CUDA);
    auto s = prof_->scope(ProfCat::Copy);
    if (t.nbytes()) TL_CUDA_CHECK(cudaMemsetAsync(t.data, 0, t.nbytes(), ctx_.stream));
  }
  void accumulate(Tensor dst, Tensor src) override { gpu::accumulate(dst, src, ctx_.stream); }
  void convert(Tensor dst, Tensor src) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::convert(dst, src, ctx_.stream);
  }
  void synchronize() override { TL_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }

  // ---- embedding ----
  void embedding_forward(Tensor out, Tensor table, Tensor tokens) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::embedding_forward(out, table, tokens, ctx_.stream);
  }
  void embedding_backward(Tensor dtable, Tensor dout, Tensor tokens) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::embedding_backward(dtable, dout, tokens, embed_scratch_, ctx_.stream);
  }

  // ---- RMSNorm ----
  void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::rmsnorm_forward(Tensor(), out, rstd, inp, Tensor(), weight, eps, "rmsnorm_forward",
                         ctx_.stream);
  }
  void add_rmsnorm_forward(Tensor res_out, Tensor out, Tensor rstd, Tensor res_in, Tensor delta,
                           Tensor weight, float eps) override {
    const char* op = "add_rmsnorm_forward";
    TL_CHECK(!delta.empty() || delta.numel() == 0, op, ": delta is empty");
    auto s = prof_->scope(ProfCat::Other);
    gpu::rmsnorm_forward(res_out, out, rstd, res_in, delta, weight, eps, op, ctx_.stream);
  }
  void rmsnorm_forward_fp8(Tensor res_out, Tensor codes, Tensor rstd, Tensor inp, Tensor delta,
                           Tensor weight, float eps, Fp8Cast cast) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::rmsnorm_forward(res_out, codes, rstd, inp, delta, weight, eps,
                         delta.empty() ? "rmsnorm_forward_fp8" : "add_rmsnorm_forward_fp8",
                         ctx_.stream, &cast);
  }
  void rmsnorm_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                        Tensor rstd) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, ctx_.sm_count, norm_scratch_,
                          ctx_.stream);
  }

  // ---- linear layers ----
  void matmul_forward(Tensor out, Tensor inp, Tensor weight) override {
    auto s = prof_->scope(ProfCat::Matmul);
    gemm_->forward("matmul_forward", out, inp, weight);
  }
  void matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                       bool accumulate_dinp, bool accumulate_dweight) override {
    const char* op = "matmul_backward";
    auto s = prof_->scope(ProfCat::Matmul);
    if (!dinp.empty()) {
      check_shape(op, "dinp", dinp, inp.shape);
      gemm_->backward_input(op, dinp, dout, weight, accumulate_dinp);
    }
    if (!dweight.empty()) {
      check_shape(op, "dweight", dweight, weight.shape);
      gemm_->backward_weight(op, dweight, dout, inp, accumulate_dweight);
    }
  }

  // ---- FP8 operands ----
  void amax(Tensor out, Tensor in) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::amax(out, in, ctx_.stream);
  }
  void fp8_quantize(Tensor out, Tensor out_t, Tensor scale_inv, Tensor in, Tensor amax, Fp8Format f,
                    Tensor amax_out) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::fp8_quantize(out, out_t, scale_inv, in, amax, f, amax_out, ctx_.stream);
  }
  void fp8_transpose(Tensor out_t, Tensor in) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::fp8_transpose(out_t, in, ctx_.stream);
  }
  void fp8_matmul(Tensor out, Tensor a, Tensor b, Tensor a_scale_inv, Tensor b_scale_inv,
                  Fp8Format fa, Fp8Format fb, bool accumulate) override {
    auto s = prof_->scope(ProfCat::Matmul);
    fp8_args::matmul(Device::CUDA, DType::BF16, out, a, b, a_scale_inv, b_scale_inv, fa, fb,
                     accumulate);
    gemm_->fp8("fp8_matmul", out, a, b, a_scale_inv.ptr<float>(), b_scale_inv.ptr<float>(), fa, fb,
               accumulate);
  }
  void fp8_amax_roll(Tensor history, Tensor current, Tensor scale_amax, Tensor last,
                     int64_t slot) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::fp8_amax_roll(history, current, scale_amax, last, slot, ctx_.stream);
  }

  // ---- rotary embedding ----
  void rope_forward(Tensor qkv, Tensor cos, Tensor sin, int n_head, int n_kv_head,
                    int pos0) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::rope(qkv, cos, sin, n_head, n_kv_head, pos0, false, "rope_forward", ctx_.stream);
  }
  void rope_backward(Tensor dqkv, Tensor cos, Tensor sin, int n_head, int n_kv_head,
                     int pos0) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::rope(dqkv, cos, sin, n_head, n_kv_head, pos0, true, "rope_backward", ctx_.stream);
  }

  // ---- attention (attention*.cu) ----
  void attention_forward(Tensor out, Tensor lse, Tensor qkv, int n_head, int n_kv_head) override {
    auto s = prof_->scope(ProfCat::Attention);
    attention_forward_cuda(ctx_, out, lse, qkv, n_head, n_kv_head);
  }
  void attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse, int n_head,
                          int n_kv_head) override {
    auto s = prof_->scope(ProfCat::Attention);
    attention_backward_cuda(ctx_, dqkv, dout, qkv, out, lse, n_head, n_kv_head);
  }

  // ---- incremental decoding (decode_attention.cu) ----
  void attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor cos,
                        Tensor sin, Tensor pos, int kv_len, int n_head, int n_kv_head) override {
    auto s = prof_->scope(ProfCat::Attention);
    gpu::attention_decode(out, qkv, k_cache, v_cache, cos, sin, pos, kv_len, n_head, n_kv_head,
                          ctx_.sm_count, ctx_.smem_optin, decode_scratch_, decode_counters_,
                          ctx_.stream);
  }
  void prefetch(const std::vector<Tensor>& tensors) override {
    for (const Tensor& t : tensors) check_device("prefetch", "tensors", t, Device::CUDA);
    auto s = prof_->scope(ProfCat::Copy);
    gpu::prefetch_l2(tensors, ctx_.stream);
  }
  void decode_linear(Tensor out, Tensor x, Tensor weight, const DecodeLinear& f) override {
    const linear_args::Dims d =
        linear_args::decode_linear(Device::CUDA, DType::BF16, out, x, weight, f);
    if (d.M == 0) return;
    if (gpu::decode_linear_fits(out, x, weight, f)) {
      auto s = prof_->scope(ProfCat::Matmul);
      return gpu::decode_linear(out, x, weight, f, ctx_.sm_count, ctx_.stream);
    }
    // More rows than the fused kernel takes: the ops it stands for, the add as the GEMM's
    // beta = 1 over a copy of the residual.
    Tensor in = x;
    if (f.in != LinearIn::Plain) {
      const size_t aligned = round_up_256(size_t(d.M * d.I) * 2);
      auto* base = static_cast<char*>(
          linear_scratch_.get(aligned + size_t(d.M) * sizeof(float), ctx_.stream));
      in = Tensor(base, DType::BF16, Device::CUDA, {d.M, d.I});
      if (f.in == LinearIn::RmsNorm)
        rmsnorm_forward(in, Tensor(base + aligned, DType::F32, Device::CUDA, {d.M}), x,
                        f.norm_weight, f.eps);
      else
        swiglu_forward(in, x);
    }
    auto s = prof_->scope(ProfCat::Matmul);
    if (f.residual.empty()) return gemm_->forward("decode_linear", out, in, weight);
    if (f.residual.data != out.data)
      TL_CUDA_CHECK(cudaMemcpyAsync(out.data, f.residual.data, out.nbytes(),
                                    cudaMemcpyDeviceToDevice, ctx_.stream));
    gemm_->gemm(out.data, CUDA_R_16BF, int(d.O), weight.data, int(d.I), true, in.data, int(d.I),
                false, int(d.O), int(d.M), int(d.I), 1.0f);
  }

  // ---- SwiGLU ----
  void swiglu_forward(Tensor out, Tensor gate_up) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::swiglu_forward(out, gate_up, ctx_.stream);
  }
  void swiglu_forward_fp8(Tensor codes, Tensor codes_t, Tensor gate_up, Fp8Cast cast) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::swiglu_forward_fp8(codes, codes_t, gate_up, cast, ctx_.stream);
  }
  void swiglu_backward_fp8(Tensor dcodes, Tensor dcodes_t, Tensor dout, Tensor gate_up,
                           Fp8Cast cast) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::swiglu_backward_fp8(dcodes, dcodes_t, dout, gate_up, cast, ctx_.stream);
  }
  void swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::swiglu_backward(dgate_up, dout, gate_up, ctx_.stream);
  }

  // ---- output head + cross-entropy (profiled inside: GEMMs vs softmax) ----
  void head_cross_entropy(Tensor losses, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                          Tensor targets, float loss_scale, Tensor workspace) override {
    gpu::head_cross_entropy(losses, dx, dweight, x, weight, targets, loss_scale, workspace, *gemm_,
                            *prof_, head_scratch_, ctx_.stream);
  }

  // ---- output head, log-probabilities (evaluation) ----
  void head_logprob(Tensor logp, Tensor greedy, Tensor x, Tensor weight, Tensor targets) override {
    gpu::head_logprob(logp, greedy, x, weight, targets, *gemm_, *prof_, head_scratch_, ctx_.stream);
  }
  void argmax_rows(Tensor ids, Tensor x, Tensor positions, int32_t* host_ids) override {
    auto s = prof_->scope(ProfCat::Other);
    gpu::argmax_rows(ids, x, positions, host_ids, ctx_.stream);
  }

  // ---- optimizer ----
  void sum_squares(Tensor out, Tensor g) override {
    auto s = prof_->scope(ProfCat::Optimizer);
    gpu::sum_squares(out, g, reduce_scratch_, ctx_.stream);
  }
  void adamw_update(Tensor params, Tensor grads, Tensor m, Tensor v, Tensor params_compute,
                    Tensor grad_norm_sq, const AdamWArgs& args) override {
    auto s = prof_->scope(ProfCat::Optimizer);
    gpu::adamw_update(params, grads, m, v, params_compute, grad_norm_sq, args, ctx_.stream);
  }

  // ---- recorded op sequences: CUDA graphs captured from the stream ----
  std::unique_ptr<Recording> record(const std::function<void()>& ops) override {
    if (prof_->on()) return nullptr;  // the profiler's events and syncs cannot be captured
    // Thread-local mode: only this thread's unsafe calls (a sync, a cudaMalloc) break it.
    TL_CUDA_CHECK(cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      ops();
    } catch (...) {
      cudaStreamEndCapture(ctx_.stream, &graph);  // leave capture mode whatever happened
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    TL_CUDA_CHECK(cudaStreamEndCapture(ctx_.stream, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    TL_CUDA_CHECK(err);
    return std::make_unique<GraphRecording>(exec, ctx_.stream);
  }
  uint64_t recording_epoch() const override { return mem_.releases(); }

  // ---- profiling and memory ----
  void set_profiling(bool on) override { prof_->set(on); }
  std::vector<std::pair<std::string, double>> take_profile() override { return prof_->take(); }
  // Attention keeps its own long-lived scratch (allocated on first use); it is counted
  // here and, as it stays allocated, added to the peak as well.
  size_t memory_in_use() const override { return mem_.in_use() + attention_scratch_bytes(ctx_); }
  size_t peak_memory() const override { return mem_.peak() + attention_scratch_bytes(ctx_); }
  size_t device_memory_total() const override { return mem_.device_total(); }
  double peak_flops() const override { return peak_flops_; }
  void* native_stream() const override { return ctx_.stream; }
  int device_index() const override { return ctx_.device; }

 private:
  // The copies upload/download and their _async forms enqueue (op names the caller).
  void enqueue_upload(const char* op, Tensor dst, const void* host_src) {
    check_device(op, "dst", dst, Device::CUDA);
    TL_CHECK(host_src || dst.nbytes() == 0, op, ": host source is null");
    if (dst.nbytes())
      TL_CUDA_CHECK(
          cudaMemcpyAsync(dst.data, host_src, dst.nbytes(), cudaMemcpyHostToDevice, ctx_.stream));
  }
  void enqueue_download(const char* op, void* host_dst, Tensor src) {
    check_device(op, "src", src, Device::CUDA);
    TL_CHECK(host_dst || src.nbytes() == 0, op, ": host destination is null");
    if (src.nbytes())
      TL_CUDA_CHECK(
          cudaMemcpyAsync(host_dst, src.data, src.nbytes(), cudaMemcpyDeviceToHost, ctx_.stream));
  }

  void init(int device) {
    TL_CUDA_CHECK(cudaSetDevice(device));
    cudaDeviceProp prop{};
    TL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    TL_CHECK(prop.major >= 8, "GPU ", device, " (", prop.name, ") has compute capability ",
             prop.major, ".", prop.minor,
             "; the CUDA backend needs 8.0 or newer (bf16 tensor "
             "cores: A100, H100); use --device cpu");
    ctx_.device = device;
    ctx_.sm_count = prop.multiProcessorCount;
    ctx_.smem_optin = prop.sharedMemPerBlockOptin;
    ctx_.cc_major = prop.major;
    ctx_.cc_minor = prop.minor;
    TL_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
    TL_CUBLAS_CHECK(cublasLtCreate(&ctx_.cublaslt));
    ctx_.cublas_workspace = mem_.allocate(kCublasWorkspaceBytes, "the cuBLASLt workspace");
    ctx_.cublas_workspace_bytes = kCublasWorkspaceBytes;
    gemm_ = std::make_unique<CublasGemm>(ctx_);
    prof_ = std::make_unique<Profiler>(ctx_.stream);
    peak_flops_ = dense_bf16_peak(prop.major, prop.minor, prop.multiProcessorCount);
    description_ = cat("cuda: ", prop.name, " (device ", device, ", ", prop.multiProcessorCount,
                       " SMs, cc ", prop.major, ".", prop.minor, ", ",
                       double(prop.totalGlobalMem) / double(size_t(1) << 30), " GiB)");
  }

  // Frees in reverse order of init; safe on a partly initialized backend.
  void release() noexcept {
    if (ctx_.stream) cudaStreamSynchronize(ctx_.stream);
    prof_.reset();
    gemm_.reset();
    attention_release(ctx_);  // its scratch, cuDNN plans and ctx_.cudnn
    mem_.release(ctx_.cublas_workspace);
    ctx_.cublas_workspace = nullptr;
    if (ctx_.cublaslt) cublasLtDestroy(ctx_.cublaslt);
    ctx_.cublaslt = nullptr;
    if (ctx_.stream) cudaStreamDestroy(ctx_.stream);
    ctx_.stream = nullptr;
  }

  // Declaration order matters: scratch buffers release into mem_, so mem_ comes first.
  DeviceMemory mem_;
  CudaContext ctx_;
  std::unique_ptr<CublasGemm> gemm_;
  std::unique_ptr<Profiler> prof_;
  std::string description_;
  double peak_flops_ = 0;
  Scratch norm_scratch_{mem_, "rmsnorm_backward's per-block partial sums"};
  Scratch embed_scratch_{mem_, "embedding_backward's sorted token ids"};
  Scratch head_scratch_{mem_, "head_cross_entropy's logits chunk"};
  Scratch reduce_scratch_{mem_, "sum_squares' per-block partial sums"};
  Scratch decode_scratch_{mem_, "attention_decode's per-split partial results"};
  Scratch decode_counters_{mem_, "attention_decode's per-row split counters"};
  Scratch linear_scratch_{mem_, "decode_linear's normed or gated input"};
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) {
  return std::make_unique<CudaBackend>(device);
}

}  // namespace tl::gpu
