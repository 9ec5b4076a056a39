// The op interface: everything the model and optimizer do to device memory goes through
// a Backend. The CPU backend (fp32, plain loops) is the reference twin of the CUDA backend
// (bf16 compute, fp32 master weights); both implement exactly these semantics.
//
// Conventions
// - Arguments: outputs first, then inputs, then sizes/options.
// - N = tokens in a micro-batch (B*T), C = model dim, V = vocab, I = FFN dim,
//   H = query heads, K = key/value heads, D = head dim.
// - "act" = the backend's compute_dtype() (f32 on CPU, bf16 on CUDA); parameter
//   gradients and master weights are always f32.
// - "+=" outputs accumulate (gradients across micro-batches); "=" outputs are overwritten.
// - Every op checks its preconditions and throws tl::Error naming the op and the tensor.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/fp8.h"
#include "core/tensor.h"

namespace tl {

struct AdamWArgs {
  float lr = 0;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
  int64_t step = 1;            // 1-based, for bias correction
  float max_grad_norm = 1.0f;  // <= 0: no clipping
};

// A producer op that writes its output as FP8 codes itself (train.fp8_scaling delayed: the
// scale comes from past amaxes, so it is known before the values are). The codes are what
// fp8_quantize(codes, {}, scale_inv, y, scale_amax, format, amax_out) writes for y, the plain
// op's output in the compute dtype (so a producer-written operand is bit for bit the cast
// one): scale_inv[1] = 1/s (NaN when a value was not finite), amax_out[1] (optional) =
// max(amax_out, max |y|).
struct Fp8Cast {
  Tensor scale_amax, scale_inv, amax_out;
  Fp8Format format = Fp8Format::E4M3;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string describe() const = 0;  // for logs: "cpu (2 threads)", "cuda: H100 ..."
  virtual DType compute_dtype() const = 0;

  // ---- memory ----
  virtual void* allocate(size_t bytes) = 0;  // throws tl::Error when it cannot
  virtual void deallocate(void* p) noexcept = 0;
  virtual void upload(Tensor dst, const void* host_src) = 0;  // dst.nbytes() bytes
  virtual void download(void* host_dst, Tensor src) = 0;      // src.nbytes() bytes
  virtual void copy(Tensor dst, Tensor src) = 0;              // same dtype and numel
  virtual void zero(Tensor t) = 0;
  virtual void convert(Tensor dst, Tensor src) = 0;  // elementwise, same numel
  // dst (f32) += src (f32 or bf16), elementwise, same numel: FSDP adds a gradient chunk
  // reduced in bf16 into its f32 gradient shard.
  virtual void accumulate(Tensor dst, Tensor src) = 0;
  virtual void synchronize() = 0;

  // ---- embedding ----
  // out[N,C] (act) = table[tokens[n], :]; table[V,C] (act); tokens[N] (i32, each in [0,V))
  virtual void embedding_forward(Tensor out, Tensor table, Tensor tokens) = 0;
  // dtable[V,C] (f32) += rows of dout[N,C] (act) scattered by tokens[N]
  virtual void embedding_backward(Tensor dtable, Tensor dout, Tensor tokens) = 0;

