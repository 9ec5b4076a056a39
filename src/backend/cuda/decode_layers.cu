// decode_layers: every layer of a one-row decode step in one persistent launch.
//
// Why: a batch-1 step only streams the weights (2 GB at 1.1B), yet run as five kernels a
// layer (decode_linear x4 + attention_decode) HBM idles at every kernel boundary (the tail of
// one kernel, the first loads of the next) and through attention's latency-bound chain: 1.09
// ms a token where reading the weights takes ~0.7 (bench/NOTES.md). Weights depend on nothing
// a step computes, so here they never wait for it:
// - one block an SM (grid = the SMs, cooperative: all resident), 9 warps. Warp 8 is the
//   producer: its lanes walk the block's share of every weight of every layer in order
//   (qkv, wo, gate_up, down; the block's rows of each, one row pass of <= 2048 elements, 4 KB,
//   a unit) and copies each unit into a ring of shared-memory slots with the bulk copy engine
//   (cp.async.bulk, completing on the slot's `full` mbarrier). It waits only for a slot to be
//   free (its `empty` mbarrier), so it runs up to the ring's depth (~190 KB an SM, ~25 MB in
//   all) ahead of the arithmetic, across layers and across the waits below;
// - warps 0-7 consume: for each of a layer's five phases they wait until every block has
//   finished the phase it reads (a counter a phase in global memory, counted by each block
//   when it is done: a grid barrier that only the consumers meet), build the phase's input in
//   shared memory, and sum their rows from the ring, releasing each slot as they go;
// - attention: blocks 0.. take one (head block, key split) item each on warps 0-3 (the same
//   device code as attention_decode: decode_attention.cuh), writing each split's (max, sum,
//   output); wo's input merges them, in split order, in every block.
// Same bits as the five ops (decode_linear.cuh, decode_attention.cuh: one copy of each op's
// arithmetic), so it changes no output: CudaDecode.LayersInOneLaunchAreBitIdentical* check
// that on the GPU, and the ops are checked against the CPU backend. Off unless
// TL_DECODE_LAYERS=1 (until it is measured on an H100). The phase counters go back to zero at
// the end of each launch; a launch that faults leaves them set, but also leaves the CUDA
// context unusable (a sticky error), so no later launch reads them.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "backend/cuda/checks.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/decode_attention.cuh"
#include "backend/cuda/decode_layers.h"
#include "backend/cuda/decode_linear.cuh"
#include "backend/cuda/vec.cuh"

namespace tl::gpu {

namespace {

constexpr int kConsumerWarps = linear::kWarps;  // decode_linear's block: its f(x) bits
constexpr int kConsumers = kConsumerWarps * kWarp;
constexpr int kAttnThreads = attn::kChunk;        // attention's block: warps 0-3
constexpr int kThreads = kConsumers + 2 * kWarp;  // + the producer and L2-ahead warps
constexpr int kUnitElems = linear::kPass;         // a unit: one pass of a row
constexpr int kSlotBytes = kUnitElems * int(sizeof(bf16));
constexpr int kMaxSlots = 64;
constexpr int kMinSlots = 8;
enum Phase { kQkv, kAttn, kWo, kGateUp, kDown, kPhases };
// xs: any phase's input, [max(C, F)] bf16, rounded up to 16 bytes (attention's smem follows).
__host__ __device__ constexpr int xs_elems(int C, int F) { return ((C > F ? C : F) + 7) / 8 * 8; }
// Attention's shared memory in floats, rounded up to 16 bytes (the merge's follows).
__host__ __device__ constexpr int attn_floats(int hpb, int D) {
  return int((attn::smem_bytes(hpb, D) + 15) / 16 * 4);
}
// build_attention's: [H * splits * 2] (max, sum), [H * splits] weights, [H] sums.
__host__ __device__ constexpr int merge_floats(int H, int splits) {
  return (H * (3 * splits + 1) + 3) / 4 * 4;
}
// Named barriers (0 is __syncthreads): the consumers; attention's four warps.
constexpr int kBarConsumers = 1, kBarAttn = 2;

struct LayerPtrs {
  const bf16 *attn_norm, *wqkv, *wo, *mlp_norm, *w_gate_up, *w_down;
  bf16 *k_cache, *v_cache;  // the row's [Tmax, K * D]
};

struct Args {
  LayerPtrs layer[kMaxDecodeLayers];
  int L, C, F, qkv_dim;  // layers, model width, MLP width, (H + 2K) * D
  int slots;             // ring slots
  int l2_ahead;          // units the L2-ahead warp prefetches beyond the copies (0: off)
  int splits;            // attention's plan (attn::plan, as attention_decode makes it)
  float eps;
  bf16* h;         // [C] res0: the embedding in, the last layer's output out
  bf16* h1;        // [C] res1
  bf16* qkv;       // [qkv_dim]
  bf16* gate_up;   // [2F]
  float* part_o;   // [H, splits, D]: each split's unnormalized output
  float* part_ml;  // [H, splits, 2]: its (max, sum)
  unsigned* done;  // [L * kPhases]: blocks done with a phase; zero between launches
  AttnArgs attn;   // qkv_cache pointers are set per layer
  // Diagnostics (TL_DECODE_LAYERS_TRACE, null otherwise): a block's [trace_stride] u64:
  // per phase (wait begins, wait ends, input built, done) in globaltimer ns, then the
  // producer's ns waiting for free slots.
  uint64_t* trace;
};
__host__ __device__ constexpr int trace_stride(int L) { return L * kPhases * 4 + 1; }

// ---- mbarriers and the bulk copy engine (sm_90) ----
__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count)
               : "memory");
