// Generation-time forward with a KV cache, over the weights of a LlamaModel (borrowed: the
// model must outlive this object and keep its weights while a cache is in use).
//
// Rows of a batch are independent sequences with their own lengths: row b's tokens sit at
// positions 0, 1, ... of its own cache row, so a prompt is computed exactly as if it were
// alone (its own RoPE positions, no padding in its attention). A call feeds Tn tokens per row
// at positions pos[b] .. pos[b] + Tn - 1; rows with fewer real tokens pad the call with any
// valid id, and those padding positions are simply overwritten later.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "model/llama.h"

namespace tl {

class LlamaInference {
 public:
  // A cache for `batch` rows of up to `max_len` positions (<= the model's context).
  LlamaInference(LlamaModel& model, int batch, int max_len);
  ~LlamaInference();
  LlamaInference(const LlamaInference&) = delete;
  LlamaInference& operator=(const LlamaInference&) = delete;

  int batch() const { return B_; }
  int max_len() const { return max_len_; }
  size_t cache_bytes() const;

  // tokens[B,Tn] (host i32); pos[B] (host): each pos[b] + Tn <= max_len(), and positions
  // below pos[b] filled by earlier calls. The new tokens attend over positions [0, p] of
  // their row. logits (host f32): with pick[B] given, [B,V] for token pick[b] of each row;
  // with pick null, [B,Tn,V] for every token; with logits null the head is skipped (see
  // hidden()). rows > 0 runs only cache rows [row0, row0 + rows) (B = rows above; the arrays
  // hold those rows alone); 0 means every row from row0. Other rows are untouched, so a server
  // can prefill some rows while others sit between decode steps.
  void forward(const int32_t* tokens, int Tn, const int32_t* pos, const int32_t* pick,
               float* logits, int rows = 0, int row0 = 0);
  // forward() for greedy decoding: ids (host i32) gets the argmax of the logits forward()
  // would return (the first index of the maximum), [B] with pick, [B,Tn] without; only the
  // ids leave the device.
  void forward_argmax(const int32_t* tokens, int Tn, const int32_t* pos, const int32_t* pick,
                      int32_t* ids, int rows = 0, int row0 = 0);
  // Greedy decode steps that overlap the host with the device (a server's loop): the step
  // forward_argmax(tokens, 1, pos, nullptr, ids, rows, row0) would run is enqueued and
  // submit_argmax returns without waiting; collect_argmax waits for the oldest submitted step
  // and copies its ids [rows] out (null drops them). At most two steps are in flight.
  // tokens null: each row's token is that row's id from the last submitted step, taken on
  // the device (that step must have had the same rows, with no other call since), so step
  // t+1 can be enqueued before step t's ids reach the host. forward, forward_argmax,
  // copy_prefix and move_row throw while a submitted step is not collected. Where the batch
  // shape differs from the unpipelined loop's (a row that ended still in the step ahead), the
  // GPU's other rows may round differently, as with any change of batch.
  // Pinned host memory where the backend has it; without, still correct, not overlapped.
  void submit_argmax(const int32_t* tokens, const int32_t* pos, int rows, int row0 = 0);
  void collect_argmax(int32_t* ids);
  int steps_in_flight() const;
  // Whether callers should submit a step ahead at all (the loops in serve's scheduler and
  // generate_batch): off by TL_DECODE_RUN_AHEAD=0, for A/B measurements.
  bool run_ahead() const { return run_ahead_; }
  // Decode steps (Tn == 1 with logits or ids wanted) replay a recorded graph of the whole
  // step where the backend can record (CUDA graphs): the ~220 launches of a token become one.
  // A (rows, row0, key bucket, output) is run unrecorded when first seen and recorded when
  // seen again; results are bit-identical either way. On unless turned off here or by the
  // environment (TL_DECODE_GRAPHS=0).
  void set_graphs(bool on) { graphs_on_ = on; }
  int64_t graph_replays() const { return graph_stats_.replays; }
  struct GraphStats {
    int64_t replays = 0;        // decode steps that replayed a recorded graph
    int64_t recordings = 0;     // graphs recorded
    int64_t invalidations = 0;  // times every recording was dropped (memory freed or moved)
  };
  const GraphStats& graph_stats() const { return graph_stats_; }
  // Calls of one token a row with at most this many rows run each layer as five ops: the
  // four linears as Backend::decode_linear (norm, SwiGLU and residual add fused into the
  // weight stream) around attention_decode; the head as decode_linear too. More rows run the
  // separate ops, where cuBLASLt's GEMMs do better (measured on an H100: -10% at 2 rows).
  // Default from TL_DECODE_FUSED_ROWS (0 turns it off), else 1.
  void set_fused_rows(int rows) { fused_rows_ = rows; }
  // Decode steps can ask the backend to prefetch (Backend::prefetch) up to this many bytes
  // of each layer's weights after attention (wo, then gate_up's first rows) before attention
  // runs, so they stream from memory during its latency-bound chain
  // (TL_DECODE_PREFETCH_MB); the fused layers' linears can also ask for the first bytes of
  // the next linear's weights beside their own stream (TL_DECODE_PREFETCH_NEXT_MB). Both are
  // off by default: measured on an H100 (2026-12-06, bench/RESULTS.md) each lost at batch 1
  // (770 tokens/s without, 687 with 32 MiB during attention, 734 with 8 MiB next) and at 32.
  void set_prefetch_bytes(size_t attention, size_t next) {
    prefetch_bytes_ = attention;
    prefetch_next_bytes_ = next;
  }
  // act [rows * Tn, C] on the device: the last forward's final-norm output (the head's
  // input), row b's token t at b * Tn + t. Valid until the next forward.
  Tensor hidden() const;
  // Prefix sharing: cache rows dst0 + i (i < n) take positions [0, len) of rows src[i]
  // (host i32, each < dst0, so sources and destinations never overlap), in every layer.
  // Positions >= len of the destination rows are left unspecified: a later forward
  // overwrites a position before any token reads it.
  void copy_prefix(int dst0, int n, const int32_t* src, int len);
  // Copies positions [0, len) of row src's cache into row dst (every layer; any two rows), so
  // that dst continues src's sequence: a batch is compacted when a sequence leaves.
  void move_row(int src, int dst, int len);