  // ---- RMSNorm ----
  // rstd[N] (f32) = 1/sqrt(mean_c(inp^2) + eps); out[N,C] = inp * rstd * weight[C]
  virtual void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps) = 0;
  // res_out[N,C] = res_in + delta, then rmsnorm_forward(out, rstd, res_out, weight, eps)
  virtual void add_rmsnorm_forward(Tensor res_out, Tensor out, Tensor rstd, Tensor res_in,
                                   Tensor delta, Tensor weight, float eps) = 0;
  // dinp[N,C] (act) += dL/dinp; dweight[C] (f32) += sum_n dout * inp * rstd
  // rmsnorm_forward (delta empty) or add_rmsnorm_forward (res_out, res_in = inp, delta)
  // writing the normed output as FP8 codes (u8 [N,C]) as `cast` says (Fp8Cast): qkv's and
  // gate_up's input, without a bf16 copy and a cast pass.
  virtual void rmsnorm_forward_fp8(Tensor res_out, Tensor codes, Tensor rstd, Tensor inp,
                                   Tensor delta, Tensor weight, float eps, Fp8Cast cast) = 0;
  virtual void rmsnorm_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                                Tensor rstd) = 0;

  // ---- linear layers (no bias) ----
  // out[N,O] = inp[N,I] @ weight[O,I]^T
  virtual void matmul_forward(Tensor out, Tensor inp, Tensor weight) = 0;
  // dinp[N,I] (= or += when accumulate_dinp) dout[N,O] @ weight[O,I];
  // dweight[O,I] (f32; = or += when accumulate_dweight) dout^T @ inp. Either output may be
  // empty to skip it. (A step's first backward writes its gradients: no zeroing pass.)
  virtual void matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                               bool accumulate_dinp, bool accumulate_dweight) = 0;

  // ---- FP8 linear-layer operands (train.precision fp8; core/fp8.h) ----
  // Per-tensor current scaling: amax of the tensor, its codes at s = fp8_scale_for_amax(amax)
  // and a product that applies 1/s of each operand. Hopper's FP8 tensor cores take only
  // K-contiguous operands (TN), so dgrad and wgrad need transposed codes.
  // out[1] (f32) = max |in| over in (f32 or bf16, any shape); NaN when in holds one.
  virtual void amax(Tensor out, Tensor in) = 0;
  // in[R,C] (f32 or bf16), amax[1] (f32, as amax() wrote it): out (u8 codes of format f)
  // [R,C] and/or out_t [C,R] (either may be empty; both from one read of in: the backward
  // needs dy in both layouts) = in * s rounded to nearest even, saturating;
  // scale_inv[1] (f32) = 1/s. A non-finite amax gives s = 0 (codes of +-0, NaN for NaN) and
  // scale_inv NaN (the product is then NaN and the step skipped, never silently wrong).
  // amax_out[1] (f32; optional, not amax) = max(amax_out, max |in|) as amax() measures it:
  // delayed scaling scales by past amaxes and records this tensor's in the same pass; a
  // non-finite |in| then also makes scale_inv NaN (else it would merely saturate).
  virtual void fp8_quantize(Tensor out, Tensor out_t, Tensor scale_inv, Tensor in, Tensor amax,
                            Fp8Format f, Tensor amax_out) = 0;
  // out_t[C,R] = in[R,C]^T, FP8 codes (u8): the transposed operand of a product from codes
  // a producer wrote (Fp8Cast) row-major, moving one byte an element instead of two.
  virtual void fp8_transpose(Tensor out_t, Tensor in) = 0;
  // Delayed scaling's bookkeeping for n tensors in one pass, after a training pass recorded
  // current: last = current; history[slot, :] = current where finite (else the slot keeps
  // its value: that pass is skipped and its GEMM falls back, and its NaN must not scale the
  // next H passes); scale_amax[i] = max over the H rows of history[:, i]; current = 0.
  // history[H, n], the rest [n]: f32; amaxes are non-negative.
  virtual void fp8_amax_roll(Tensor history, Tensor current, Tensor scale_amax, Tensor last,
                             int64_t slot) = 0;
  // out[N,M] (act or f32; f32 when accumulate, then +=) = (a[N,K] @ b[M,K]^T) * a_scale_inv *
  // b_scale_inv, a and b u8 codes of formats fa and fb (not both E5M2), sums in f32 (the CUDA
  // backend's products take Hopper's fast accumulation, the gradients' too unless
  // TL_FP8_FAST_ACCUM=fprop: ~14-bit running sums inside an MMA).
  virtual void fp8_matmul(Tensor out, Tensor a, Tensor b, Tensor a_scale_inv, Tensor b_scale_inv,
                          Fp8Format fa, Fp8Format fb, bool accumulate) = 0;

  // ---- rotary embedding, in place on the q and k parts of a packed qkv ----
  // qkv[B,T,(H+2K)*D]: per token, H query heads then K key heads then K value heads.
  // Token t of every row is at position pos0 + t; cos,sin[Tmax,D/2] (f32) tables.
  // Rotate-half convention (as Hugging Face Llama): pairs (i, i + D/2).
  virtual void rope_forward(Tensor qkv, Tensor cos, Tensor sin, int n_head, int n_kv_head,
                            int pos0) = 0;
  // The transpose (inverse rotation), in place on dq and dk of dqkv.
  virtual void rope_backward(Tensor dqkv, Tensor cos, Tensor sin, int n_head, int n_kv_head,
                             int pos0) = 0;

  // ---- causal grouped-query attention ----
  // out[B,T,H*D] = softmax(q k^T / sqrt(D), causal) v, query head h reading kv head
  // h / (H/K); lse[B,H,T] (f32) = logsumexp of the scaled scores (kept for the backward).
  virtual void attention_forward(Tensor out, Tensor lse, Tensor qkv, int n_head, int n_kv_head) = 0;
  // dqkv[B,T,(H+2K)*D] (=) from dout[B,T,H*D], using the forward's qkv, out and lse.
  virtual void attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse,
                                  int n_head, int n_kv_head) = 0;

  // ---- incremental decoding with a KV cache (inference only, no backward) ----
  // qkv[B,Tn,(H+2K)*D] (act): the new tokens' projections, before RoPE. Token t of row b sits
  // at position p = pos[b] + t (pos[B]: i32 on this backend's device; rows may differ).
  // The op (1) rotates q and k at p (as rope_forward; qkv itself is only read), (2) writes k
  // (rotated) and v into row p of k_cache, v_cache [B,Tmax,K*D] (act), (3) computes
  // out[B,Tn,H*D] = softmax(q k^T / sqrt(D)) v over the cache positions [0, p] of row b,
  // query head h reading kv head h / (H/K). kv_len >= every pos[b] + Tn (and <= Tmax) bounds
  // the keys read; the caller guarantees it (a GPU cannot check device-side pos cheaply).
  // With Tn = 1 the cache rows before each row's pos must have been written before the
  // stream's last copy, upload or recording's replay (a LlamaInference decode step follows
  // the last step's ids download, its own upload of pos, or the last step's replay, which
  // work after it waits for whole): the CUDA backend reads them while the kernels launched
  // just before it may still run.
  virtual void attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor cos,
                                Tensor sin, Tensor pos, int kv_len, int n_head, int n_kv_head) = 0;
  // A linear layer of a decode step with what surrounds it in the block:
  //   out[M,O] = residual + f(x) @ weight[O,I]^T       (act; residual[M,O] optional, may be out)
  // f as `in` says: Plain x[M,I] -> x; RmsNorm x[M,I] -> rmsnorm_forward's out with
  // norm_weight[I] and eps; SwiGlu x[M,2I] -> swiglu_forward's out. f(x) is rounded to act as
  // the separate op rounds it; the sum once. One op, not three, because with one or a few
  // rows the product only streams the weights: the CUDA backend does f in the prologue and
  // the add in the epilogue of that stream, instead of two launches around it.
  enum class LinearIn { Plain, RmsNorm, SwiGlu };
  struct DecodeLinear {
    LinearIn in = LinearIn::Plain;
    Tensor norm_weight;  // RmsNorm: [I] (act)
    float eps = 0;       // RmsNorm
    Tensor residual;     // empty: no add
    // A hint, no effect on the result: what the next kernel reads (its weights), which this
    // one asks into L2 beside its own stream so that HBM has no idle gap between the two.
    Tensor prefetch;
  };
  virtual void decode_linear(Tensor out, Tensor x, Tensor weight, const DecodeLinear& f) = 0;
  // A hint that `tensors` (on this backend's device) will be read soon: the CUDA backend asks
  // L2 for their bytes (bulk prefetches) and returns; nothing is written and no result of any
  // op changes. The CPU backend checks the arguments and does nothing. A decode step issues it
  // before attention, whose latency-bound chain leaves HBM idle, for the weights of the
  // linears after it.
  virtual void prefetch(const std::vector<Tensor>& tensors) = 0;

  // ---- SwiGLU ----
  // out[N,I] = silu(gate_up[:, :I]) * gate_up[:, I:]
  virtual void swiglu_forward(Tensor out, Tensor gate_up) = 0;
  // dgate_up[N,2I] (=) from dout[N,I]
  virtual void swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up) = 0;
  // The same two writing FP8 codes (u8 [N,I] and [N,2I]) as `cast` says (Fp8Cast): the down
  // projection's input and gate_up's output gradient, without a bf16 copy and a cast pass.
  // codes_t / dcodes_t, when not empty, also receive the codes transposed ([I,N], [2I,N]:
  // the operands of the weight gradient's product), without a transpose pass of their own.
  virtual void swiglu_forward_fp8(Tensor codes, Tensor codes_t, Tensor gate_up, Fp8Cast cast) = 0;
  virtual void swiglu_backward_fp8(Tensor dcodes, Tensor dcodes_t, Tensor dout, Tensor gate_up,
                                   Fp8Cast cast) = 0;

  // ---- output head + cross-entropy, logits never kept ----
  // losses[N] (f32) = logsumexp(z) - z[target], z = x[N,C] @ weight[V,C]^T;
  // targets[N] (i32) < 0 are ignored (loss 0, no gradient).
  // If dx is not empty: dx[N,C] (act, =) and dweight[V,C] (f32, +=) receive the gradient
  // of loss_scale * sum_n losses[n]. workspace (optional, any dtype, on this device, sharing
  // no memory with the other tensors): memory free during the call, which the op may use for
  // its logits chunk instead of memory of its own (the model lends the backward's scratch).
  virtual void head_cross_entropy(Tensor losses, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                                  Tensor targets, float loss_scale, Tensor workspace = {}) = 0;

  // ---- output head, log-probabilities of given tokens (evaluation; logits never kept) ----
  // z = x[N,C] @ weight[V,C]^T (act); logp[N] (f32) = z[target] - logsumexp(z), the softmax
  // in f32; greedy[N] (i32) = 1 when target is the first index of max(z), else 0.
  // targets[N] (i32), each in [0, V).
  virtual void head_logprob(Tensor logp, Tensor greedy, Tensor x, Tensor weight,
                            Tensor targets) = 0;
  // ids[N] (i32) = the first index of the maximum of x[N,V] (act): greedy decoding on the
  // device, so N ids come back to the host instead of N x V logits. Then, unless empty,
  // positions[N] (i32) += 1: a greedy decode step moves its rows on for the step that
  // continues it, which then needs no upload of its positions. host_ids (or null): host
  // memory from host_allocate that the op also writes the ids into itself, so that no
  // download is enqueued after it (a decode step's graph then ends at its last kernel); they
  // are there once a Marker recorded after the op has been waited on.
  virtual void argmax_rows(Tensor ids, Tensor x, Tensor positions, int32_t* host_ids) = 0;

  // ---- optimizer, over flat f32 arrays ----
  // out[1] (f32) = sum of g[P]^2
  virtual void sum_squares(Tensor out, Tensor g) = 0;
  // Decoupled AdamW on params/grads/m/v [P] (f32). If grad_norm_sq[1] is not empty and
  // args.max_grad_norm > 0, gradients are scaled by min(1, max/(sqrt(grad_norm_sq) + 1e-6)) first
  // (PyTorch's clip_grad_norm_).
  // If params_compute is not empty it receives the updated parameters in its dtype.
  virtual void adamw_update(Tensor params, Tensor grads, Tensor m, Tensor v, Tensor params_compute,
                            Tensor grad_norm_sq, const AdamWArgs& args) = 0;

  // ---- recorded op sequences (optional; CUDA graphs) ----
  // A replayable copy of the ops a function enqueues, with the pointers, sizes and scalars
  // they were given: replaying skips the per-op host work and launches (~220 a decode step).
  class Recording {
   public:
    virtual ~Recording() = default;
    virtual void replay() = 0;  // enqueues the recorded ops again
  };
  // Runs nothing on the device: records what ops() enqueues. nullptr where the backend
  // cannot record (the CPU backend; the CUDA backend while profiling): run ops() instead.
  // ops() must not download, synchronize or grow an op's scratch (run it once unrecorded
  // first, so scratch has its size). A recording is valid while recording_epoch() is
  // unchanged: the epoch moves whenever the backend frees memory a recording could point to.
  virtual std::unique_ptr<Recording> record(const std::function<void()>& ops) { return nullptr; }
  virtual uint64_t recording_epoch() const { return 0; }

  // ---- overlapping the host with the device (optional; backends whose ops complete at once
  // keep these defaults) ----
  // Host memory the device copies to and from without staging (pinned on CUDA): copies from
  // and into it can be enqueued and left running. Throws tl::Error when it cannot.
  virtual void* host_allocate(size_t bytes);
  virtual void host_deallocate(void* p) noexcept;
  // upload/download that only enqueue the copy (host memory from host_allocate): the host
  // bytes must stay as they are, or are not yet written, until a Marker recorded after the
  // copy has been waited on.
  virtual void upload_async(Tensor dst, const void* host_src) { upload(dst, host_src); }
  virtual void download_async(void* host_dst, Tensor src) { download(host_dst, src); }
  // A point in the queue of enqueued work: wait() returns once everything enqueued before
  // the last record() has run. Reusable: record() again moves the point.
  class Marker {
   public:
    virtual ~Marker() = default;
    virtual void record() {}
    virtual void wait() {}
  };
  virtual std::unique_ptr<Marker> make_marker() { return std::make_unique<Marker>(); }

  // ---- profiling and memory (optional) ----
  // While on, ops are timed on the device by category: "matmul", "attention",
  // "optimizer", "other", "copy" (copies and memsets). take_profile() synchronizes,
  // returns the seconds per category since the last call, and resets them.
  virtual void set_profiling(bool on) {}
  virtual std::vector<std::pair<std::string, double>> take_profile() { return {}; }
  virtual size_t memory_in_use() const { return 0; }        // bytes allocated now
  virtual size_t peak_memory() const { return 0; }          // high-water mark of allocations
  virtual size_t device_memory_total() const { return 0; }  // 0 when unknown
  // Dense bf16 tensor-core peak of the device in FLOP/s, the denominator of MFU; 0 when
  // unknown (the CPU backend).
  virtual double peak_flops() const { return 0; }

  // ---- distributed training (optional) ----
  // The stream compute ops are enqueued on (a cudaStream_t on CUDA), so a communicator can
  // order its collectives against them; nullptr for backends whose ops complete at once.
  virtual void* native_stream() const { return nullptr; }
  virtual int device_index() const { return -1; }  // the GPU this backend uses; -1 for none
};