#endif
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
#endif
}
// A wait that cannot end (a bug, or a block that died) stops the kernel with an error (a
// trap: the launch fails, the step throws) instead of hanging the process: no wait of a step
// that takes a millisecond lasts seconds.
constexpr uint64_t kStuckNs = 5000000000ull;
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// A spinning wait's watch: the clock is read only every 256 spins (most waits end at once,
// and a clock read in every wait was one more latency on the consumers' per-unit chain).
struct StuckWatch {
  uint64_t since = 0;
  unsigned spins = 0;
  __device__ __forceinline__ void check() {
    if (++spins % 256 != 0) return;
    const uint64_t t = global_ns();
    if (since == 0)
      since = t;
    else if (t - since > kStuckNs)
      __trap();
  }
};

// Returns once the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  StuckWatch watch;
  unsigned ok = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        " selp.u32 %0, 1, 0, p;\n}"
        : "=r"(ok)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
    if (!ok) watch.check();
  } while (!ok);
#endif
}
// bytes from global src into shared dst, counted on bar (which expects them).
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, unsigned bytes,
                                          uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
          "r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
#endif
}

__device__ __forceinline__ void bar_named(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
// slot_unit's store and load, ordered (release / acquire, CTA scope) with what the producer did
// before and the consumer does after: the parity wait follows the load.
__device__ __forceinline__ void store_release_cta(unsigned* p, unsigned v) {
  asm volatile("st.release.cta.shared.u32 [%0], %1;" ::"r"(smem_addr(p)), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned load_acquire_cta(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.cta.shared.u32 %0, [%1];" : "=r"(v) : "r"(smem_addr(p)) : "memory");
  return v;
}
// A release add at GPU scope: no result to wait for, and the fence is the release's.
__device__ __forceinline__ void red_release_add(unsigned* p, unsigned v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Thread 0 notes event k of phase counter i (TL_DECODE_LAYERS_TRACE only).
__device__ __forceinline__ void stamp(const Args& a, int i, int k) {
  if (a.trace && threadIdx.x == 0)
    a.trace[size_t(blockIdx.x) * trace_stride(a.L) + size_t(i) * 4 + k] = global_ns();
}

// ---- the work ----

// The four weights of a layer in streaming order, with their shapes.
struct Matrix {
  const bf16* w;
  int O, I;
};
__device__ __forceinline__ Matrix matrix(const Args& a, int l, int m) {
  const LayerPtrs& p = a.layer[l];
  switch (m) {
    case 0: return {p.wqkv, a.qkv_dim, a.C};
    case 1: return {p.wo, a.C, a.C};
    case 2: return {p.w_gate_up, 2 * a.F, a.C};
    default: return {p.w_down, a.C, a.F};
  }
}
// This block's rows of an O-row matrix: [r0, r1), contiguous.
__device__ __forceinline__ void block_rows(int O, int& r0, int& r1) {
  r0 = int(int64_t(O) * blockIdx.x / gridDim.x);
  r1 = int(int64_t(O) * (blockIdx.x + 1) / gridDim.x);
}
__device__ __forceinline__ int passes(int I) { return (I + kUnitElems - 1) / kUnitElems; }

// Warp 8: every unit of the block, in the consumers' order, into the ring. Its lanes take
// up to 32 consecutive units at once, each waiting for its own slot: a lone thread spends
// ~100-200 cycles a unit, about what a 4 KB unit may take at an SM's share of 3 TB/s.
__device__ void produce(const Args& a, unsigned char* ring, uint64_t* full, uint64_t* empty,
                        unsigned* slot_unit, volatile unsigned* issued) {
  const int lane = threadIdx.x % kWarp;
  const int width = min(kWarp, a.slots);  // a group's units have slots of their own
  unsigned u0 = 0;                        // the matrix's first unit
  for (int l = 0; l < a.L; ++l)
    for (int m = 0; m < 4; ++m) {
      const Matrix mx = matrix(a, l, m);
      int r0, r1;
      block_rows(mx.O, r0, r1);
      const int np = passes(mx.I), n = (r1 - r0) * np;
      // Groups in lockstep: a unit's slot last held a unit of an earlier group, already
      // issued, so the parity wait below is for that very release (a wait can only tell the
      // phase in progress from the one before).
      for (int k0 = 0; k0 < n; k0 += width) {
        const int k = k0 + lane;
        if (lane < width && k < n) {
          const unsigned u = u0 + unsigned(k);
          const unsigned slot = u % unsigned(a.slots), round = u / unsigned(a.slots);
          const uint64_t t0 = a.trace ? global_ns() : 0;
          if (round > 0) mbar_wait(&empty[slot], (round - 1) & 1);
          if (a.trace && lane == 0)  // the group waits for its slowest slot: lane 0's is typical
            a.trace[size_t(blockIdx.x) * trace_stride(a.L) + size_t(a.L) * kPhases * 4] +=
                global_ns() - t0;
          store_release_cta(slot_unit + slot, u);  // before the copy: see consume_rows
          const int r = r0 + k / np, e0 = (k % np) * kUnitElems;
          const unsigned bytes = unsigned(min(kUnitElems, mx.I - e0)) * unsigned(sizeof(bf16));
          bulk_copy(ring + size_t(slot) * kSlotBytes, mx.w + int64_t(r) * mx.I + e0, bytes,
                    &full[slot]);
        }
        __syncwarp();
        if (lane == 0) *issued = u0 + unsigned(min(k0 + width, n));  // for prefetch_ahead
      }
      u0 += unsigned(n);
    }
}

// Where the block's unit u (in produce's order) lies: the block's rows of every matrix are
// the same at every layer.
struct UnitMap {
  int r0[4], np[4], n[4], per_layer = 0;
  __device__ explicit UnitMap(const Args& a) {
    for (int m = 0; m < 4; ++m) {
      const Matrix mx = matrix(a, 0, m);
      int r1;
      block_rows(mx.O, r0[m], r1);
      np[m] = passes(mx.I);
      n[m] = (r1 - r0[m]) * np[m];
      per_layer += n[m];
    }
  }
  __device__ const bf16* src(const Args& a, unsigned u, unsigned& bytes) const {
    int k = int(u % unsigned(per_layer)), m = 0;
    while (k >= n[m]) k -= n[m++];
    const Matrix mx = matrix(a, int(u / unsigned(per_layer)), m);
    const int e0 = (k % np[m]) * kUnitElems;
    bytes = unsigned(min(kUnitElems, mx.I - e0)) * unsigned(sizeof(bf16));
    return mx.w + int64_t(r0[m] + k / np[m]) * mx.I + e0;
  }
};

// Warp 9 (TL_DECODE_LAYERS_L2_AHEAD=N units): asks L2 for the units up to N beyond those the
// producer has issued, so that while the ring is full (the consumers wait at a barrier or in
// attention) HBM still fetches what comes next, and the ring's copies then come from L2.
__device__ void prefetch_ahead(const Args& a, const volatile unsigned* issued) {
  const UnitMap map(a);
  const unsigned total = unsigned(map.per_layer) * unsigned(a.L);
  const int lane = threadIdx.x % kWarp;
  for (unsigned u0 = 0; u0 < total; u0 += kWarp) {
    // a.l2_ahead >= kWarp, and *issued reaches total: the wait ends.
    while (u0 + kWarp > *issued + unsigned(a.l2_ahead)) __nanosleep(100);
    const unsigned u = u0 + unsigned(lane);
    if (u < total) {
      unsigned bytes;
      const bf16* src = map.src(a, u, bytes);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(bytes) : "memory");
#endif
    }
  }
}

// The consumers' side of a grid barrier: every block is done with counter `i`'s phase.
__device__ __forceinline__ void wait_phase(const Args& a, int i) {
  stamp(a, i + 1, 0);
  if (threadIdx.x == 0)
    for (StuckWatch watch; load_acquire(a.done + i) < gridDim.x;) watch.check();
  bar_named(kBarConsumers, kConsumers);
  stamp(a, i + 1, 1);
}
// This block is done with phase i (its writes made visible first).
__device__ __forceinline__ void finish_phase(const Args& a, int i) {
  bar_named(kBarConsumers, kConsumers);
  stamp(a, i, 3);
  if (threadIdx.x == 0) {
    if (i < a.L * kPhases - 1) {
      red_release_add(a.done + i, 1u);  // the block's writes (ordered by the barrier) first
    } else {
      __threadfence();
      // The last block to finish the last phase: every block is past every wait, so the
      // counters go back to zero for the next launch.
      if (atomicAdd(a.done + i, 1u) + 1 == gridDim.x)
        for (int k = 0; k < a.L * kPhases; ++k) a.done[k] = 0;
    }
  }
}

// The consumers' share of matrix m of layer l: their rows of out = residual + xs @ W^T, from
// the ring (units numbered from *u, in the producer's order). Warp w takes the block's rows
// w, w + 8, ..., summing each in decode_linear's order (linear::sum_chunk, write_row).
__device__ void consume_rows(const Args& a, int l, int m, const bf16* xs, bf16* out,
                             const bf16* residual, const unsigned char* ring, uint64_t* full,
                             uint64_t* empty, const unsigned* slot_unit, unsigned& u) {
  const Matrix mx = matrix(a, l, m);
  int r0, r1;
  block_rows(mx.O, r0, r1);
  const int np = passes(mx.I);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  linear::Args la{};
  la.out = out;
  la.residual = residual;
  la.O = mx.O;
  la.I = mx.I;
  for (int j = warp; j < r1 - r0; j += kConsumerWarps) {
    float acc[1] = {0.0f};
    // The residual's value is loaded now, off the path that ends the phase.
    const float res = residual && lane == 0 ? to_f32(__ldcg(residual + r0 + j)) : 0.0f;
    for (int p = 0; p < np; ++p) {
      const unsigned v = u + unsigned(j * np + p);
      const unsigned slot = v % unsigned(a.slots);
      // A warp may run rounds ahead of the slot (the other warps hold its earlier units), and
      // a parity wait cannot tell round r from r - 2: wait until the producer has issued
      // unit v into the slot, then for its bytes.
      for (StuckWatch watch; load_acquire_cta(slot_unit + slot) != v;) watch.check();
      mbar_wait(&full[slot], (v / unsigned(a.slots)) & 1);
      const bf16* s = reinterpret_cast<const bf16*>(ring + size_t(slot) * kSlotBytes);
      linear::sum_chunk<1>(
          acc,
          [&](int q) {
            return load_vec<linear::kPiece>(s + lane * linear::kPiece + q * linear::kStep);
          },
          xs, p * kUnitElems, mx.I, lane);
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[slot]);
    }
    linear::write_row_loaded(acc[0], la, r0 + j, res, lane);
  }
  u += unsigned((r1 - r0) * np);
}

// f(x) of a linear phase into xs (all consumers): RMSNorm of x with norm_w, or SwiGLU of x.
template <Backend::LinearIn In>
__device__ void build(const Args& a, bf16* xs, const bf16* x, const bf16* norm_w, int I,
                      float* red) {
  linear::Args la{};
  la.x = x;
  la.norm_w = norm_w;
  la.eps = a.eps;
  la.I = I;
  const linear::NormPieces nw = linear::load_norm<In>(la);
  linear::build_input<1, In>(xs, la, nw, red, [] { bar_named(kBarConsumers, kConsumers); });
}

// wo's input: each head's splits merged in split order with merge_partials' arithmetic (so
// the same bits as attention_decode's merge), but with every load of the merge in flight at
// once: one round trip for the splits' (max, sum) into shared memory, one for their outputs
// (merge_partials a value at a time was a chain of ~16 round trips, 14 us a layer).
// merge_s: [H * used * 2] (max, sum), [H * used] weights, [H] sums.
__device__ void build_attention(const Args& a, bf16* xs, float* merge_s, int used) {
  const int D = a.attn.D, S = a.splits, H = a.attn.H;
  float *ml = merge_s, *wgt = ml + H * used * 2, *lsum = wgt + H * used;
  for (int k = threadIdx.x; k < H * used * 2; k += kConsumers) {
    const int h = k / (used * 2), c = k % (used * 2);
    ml[k] = __ldcg(a.part_ml + int64_t(h) * S * 2 + c);
  }
  bar_named(kBarConsumers, kConsumers);
  for (int h = threadIdx.x; h < H; h += kConsumers) {
    const float* mh = ml + h * used * 2;
    float m = -INFINITY;
    for (int c = 0; c < used; ++c) m = fmaxf(m, mh[2 * c]);
    float l = 0.0f;
    for (int c = 0; c < used; ++c) {
      const float w = expf(mh[2 * c] - m);
      l += mh[2 * c + 1] * w;
      wgt[h * used + c] = w;
    }
    lsum[h] = l;
  }
  bar_named(kBarConsumers, kConsumers);
  constexpr int kPer = 8;  // values a thread merges at once (C = 2048: all of them)
  for (int base = threadIdx.x; base < a.C; base += kPer * kConsumers) {
    float o[kPer] = {};
    for (int c = 0; c < used; ++c)
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int idx = base + k * kConsumers, h = idx / D;
        if (idx < a.C)
          o[k] += __ldcg(a.part_o + (int64_t(h) * S + c) * D + idx % D) * wgt[h * used + c];
      }
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int idx = base + k * kConsumers;
      if (idx < a.C) xs[idx] = from_f32<bf16>(o[k] / lsum[idx / D]);
    }
  }
  bar_named(kBarConsumers, kConsumers);
}