 private:
  struct State;
  struct Graphs;
  struct Pipe;
  enum class Head { Logits, Argmax };
  struct Call {
    int B;       // rows of the call
    int kv_len;  // keys the longest row reads after this call
  };
  void ensure_acts(int rows, int Tn);
  Tensor w(ParamKind k, int layer = -1) const;  // compute-dtype weight view
  // Checks a call's arguments, shapes the activations and uploads tokens and positions.
  Call start(const int32_t* tokens, int Tn, const int32_t* pos, const int32_t* pick, int rows,
             int row0);
  // start's checks alone (tokens may be null: taken on the device).
  Call check_call(const int32_t* tokens, int Tn, const int32_t* pos, const int32_t* pick, int rows,
                  int row0) const;
  void require_idle(const char* what);  // throws while submitted steps are in flight
  // The layers on the device (no host work): leaves xn = the final norm of the call's tokens.
  void layers(int B, int Tn, int kv_len, int row0);
  void layers_fused(int B, int kv_len, int row0);  // Tn == 1, B <= fused_rows_
  // See set_prefetch_bytes: what attention's prefetch asks for, and the rows of gate_up it
  // covers.
  int64_t prefetch_after_attention(int layer);
  // Rows [from, from + prefetch_next_bytes_ / row bytes) of weight t, clipped; empty if none.
  Tensor next_rows(const Tensor& t, int64_t from) const;
  int run_layers(const int32_t* tokens, int Tn, const int32_t* pos, const int32_t* pick, int rows,
                 int row0);  // start + layers; returns B
  // One token per row, head included, recorded and replayed when the backend can; out gets
  // [B,V] f32 logits or [B] i32 ids.
  void decode_step(const int32_t* tokens, const int32_t* pos, const int32_t* pick, int rows,
                   int row0, Head head, void* out);
  // A decode step's device work after start (layers and head, the result left in
  // head_result(B, head); greedy ids also in host_ids when given, Backend::argmax_rows):
  // replayed from a recording where there is one. Returns whether it was.
  bool run_step(int B, int row0, int kv_len, Head head, int32_t* host_ids = nullptr);
  void set_known_positions(const int32_t* pos, int B);
  bool positions_on_device(const int32_t* pos, int B) const;
  Tensor picked(int B, int Tn, const int32_t* pick);  // act [B,C]: pick[b] of row b
  // The head over x[rows,C] in chunks of logits_act's rows: use(z [n,V] act, first row).
  void head_chunks(Tensor x, int64_t rows, const std::function<void(Tensor z, int64_t r0)>& use);
  // The head's output on the device for the first n rows of a chunk: i32 ids [n] (greedy) or
  // f32 logits [n,V]. head_out fills it from that chunk's logits z[n,V] (act).
  Tensor head_result(int64_t n, Head head) const;
  void head_out(Tensor z, Head head, int32_t* host_ids = nullptr);
  // x[rows,C] -> host out: ids [rows] (i32) or logits [rows,V] (f32), chunk by chunk.
  void head_rows(Tensor x, int64_t rows, Head head, void* out);

  LlamaModel& model_;
  int B_, max_len_;
  std::unique_ptr<State> s_;
  std::unique_ptr<Graphs> graphs_;
  std::unique_ptr<Pipe> pipe_;
  bool graphs_on_ = true;
  bool run_ahead_ = true;
  // Greedy steps in flight write their ids into the slot's pinned memory from the argmax
  // kernel instead of a download after the step's graph (+0.9% at batch 1 on an H100,
  // bench/RESULTS.md 2026-12-07 23:2x UTC); TL_DECODE_IDS_MAPPED=0 downloads, for A/B.
  bool ids_mapped_ = true;
  int fused_rows_ = 1;
  size_t prefetch_bytes_ = 0;  // off: both prefetches lost on an H100 (see set_prefetch_bytes)
  size_t prefetch_next_bytes_ = 0;
  GraphStats graph_stats_;
  std::vector<int32_t> known_pos_;  // State::pos rows [0, B) on the device; empty: unknown
};

}  // namespace tl