// "cpu", "cuda" or "auto" (cuda when built with CUDA and a GPU is present, else cpu);
// "cuda:N" picks GPU N (one process per GPU). threads: CPU worker threads (0 = all cores).
std::unique_ptr<Backend> make_backend(const std::string& device, int threads = 0);
bool cuda_available();            // built with CUDA and at least one GPU visible
int cuda_visible_device_count();  // CUDA devices this process sees; 0 without CUDA (never throws)

// Bytes rounded up to the 256-byte alignment every backend allocation has: views packed into
// one Buffer at such offsets keep it (cuBLASLt's FP8 scale pointers and cuDNN need it).
constexpr size_t round_up_256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// Owns one allocation on a backend; hands out typed views into it.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& be, size_t bytes);
  // Device memory of be's device that be did not allocate (a communicator's registered
  // memory: Communicator::collective_buffer); `free` gives it back.
  Buffer(Backend& be, void* ptr, size_t bytes, std::function<void()> free);
  ~Buffer() { release(); }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void release() noexcept;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  // A view of `shape` elements of `dtype` starting `offset_bytes` into the buffer.
  Tensor tensor(DType dtype, Shape shape, size_t offset_bytes = 0) const;

 private:
  Backend* be_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  std::function<void()> free_;  // set for memory be did not allocate
};

}  // namespace tl