// Attention items (head block, split) of this block, on warps 0-3; partials to part_o/ml.
template <int HPB>
__device__ void attend(const Args& a, int l, float* attn_smem) {
  if (threadIdx.x >= kAttnThreads) return;
  __shared__ AttnShared<HPB> sh;
  AttnArgs aa = a.attn;
  aa.qkv = a.qkv;
  aa.k_cache = a.layer[l].k_cache;
  aa.v_cache = a.layer[l].v_cache;
  const int group = aa.H / aa.K, n_hc = (group + HPB - 1) / HPB;
  const int items = aa.K * n_hc * a.splits;
  for (int it = blockIdx.x; it < items; it += gridDim.x) {
    const int hb = it / a.splits, split = it % a.splits;
    const SplitSpan span = split_span(aa, 0, split);
    if (span.empty()) continue;  // the same for all four warps
    int h0 = 0, nh = 0;
    const float* o_s = attend_split<8, true, HPB>(
        aa, 0, hb, span, attn_smem, sh, h0, nh, [] {}, [] { bar_named(kBarAttn, kAttnThreads); });
    store_partials(a.part_o, a.part_ml, o_s, sh.m, sh.l, 0, aa.H, h0, nh, aa.D, a.splits, split);
    bar_named(kBarAttn, kAttnThreads);  // o_s and sh are reused by the next item
  }
}

// Dynamic shared memory: the ring [slots][4 KB], xs [max(C, F)] bf16, attention's
// attn::smem_bytes(HPB, D).
template <int HPB>
__global__ void __launch_bounds__(kThreads, 1)
    decode_layers_kernel(const __grid_constant__ Args a) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ __align__(8) uint64_t full[kMaxSlots], empty[kMaxSlots];
  __shared__ unsigned slot_unit[kMaxSlots];  // the unit last issued into each slot
  __shared__ unsigned issued;                // units the producer has issued
  __shared__ float red[kWarp];
  unsigned char* ring = smem;
  bf16* xs = reinterpret_cast<bf16*>(smem + size_t(a.slots) * kSlotBytes);
  float* attn_smem = reinterpret_cast<float*>(xs + xs_elems(a.C, a.F));
  float* merge_s = attn_smem + attn_floats(HPB, a.attn.D);
  if (threadIdx.x == 0) {
    for (int s = 0; s < a.slots; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 1);
      slot_unit[s] = ~0u;
    }
    issued = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
  }
  __syncthreads();
  if (threadIdx.x >= kConsumers + kWarp) {
    if (a.l2_ahead > 0) prefetch_ahead(a, &issued);
    return;
  }
  if (threadIdx.x >= kConsumers) {
    produce(a, ring, full, empty, slot_unit, &issued);
    return;
  }

  // Keys: the row's position p reads [0, min(p + 1, kv_len)) in `used` splits.
  const int used = splits_with_keys(a.attn, split_span(a.attn, 0, 0));
  unsigned u = 0;  // units consumed (by the block) so far
  for (int l = 0; l < a.L; ++l) {
    const LayerPtrs& p = a.layer[l];
    const int i = l * kPhases;
    // qkv = wqkv(norm(h))
    if (l > 0) {
      wait_phase(a, i - kPhases + kDown);
    } else {
      stamp(a, i, 0);
      stamp(a, i, 1);
    }
    build<Backend::LinearIn::RmsNorm>(a, xs, a.h, p.attn_norm, a.C, red);
    stamp(a, i + kQkv, 2);
    consume_rows(a, l, 0, xs, a.qkv, nullptr, ring, full, empty, slot_unit, u);
    finish_phase(a, i + kQkv);
    // attention over the cache (its partials)
    wait_phase(a, i + kQkv);
    stamp(a, i + kAttn, 2);
    attend<HPB>(a, l, attn_smem);
    finish_phase(a, i + kAttn);
    // h1 = h + wo(attention)
    wait_phase(a, i + kAttn);
    build_attention(a, xs, merge_s, used);
    stamp(a, i + kWo, 2);
    consume_rows(a, l, 1, xs, a.h1, a.h, ring, full, empty, slot_unit, u);
    finish_phase(a, i + kWo);
    // gate_up = w_gate_up(norm(h1))
    wait_phase(a, i + kWo);
    build<Backend::LinearIn::RmsNorm>(a, xs, a.h1, p.mlp_norm, a.C, red);
    stamp(a, i + kGateUp, 2);
    consume_rows(a, l, 2, xs, a.gate_up, nullptr, ring, full, empty, slot_unit, u);
    finish_phase(a, i + kGateUp);
    // h = h1 + w_down(swiglu(gate_up))
    wait_phase(a, i + kGateUp);
    build<Backend::LinearIn::SwiGlu>(a, xs, a.gate_up, nullptr, a.F, red);
    stamp(a, i + kDown, 2);
    consume_rows(a, l, 3, xs, a.h, a.h1, ring, full, empty, slot_unit, u);
    finish_phase(a, i + kDown);
  }
}

// Dynamic shared memory besides the ring: xs, attention's, the merge's.
size_t fixed_smem(int C, int F, int hpb, int D, int H, int splits) {
  return size_t(xs_elems(C, F)) * sizeof(bf16) +
         (size_t(attn_floats(hpb, D)) + size_t(merge_floats(H, splits))) * sizeof(float);
}

// TL_DECODE_LAYERS_TRACE=N: after 32 launches, the next N are timed phase by phase (each then
// waits for its stream, so these are the kernel's own figures) and a table of where a token's
// time goes is printed to stderr. Launches captured into graphs are not traced
// (TL_DECODE_GRAPHS=0 runs the steps op by op).
class Trace {
 public:
  static Trace& get() {
    static Trace t;
    return t;
  }
  // The buffer for this launch, or null when it is not traced.
  uint64_t* begin(int L, int grid, cudaStream_t stream) {
    if (want_ <= 0 || traced_ >= want_) return nullptr;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    TL_CUDA_CHECK(cudaStreamIsCapturing(stream, &cs));
    if (cs != cudaStreamCaptureStatusNone || ++seen_ <= 32) return nullptr;
    const size_t n = size_t(grid) * size_t(trace_stride(L));
    if (host_.size() != n) {
      if (dev_) TL_CUDA_CHECK(cudaFree(dev_));
      TL_CUDA_CHECK(cudaMalloc(&dev_, n * sizeof(uint64_t)));
      host_.assign(n, 0);
    }
    TL_CUDA_CHECK(cudaMemsetAsync(dev_, 0, n * sizeof(uint64_t), stream));
    return dev_;
  }
  void end(int L, int grid, cudaStream_t stream) {
    TL_CUDA_CHECK(cudaStreamSynchronize(stream));
    TL_CUDA_CHECK(
        cudaMemcpy(host_.data(), dev_, host_.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost));
    const int S = trace_stride(L);
    auto at = [&](int b, int i, int k) { return double(host_[size_t(b) * S + size_t(i) * 4 + k]); };
    for (int i = 0; i < L * kPhases; ++i) {
      double wait = 0, build = 0, work = 0, work_max = 0, released = 0, last_done = 0;
      for (int b = 0; b < grid; ++b) {
        wait += at(b, i, 1) - at(b, i, 0);
        build += at(b, i, 2) - at(b, i, 1);
        work += at(b, i, 3) - at(b, i, 2);
        work_max = std::max(work_max, at(b, i, 3) - at(b, i, 2));
        released += at(b, i, 1);
        if (i > 0) last_done = std::max(last_done, at(b, i - 1, 3));
      }
      const int ph = i % kPhases;
      sum_[ph][0] += wait / grid;
      sum_[ph][1] += build / grid;
      sum_[ph][2] += work / grid;
      sum_[ph][3] += work_max;
      if (i > 0) sum_[ph][4] += released / grid - last_done;
    }
    double first = at(0, 0, 0), last = 0, producer = 0;
    for (int b = 0; b < grid; ++b) {
      first = std::min(first, at(b, 0, 0));
      last = std::max(last, at(b, L * kPhases - 1, 3));
      producer += double(host_[size_t(b) * S + size_t(S - 1)]) / grid;
    }
    kernel_ += last - first;
    producer_ += producer;
    if (++traced_ < want_) return;
    const double n = traced_ * 1e3;  // ns summed over launches -> us a launch
    std::fprintf(stderr,
                 "decode_layers trace: %d launches, %d layers, %d blocks: %.1f us a launch; "
                 "the producer waited %.1f us for free slots\n"
                 "  us a launch, all layers: phase, wait at the grid barrier, build the input, "
                 "its rows (mean block), (slowest block), last block done -> released\n",
                 traced_, L, grid, kernel_ / n, producer_ / n);
    const char* names[kPhases] = {"qkv", "attention", "wo", "gate_up", "down"};
    for (int ph = 0; ph < kPhases; ++ph)
      std::fprintf(stderr, "  %-10s %8.1f %8.1f %8.1f %8.1f %8.1f\n", names[ph], sum_[ph][0] / n,
                   sum_[ph][1] / n, sum_[ph][2] / n, sum_[ph][3] / n, sum_[ph][4] / n);
  }

 private:
  Trace() {
    if (const char* e = std::getenv("TL_DECODE_LAYERS_TRACE")) want_ = std::atoi(e);
  }
  int want_ = 0, seen_ = 0, traced_ = 0;
  uint64_t* dev_ = nullptr;
  std::vector<uint64_t> host_;
  double sum_[kPhases][5] = {}, kernel_ = 0, producer_ = 0;
};

bool enabled() {
  const char* e = std::getenv("TL_DECODE_LAYERS");
  return e && std::strcmp(e, "1") == 0;
}

}  // namespace

bool decode_layers(const Backend::DecodeLayers& d, const CudaContext& ctx, Scratch& parts,
                   Scratch& counters, cudaStream_t stream) {
  if (!enabled() || d.layers.empty() || d.layers.size() > size_t(kMaxDecodeLayers)) return false;
  if (ctx.cc_major < 9) return false;  // the bulk copy engine and mbarrier transactions
  const int H = d.n_head, K = d.n_kv_head;
  const int64_t C = d.hidden.numel(), qkv_dim = d.qkv.numel(), F = d.gate_up.numel() / 2;
  if (H <= 0 || K <= 0 || H % K != 0 || qkv_dim % (H + 2 * K) != 0) return false;
  const int D = int(qkv_dim / (H + 2 * K));
  // Shapes the kernel's pieces take: decode_linear's 16-byte rows of whole pieces, the
  // attention's 16-byte path, whole bulk copies (16-byte multiples, 16-byte aligned).
  if (D % 8 != 0 || int64_t(H) * D != C || C % linear::kPiece != 0 || F % linear::kPiece != 0 ||
      C > 1 << 16 || F > 1 << 16)
    return false;
  const attn::Plan plan = attn::plan(1, H, K, d.kv_len, ctx.sm_count);
  if (plan.hpb != 1 && plan.hpb != 2 && plan.hpb != attn::kHeadsPerBlock) return false;
  for (const Tensor* t : {&d.hidden, &d.hidden1, &d.qkv, &d.gate_up})
    if (t->dtype != DType::BF16 || !aligned16(t->data)) return false;
  for (const auto& l : d.layers)
    for (const Tensor* t : {&l.attn_norm, &l.wqkv, &l.wo, &l.mlp_norm, &l.w_gate_up, &l.w_down,
                            &l.k_cache, &l.v_cache})
      if (t->dtype != DType::BF16 || !aligned16(t->data)) return false;

  const int64_t Tmax = d.layers[0].k_cache.dim(1);
  for (const auto& l : d.layers)
    TL_CHECK(l.k_cache.ndim() == 3 && l.k_cache.dim(0) == 1 && l.k_cache.dim(1) == Tmax &&
                 l.k_cache.dim(2) == int64_t(K) * D && l.v_cache.shape == l.k_cache.shape,
             "decode_layers: every layer's k_cache and v_cache must be [1, ", Tmax, ", ",
             int64_t(K) * D, "], got ", l.k_cache.str(), " and ", l.v_cache.str());
  TL_CHECK(d.kv_len >= 1 && d.kv_len <= Tmax && d.kv_len <= d.cos.dim(0), "decode_layers: kv_len ",
           d.kv_len, " must be in [1, min(Tmax = ", Tmax, ", rope rows = ", d.cos.dim(0), ")]");
  TL_CHECK(d.cos.dtype == DType::F32 && d.sin.dtype == DType::F32 && d.cos.ndim() == 2 &&
               d.cos.dim(1) == D / 2 && d.sin.shape == d.cos.shape && d.pos.dtype == DType::I32 &&
               d.pos.numel() == 1,
           "decode_layers: cos, sin must be f32 [rows, ", D / 2, "] and pos i32 [1], got ",
           d.cos.str(), ", ", d.sin.str(), ", ", d.pos.str());

  auto kernel = plan.hpb == 1   ? decode_layers_kernel<1>
                : plan.hpb == 2 ? decode_layers_kernel<2>
                                : decode_layers_kernel<attn::kHeadsPerBlock>;
  // What the device and the kernel allow, asked once a kernel (a step run op by op would ask
  // every token): its sm_90 code (a build for older targets compiles the barriers and copies
  // out), its static shared memory, the opt-in limit.
  struct Fit {
    bool ok = false;
    size_t static_smem = 0, optin = 0;
  };
  thread_local std::map<const void*, Fit> fits;
  auto [it, fresh] = fits.try_emplace(reinterpret_cast<const void*>(kernel));
  if (fresh) {
    cudaFuncAttributes fa{};
    TL_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
    int optin = 0;
    TL_CUDA_CHECK(
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx.device));
    it->second = {fa.binaryVersion >= 90 && fa.ptxVersion >= 90, fa.sharedSizeBytes, size_t(optin)};
  }
  const Fit& fit = it->second;
  // The block's shared memory besides the ring: dynamic (xs, attention's) and static.
  const size_t fixed = fixed_smem(int(C), int(F), plan.hpb, D, H, plan.splits);
  const size_t others = fixed + fit.static_smem;
  if (!fit.ok || fit.optin < others + size_t(kMinSlots) * kSlotBytes) return false;
  int slots = int(std::min<size_t>(kMaxSlots, (fit.optin - others) / kSlotBytes));
  // TL_DECODE_LAYERS_SLOTS=N caps the ring (how far the weights run ahead), for measurements.
  if (const char* e = std::getenv("TL_DECODE_LAYERS_SLOTS"))
    if (std::atoi(e) >= kMinSlots) slots = std::min(slots, std::atoi(e));
  const size_t smem = fixed + size_t(slots) * kSlotBytes;  // dynamic

  Args a{};
  a.L = int(d.layers.size());
  for (int l = 0; l < a.L; ++l) {
    const auto& s = d.layers[size_t(l)];
    a.layer[l] = {s.attn_norm.ptr<bf16>(), s.wqkv.ptr<bf16>(),      s.wo.ptr<bf16>(),
                  s.mlp_norm.ptr<bf16>(),  s.w_gate_up.ptr<bf16>(), s.w_down.ptr<bf16>(),
                  s.k_cache.ptr<bf16>(),   s.v_cache.ptr<bf16>()};
  }
  a.C = int(C);
  a.F = int(F);
  a.qkv_dim = int(qkv_dim);
  a.slots = slots;
  // TL_DECODE_LAYERS_L2_AHEAD=N (units of 4 KB an SM, at least a warp's 32): the L2-ahead warp.
  if (const char* e = std::getenv("TL_DECODE_LAYERS_L2_AHEAD"))
    a.l2_ahead = std::atoi(e) > 0 ? std::max(std::atoi(e), kWarp) : 0;
  a.splits = plan.splits;
  a.eps = d.eps;
  a.h = d.hidden.ptr<bf16>();
  a.h1 = d.hidden1.ptr<bf16>();
  a.qkv = d.qkv.ptr<bf16>();
  a.gate_up = d.gate_up.ptr<bf16>();
  const int64_t slots_attn = int64_t(H) * plan.splits;
  a.part_o = parts.get_as<float>(size_t(slots_attn) * size_t(D + 2), stream);
  a.part_ml = a.part_o + slots_attn * D;
  a.done =
      static_cast<unsigned*>(counters.get_zeroed(size_t(a.L) * kPhases * sizeof(unsigned), stream));
  a.attn = AttnArgs{nullptr,
                    nullptr,
                    nullptr,
                    d.cos.ptr<float>(),
                    d.sin.ptr<float>(),
                    d.pos.ptr<int32_t>(),
                    1,
                    H,
                    K,
                    D,
                    int(Tmax),
                    d.kv_len,
                    plan.chunks_per_split,
                    1.0f / sqrtf(float(D))};

  TL_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;  // every block resident: they wait on each other
  attr[0].val.cooperative = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(ctx.sm_count));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  a.trace = Trace::get().begin(a.L, ctx.sm_count, stream);
  TL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, a));
  if (a.trace) Trace::get().end(a.L, ctx.sm_count, stream);
  return true;
}

}  // namespace tl::gpu
