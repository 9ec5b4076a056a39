#include "model/llama_infer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <tuple>
#include <vector>

#include "core/log.h"

namespace tl {

namespace {
constexpr int64_t kHeadRows = 128;  // logits rows per head GEMM when every token's are wanted
// A decode step reads keys up to the next multiple of this (each row's own length masks the
// rest), so one recorded graph serves this many consecutive steps.
constexpr int kKeyBucket = 256;
constexpr size_t kMaxGraphs = 64;  // recorded decode steps kept (least recently used go)
}  // namespace

// Recorded decode steps by (rows, first row, key bucket, head output, host memory the ids go
// to). They hold device pointers: valid while the arena, the weights and the backend's memory
// epoch stay put.
struct LlamaInference::Graphs {
  struct Entry {
    std::unique_ptr<Backend::Recording> rec;
    int seen = 0;           // unrecorded runs so far
    uint64_t last_use = 0;  // for eviction
  };
  std::map<std::tuple<int, int, int, int, const void*>, Entry> entries;
  uint64_t epoch = 0, clock = 0;
  const void* arena = nullptr;
  const void* weights = nullptr;
};

// Greedy steps in flight (submit_argmax / collect_argmax): two slots used in turn, each with
// pinned host memory for its positions, tokens and ids and a marker after its ids' download.
// A slot's host memory is reused only after its step was collected, so its copies are done.
struct LlamaInference::Pipe {
  struct Slot {
    int32_t *pos = nullptr, *tokens = nullptr, *ids = nullptr;  // [B_] each
    std::unique_ptr<Backend::Marker> done;
    int rows = 0;
  };
  Backend* be = nullptr;
  void* host = nullptr;
  bool pinned = true;  // host came from the backend's host_allocate (else the base class's)
  Slot slots[2];
  int oldest = 0, count = 0;  // the slot to collect next; steps in flight
  int rows = 0, row0 = 0;     // the last submitted step's rows
  bool chain = false;         // State::tokens holds the last submitted step's ids
  ~Pipe() {
    if (host && pinned) be->host_deallocate(host);
    if (host && !pinned) be->Backend::host_deallocate(host);
  }
};

// Shapes: B rows, Tn new tokens per row, N = B*Tn, C dim, Q qkv width, I ffn dim, V vocab,
// KD = K * head_dim. act = the backend's compute dtype.
struct LlamaInference::State {
  Buffer cache;              // k and v of every layer
  std::vector<Tensor> k, v;  // act [B, max_len, KD] per layer
  Buffer rope;               // cos, sin
  Tensor cos, sin;           // f32 [max_len, D/2]
  Buffer pos_buf;
  Tensor pos;    // i32 [B] on the device
  Buffer arena;  // activations of the last (rows, Tn)
  int rows = 0, Tn = 0;
  Buffer gather_buf;            // copy_prefix's source index per destination position
  Tensor gather;                // i32 [n * max_len]
  Tensor tokens;                // i32 [N]
  Tensor res0, res1, xn, proj;  // act [N,C]: residual stream (ping-pong), norm output, GEMM out
  Tensor rstd;                  // f32 [N]
  Tensor qkv;                   // act [B,Tn,Q]
  Tensor att;                   // act [B,Tn,C]
  Tensor gate_up;               // act [N,2I]
  Tensor sw;                    // act [N,I]
  Tensor last;                  // act [B,C]: the picked rows
  Tensor logits_act;            // act [R,V], R = max(B, kHeadRows)
  Tensor logits_f32;            // f32 [R,V]
  Tensor argmax;                // i32 [R]: greedy ids of logits_act's rows

  // B: the rows of this call; B_all: the cache's rows (the picked rows and head chunk).
  void carve(const ModelConfig& c, int B, int B_all, int Tn_, DType act,
             const std::function<Tensor(DType, Shape)>& take) {
    rows = B;
    Tn = Tn_;
    const int64_t N = int64_t(B) * Tn, C = c.dim, R = std::max<int64_t>(B_all, kHeadRows);
    tokens = take(DType::I32, {N});
    res0 = take(act, {N, C});
    res1 = take(act, {N, C});
    xn = take(act, {N, C});
    proj = take(act, {N, C});
    rstd = take(DType::F32, {N});
    qkv = take(act, {B, Tn, c.qkv_dim()});
    att = take(act, {B, Tn, C});
    gate_up = take(act, {N, 2 * int64_t(c.ffn_dim)});
    sw = take(act, {N, c.ffn_dim});
    last = take(act, {B_all, C});
    logits_act = take(act, {R, c.vocab_size});
    logits_f32 = take(DType::F32, {R, c.vocab_size});
    argmax = take(DType::I32, {R});
  }
};

LlamaInference::LlamaInference(LlamaModel& model, int batch, int max_len)
    : model_(model),
      B_(batch),
      max_len_(max_len),
      s_(std::make_unique<State>()),
      graphs_(std::make_unique<Graphs>()),
      pipe_(std::make_unique<Pipe>()) {
  const char* env = std::getenv("TL_DECODE_GRAPHS");
  graphs_on_ = !(env && std::strcmp(env, "0") == 0);
  const char* ahead = std::getenv("TL_DECODE_RUN_AHEAD");
  run_ahead_ = !(ahead && std::strcmp(ahead, "0") == 0);
  const char* mapped = std::getenv("TL_DECODE_IDS_MAPPED");
  ids_mapped_ = !(mapped && std::strcmp(mapped, "0") == 0);
  if (const char* f = std::getenv("TL_DECODE_FUSED_ROWS")) fused_rows_ = std::atoi(f);
  if (const char* p = std::getenv("TL_DECODE_PREFETCH_MB"))
    prefetch_bytes_ = size_t(std::max(0, std::atoi(p))) << 20;
  if (const char* p = std::getenv("TL_DECODE_PREFETCH_NEXT_MB"))
    prefetch_next_bytes_ = size_t(std::max(0, std::atoi(p))) << 20;
  const ModelConfig& c = model_.config();
  TL_CHECK(batch > 0, "inference: batch must be positive, got ", batch);
  TL_CHECK(max_len > 0 && max_len <= c.max_seq_len, "inference: max_len ", max_len,
           " must be in [1, the model's context ", c.max_seq_len, "]");
  Backend& be = model_.backend();
  const DType act = be.compute_dtype();
  const int64_t KD = int64_t(c.n_kv_heads) * c.head_dim();
  const size_t one = size_t(batch) * size_t(max_len) * size_t(KD) * dtype_size(act);
  s_->cache = Buffer(be, round_up_256(one) * 2 * size_t(c.n_layers));
  for (int l = 0; l < 2 * c.n_layers; ++l) {
    Tensor t = s_->cache.tensor(act, {batch, max_len, KD}, round_up_256(one) * size_t(l));
    (l % 2 ? s_->v : s_->k).push_back(t);
  }
  be.zero(s_->cache.tensor(DType::U8, {int64_t(s_->cache.bytes())}));

  std::vector<float> cs, sn;
  rope_tables(max_len, c.head_dim(), c.rope_theta, cs, sn);
  const int64_t half = c.head_dim() / 2;
  s_->rope = Buffer(be, round_up_256(cs.size() * 4) * 2);
  s_->cos = s_->rope.tensor(DType::F32, {max_len, half});
  s_->sin = s_->rope.tensor(DType::F32, {max_len, half}, round_up_256(cs.size() * 4));
  be.upload(s_->cos, cs.data());
  be.upload(s_->sin, sn.data());
  s_->pos_buf = Buffer(be, size_t(batch) * 4);
  s_->pos = s_->pos_buf.tensor(DType::I32, {batch});
}

LlamaInference::~LlamaInference() {
  try {  // steps in flight still use the buffers freed below
    while (pipe_->count > 0) collect_argmax(nullptr);
  } catch (const std::exception& e) {
    log_warn("inference: a submitted decode step failed at shutdown: ", e.what());
  }
}

size_t LlamaInference::cache_bytes() const { return s_->cache.bytes(); }

Tensor LlamaInference::w(ParamKind k, int layer) const {
  const ParamInfo& p = model_.layout().get(k, layer);
  Tensor all = model_.compute_params();
  return Tensor(static_cast<char*>(all.data) + size_t(p.offset) * dtype_size(all.dtype), all.dtype,
                all.device, p.shape);
}

void LlamaInference::ensure_acts(int rows, int Tn) {
  if (s_->rows == rows && s_->Tn == Tn) return;
  const ModelConfig& c = model_.config();
  Backend& be = model_.backend();
  const DType act = be.compute_dtype();
  size_t bytes = 0;
  State probe;
  probe.carve(c, rows, B_, Tn, act, [&](DType t, Shape sh) {
    bytes += round_up_256(size_t(sh.numel()) * dtype_size(t));
    return Tensor(nullptr, t, be.device(), sh);
  });
  if (s_->arena.bytes() < bytes) {
    s_->arena = Buffer();  // free the old one first
    s_->arena = Buffer(be, bytes);
  }
  char* base = static_cast<char*>(s_->arena.data());
  size_t off = 0;
  s_->carve(c, rows, B_, Tn, act, [&](DType t, Shape sh) {
    Tensor v(base + off, t, be.device(), sh);
    off += round_up_256(size_t(sh.numel()) * dtype_size(t));
    return v;
  });
}

void LlamaInference::head_chunks(Tensor x, int64_t rows,
                                 const std::function<void(Tensor z, int64_t r0)>& use) {
  const int64_t R = s_->logits_act.dim(0);
  for (int64_t r0 = 0; r0 < rows; r0 += R) {
    const int64_t n = std::min(R, rows - r0);
    Tensor z = s_->logits_act.rows(0, n);
    if (n <= fused_rows_)  // few rows: the head only streams its weights, as the layers do
      model_.backend().decode_linear(z, x.rows(r0, r0 + n), w(ParamKind::Head), {});
    else
      model_.backend().matmul_forward(z, x.rows(r0, r0 + n), w(ParamKind::Head));
    use(z, r0);
  }
}

// A decode step's ids go straight into State::tokens, the next step's input: a greedy step
// that continues the last one (submit_argmax without tokens) then needs no copy between the
// two graph replays. Prefill's ids (several tokens a row) keep their own buffer.
Tensor LlamaInference::head_result(int64_t n, Head head) const {
  if (head == Head::Argmax) return s_->Tn == 1 ? s_->tokens.rows(0, n) : s_->argmax.rows(0, n);
  return s_->logits_f32.rows(0, n);
}

void LlamaInference::head_out(Tensor z, Head head, int32_t* host_ids) {
  Backend& be = model_.backend();
  const Tensor out = head_result(z.dim(0), head);
  if (head == Head::Argmax)  // a decode step also moves its rows' positions on (known_pos_)
    be.argmax_rows(out, z, s_->Tn == 1 ? s_->pos.rows(0, z.dim(0)) : Tensor(), host_ids);
  else
    be.convert(out, z);
}

void LlamaInference::head_rows(Tensor x, int64_t rows, Head head, void* out) {
  const size_t row_bytes = head == Head::Argmax ? 4 : size_t(model_.config().vocab_size) * 4;
  head_chunks(x, rows, [&](Tensor z, int64_t r0) {
    head_out(z, head);
    model_.backend().download(static_cast<char*>(out) + size_t(r0) * row_bytes,
                              head_result(z.dim(0), head));
  });
}

void LlamaInference::forward(const int32_t* tokens, int Tn, const int32_t* pos, const int32_t* pick,
                             float* logits, int rows, int row0) {
  if (Tn == 1 && logits) {
    return decode_step(tokens, pos, pick, rows, row0, Head::Logits, logits);
  }
  const int B = run_layers(tokens, Tn, pos, pick, rows, row0);
  if (!logits) return;
  if (!pick) return head_rows(s_->xn, int64_t(B) * Tn, Head::Logits, logits);
  head_rows(picked(B, Tn, pick), B, Head::Logits, logits);
}

void LlamaInference::forward_argmax(const int32_t* tokens, int Tn, const int32_t* pos,
                                    const int32_t* pick, int32_t* ids, int rows, int row0) {
  TL_CHECK(ids, "inference: forward_argmax needs an output for the ids");
  if (Tn == 1) {
    return decode_step(tokens, pos, pick, rows, row0, Head::Argmax, ids);
  }
  const int B = run_layers(tokens, Tn, pos, pick, rows, row0);
  if (!pick) return head_rows(s_->xn, int64_t(B) * Tn, Head::Argmax, ids);
  head_rows(picked(B, Tn, pick), B, Head::Argmax, ids);
}

Tensor LlamaInference::picked(int B, int Tn, const int32_t* pick) {
  Backend& be = model_.backend();
  for (int b = 0; b < B; ++b) {
    const int64_t r = int64_t(b) * Tn + pick[b];
    be.copy(s_->last.rows(b, b + 1), s_->xn.rows(r, r + 1));
  }
  return s_->last.rows(0, B);
}

void LlamaInference::decode_step(const int32_t* tokens, const int32_t* pos, const int32_t* pick,
                                 int rows, int row0, Head head, void* out) {
  const Call call = start(tokens, 1, pos, pick, rows, row0);
  run_step(call.B, row0, call.kv_len, head);
  model_.backend().download(out, head_result(call.B, head));
}

void LlamaInference::submit_argmax(const int32_t* tokens, const int32_t* pos, int rows, int row0) {
  Pipe& p = *pipe_;
  Backend& be = model_.backend();
  TL_CHECK(p.count < 2, "inference: submit_argmax with two steps in flight (collect one first)");
  const Call call = check_call(tokens, 1, pos, nullptr, rows, row0);
  const int B = call.B;
  TL_CHECK(tokens || (p.chain && B == p.rows && row0 == p.row0),
           "inference: submit_argmax without tokens continues the last submitted step, which "
           "must exist, have the same rows and be the last forward");
  // With a step in flight the activations must keep their place (it is still using them).
  TL_CHECK(p.count == 0 || (s_->rows == B && s_->Tn == 1),
           "inference: submit_argmax for other rows than the step in flight");
  if (!p.host) {  // first use: pinned memory for both slots
    p.be = &be;
    const size_t bytes = size_t(6) * size_t(B_) * 4;
    try {
      p.host = be.host_allocate(bytes);
    } catch (const Error& e) {  // correct without pinning, only no longer overlapped
      log_warn("inference: decode steps use pageable host memory (", e.what(),
               "): the host waits for each step's copies");
      p.pinned = false;
      p.host = be.Backend::host_allocate(bytes);  // plain host memory
    }
    for (int i = 0; i < 2; ++i) {
      int32_t* base = static_cast<int32_t*>(p.host) + size_t(3 * i) * size_t(B_);
      p.slots[i].pos = base;
      p.slots[i].tokens = base + B_;
      p.slots[i].ids = base + 2 * B_;
      p.slots[i].done = be.make_marker();
    }
  }
  ensure_acts(B, 1);
  Pipe::Slot& slot = p.slots[(p.oldest + p.count) % 2];
  // The positions are on the device already when the last step was a greedy decode step of
  // these rows at pos - 1 (its argmax moved them on); else they go up. Either way this step
  // starts after the last one's kernels have ended (after its ids' download, this upload, or
  // its replayed recording, which later work waits for whole), which lets the attention read
  // the cache early (Backend::attention_decode).
  if (!positions_on_device(pos, B)) {
    std::copy_n(pos, B, slot.pos);
    be.upload_async(s_->pos.rows(0, B), slot.pos);
    set_known_positions(pos, B);
  }
  if (tokens) {  // else the last step's ids, which its argmax wrote there, are this step's
    std::copy_n(tokens, B, slot.tokens);
    be.upload_async(s_->tokens, slot.tokens);
  }
  p.chain = false;  // until the step below is fully enqueued
  // With ids_mapped_ the argmax writes the slot's ids itself, and a replayed recording is all
  // the step enqueues. A step run op by op still ends with the download: its kernels have no
  // recording's end after them, and the copy separates them from the next step's (above).
  int32_t* host_ids = ids_mapped_ && p.pinned ? slot.ids : nullptr;
  if (!run_step(B, row0, call.kv_len, Head::Argmax, host_ids) || !host_ids)
    be.download_async(slot.ids, head_result(B, Head::Argmax));
  slot.done->record();
  slot.rows = B;
  ++p.count;
  p.rows = B;
  p.row0 = row0;
  p.chain = true;
}

void LlamaInference::collect_argmax(int32_t* ids) {
  Pipe& p = *pipe_;
  TL_CHECK(p.count > 0, "inference: collect_argmax with no step in flight");
  Pipe::Slot& slot = p.slots[p.oldest];
  p.oldest = (p.oldest + 1) % 2;
  --p.count;
  slot.done->wait();
  if (ids) std::copy_n(slot.ids, slot.rows, ids);
}

int LlamaInference::steps_in_flight() const { return pipe_->count; }

void LlamaInference::require_idle(const char* what) {
  TL_CHECK(pipe_->count == 0, "inference: ", what, " while ", pipe_->count,
           " submitted decode step(s) are not collected (collect_argmax first)");
  pipe_->chain = false;  // the call below may overwrite the ids or move rows
}

bool LlamaInference::run_step(int B, int row0, int kv_len, Head head, int32_t* host_ids) {
  const int kv = std::min(max_len_, (kv_len + kKeyBucket - 1) / kKeyBucket * kKeyBucket);
  Backend& be = model_.backend();
  State& s = *s_;
  const auto ops = [&] {  // device work only: recordable
    layers(B, 1, kv, row0);
    head_chunks(s.xn, B, [&](Tensor z, int64_t) { head_out(z, head, host_ids); });  // B <= R
  };

  Backend::Recording* rec = nullptr;
  if (graphs_on_) {
    Graphs& g = *graphs_;
    const void* weights = model_.compute_params().data;
    if (g.epoch != be.recording_epoch() || g.arena != s.arena.data() || g.weights != weights) {
      if (!g.entries.empty()) ++graph_stats_.invalidations;
      g.entries.clear();  // some pointer a recording holds may have moved
      g.epoch = be.recording_epoch();
      g.arena = s.arena.data();
      g.weights = weights;
    }
    Graphs::Entry& e = g.entries[{B, row0, kv, int(head), host_ids}];
    e.last_use = ++g.clock;
    if (!e.rec && e.seen++ > 0) {  // seen before, so every scratch has its size: record
      try {
        e.rec = be.record(ops);
        if (e.rec) ++graph_stats_.recordings;
      } catch (const Error& err) {
        log_warn("decode: recording the step as a graph failed, running op by op from now on: ",
                 err.what());
      }
      if (!e.rec) graphs_on_ = false;          // the backend cannot record: don't ask again
      while (g.entries.size() > kMaxGraphs) {  // never e: it was used last
        auto lru = g.entries.begin();
        for (auto it = g.entries.begin(); it != g.entries.end(); ++it)
          if (it->second.last_use < lru->second.last_use) lru = it;
        g.entries.erase(lru);
      }
    }
    rec = e.rec.get();
  }
  // The positions as they will be after this step, if known; unknown until the step is
  // enqueued (an error leaves them so).
  std::vector<int32_t> after;
  if (known_pos_.size() == size_t(B)) after.swap(known_pos_);
  known_pos_.clear();
  if (head == Head::Argmax)  // argmax_rows moves them on (head_out)
    for (int32_t& p : after) ++p;
  if (rec) {
    rec->replay();
    ++graph_stats_.replays;
  } else {
    ops();
  }
  known_pos_ = std::move(after);
  return rec != nullptr;
}

// What the device's positions hold, as far as the host knows: the last upload, moved on by
// the greedy decode steps since (argmax_rows). A step at exactly those positions skips its
// upload.
void LlamaInference::set_known_positions(const int32_t* pos, int B) {
  known_pos_.assign(pos, pos + B);
}

bool LlamaInference::positions_on_device(const int32_t* pos, int B) const {
  return known_pos_.size() == size_t(B) && std::equal(pos, pos + B, known_pos_.begin());
}

int LlamaInference::run_layers(const int32_t* tokens, int Tn, const int32_t* pos,
                               const int32_t* pick, int rows, int row0) {
  const Call call = start(tokens, Tn, pos, pick, rows, row0);
  layers(call.B, Tn, call.kv_len, row0);
  return call.B;
}

LlamaInference::Call LlamaInference::start(const int32_t* tokens, int Tn, const int32_t* pos,
                                           const int32_t* pick, int rows, int row0) {
  require_idle("a forward");
  const Call call = check_call(tokens, Tn, pos, pick, rows, row0);
  ensure_acts(call.B, Tn);
  Backend& be = model_.backend();
  be.upload(s_->tokens, tokens);
  be.upload(s_->pos.rows(0, call.B), pos);  // before the step's kernels: attention_decode
  set_known_positions(pos, call.B);
  return call;
}

LlamaInference::Call LlamaInference::check_call(const int32_t* tokens, int Tn, const int32_t* pos,
                                                const int32_t* pick, int rows, int row0) const {
  const ModelConfig& c = model_.config();
  TL_CHECK(Tn > 0, "inference: Tn must be positive, got ", Tn);
  const int B = rows > 0 ? rows : B_ - row0;
  TL_CHECK(rows >= 0 && row0 >= 0 && B > 0 && int64_t(row0) + B <= B_, "inference: rows [", row0,
           ", ", int64_t(row0) + B, ") are not a non-empty range of the cache's ", B_, " rows");
  int kv_len = 0;
  for (int b = 0; b < B; ++b) {
    TL_CHECK(pos[b] >= 0 && int64_t(pos[b]) + Tn <= max_len_, "inference: row ", row0 + b,
             " would place tokens at positions [", pos[b], ", ", int64_t(pos[b]) + Tn,
             "), outside the cache's [0, ", max_len_, ")");
    kv_len = std::max(kv_len, pos[b] + Tn);
    if (pick)
      TL_CHECK(pick[b] >= 0 && pick[b] < Tn, "inference: pick[", b, "] = ", pick[b],
               " is not one of the ", Tn, " new tokens");
  }
  const int64_t N = int64_t(B) * Tn;
  for (int64_t i = 0; tokens && i < N; ++i)
    TL_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab_size, "token id ", tokens[i], " at ", i,
             " is outside the model's vocabulary of ", c.vocab_size);
  return {B, kv_len};
}

void LlamaInference::layers(int B, int Tn, int kv_len, int row0) {
  if (Tn == 1 && B <= fused_rows_) return layers_fused(B, kv_len, row0);
  const ModelConfig& c = model_.config();
  Backend& be = model_.backend();
  State& s = *s_;
  const int64_t N = int64_t(B) * Tn;
  const int L = c.n_layers, H = c.n_heads, K = c.n_kv_heads;
  const float eps = c.norm_eps;
  const int64_t C = c.dim;
  be.embedding_forward(s.res0, w(ParamKind::Embed), s.tokens);
  be.rmsnorm_forward(s.xn, s.rstd, s.res0, w(ParamKind::AttnNorm, 0), eps);
  for (int l = 0; l < L; ++l) {
    // res1 = res0 + wo(attention over the cache(rope(wqkv(norm(res0)))))
    be.matmul_forward(s.qkv.view({N, c.qkv_dim()}), s.xn, w(ParamKind::Wqkv, l));
    if (Tn == 1) prefetch_after_attention(l);
    be.attention_decode(s.att, s.qkv, s.k[size_t(l)].rows(row0, row0 + B),
                        s.v[size_t(l)].rows(row0, row0 + B), s.cos, s.sin, s.pos.rows(0, B), kv_len,
                        H, K);
    be.matmul_forward(s.proj, s.att.view({N, C}), w(ParamKind::Wo, l));
    be.add_rmsnorm_forward(s.res1, s.xn, s.rstd, s.res0, s.proj, w(ParamKind::MlpNorm, l), eps);
    // res0 = res1 + w_down(swiglu(w_gate_up(norm(res1))))
    be.matmul_forward(s.gate_up, s.xn, w(ParamKind::WGateUp, l));
    be.swiglu_forward(s.sw, s.gate_up);
    be.matmul_forward(s.proj, s.sw, w(ParamKind::WDown, l));
    const bool last = l + 1 == L;
    be.add_rmsnorm_forward(s.res0, s.xn, s.rstd, s.res1, s.proj,
                           last ? w(ParamKind::FinalNorm) : w(ParamKind::AttnNorm, l + 1), eps);
  }
}

// The same layers as five ops each: with one or a few rows every linear only streams its
// weights, so the norms, SwiGLU and the residual adds ride along inside decode_linear.
void LlamaInference::layers_fused(int B, int kv_len, int row0) {
  const ModelConfig& c = model_.config();
  Backend& be = model_.backend();
  State& s = *s_;
  const int64_t C = c.dim;
  const float eps = c.norm_eps;
  using In = Backend::LinearIn;
  be.embedding_forward(s.res0, w(ParamKind::Embed), s.tokens);
  const int L = c.n_layers;
  for (int l = 0; l < L; ++l) {
    // res1 = res0 + wo(attention over the cache(rope(wqkv(norm(res0)))))
    be.decode_linear(s.qkv.view({B, c.qkv_dim()}), s.res0, w(ParamKind::Wqkv, l),
                     {In::RmsNorm, w(ParamKind::AttnNorm, l), eps, {}, {}});
    const int64_t gate_up_rows = prefetch_after_attention(l);
    be.attention_decode(s.att, s.qkv, s.k[size_t(l)].rows(row0, row0 + B),
                        s.v[size_t(l)].rows(row0, row0 + B), s.cos, s.sin, s.pos.rows(0, B), kv_len,
                        c.n_heads, c.n_kv_heads);
    be.decode_linear(s.res1, s.att.view({B, C}), w(ParamKind::Wo, l),
                     {In::Plain, {}, 0, s.res0, next_rows(w(ParamKind::WGateUp, l), gate_up_rows)});
    // res0 = res1 + w_down(swiglu(w_gate_up(norm(res1))))
    be.decode_linear(
        s.gate_up, s.res1, w(ParamKind::WGateUp, l),
        {In::RmsNorm, w(ParamKind::MlpNorm, l), eps, {}, next_rows(w(ParamKind::WDown, l), 0)});
    const Tensor next = l + 1 < L ? w(ParamKind::Wqkv, l + 1) : w(ParamKind::Head);
    be.decode_linear(s.res0, s.gate_up, w(ParamKind::WDown, l),
                     {In::SwiGlu, {}, 0, s.res1, next_rows(next, 0)});
  }
  be.rmsnorm_forward(s.xn, s.rstd, s.res0, w(ParamKind::FinalNorm), eps);
}

int64_t LlamaInference::prefetch_after_attention(int l) {
  if (prefetch_bytes_ == 0) return 0;
  // Whole rows of wo, then of gate_up, as far as the budget goes.
  std::vector<Tensor> ts;
  size_t left = prefetch_bytes_;
  int64_t rows = 0;
  for (ParamKind k : {ParamKind::Wo, ParamKind::WGateUp}) {
    const Tensor t = w(k, l);
    const size_t row = size_t(t.dim(1)) * dtype_size(t.dtype);
    rows = std::min(t.dim(0), int64_t(left / row));
    if (rows == 0) break;
    ts.push_back(t.rows(0, rows));
    left -= size_t(rows) * row;
  }
  if (!ts.empty()) model_.backend().prefetch(ts);
  return ts.size() == 2 ? rows : 0;
}

Tensor LlamaInference::next_rows(const Tensor& t, int64_t from) const {
  const size_t row = size_t(t.dim(1)) * dtype_size(t.dtype);
  const int64_t to = std::min(t.dim(0), from + int64_t(prefetch_next_bytes_ / row));
  return to > from ? t.rows(from, to) : Tensor();
}

Tensor LlamaInference::hidden() const {
  TL_CHECK(s_->Tn > 0, "inference: hidden() before any forward");
  return s_->xn;
}

void LlamaInference::copy_prefix(int dst0, int n, const int32_t* src, int len) {
  require_idle("copy_prefix");
  TL_CHECK(dst0 >= 0 && n >= 0 && int64_t(dst0) + n <= B_, "copy_prefix: rows [", dst0, ", ",
           int64_t(dst0) + n, ") outside the cache's ", B_);
  TL_CHECK(len >= 0 && len <= max_len_, "copy_prefix: len ", len, " outside [0, ", max_len_, "]");
  for (int i = 0; i < n; ++i)
    TL_CHECK(src[i] >= 0 && src[i] < dst0, "copy_prefix: source row ", src[i],
             " is not below the destination rows (", dst0, ")");
  if (n == 0 || len == 0) return;
  // One gather per layer and k/v over whole destination rows: destination position
  // (i, p) reads source row src[i] at p when p < len, else any valid row (position 0).
  Backend& be = model_.backend();
  const int64_t count = int64_t(n) * max_len_;
  if (s_->gather.numel() < count) {
    s_->gather_buf = Buffer();
    s_->gather_buf = Buffer(be, size_t(count) * 4);
    s_->gather = s_->gather_buf.tensor(DType::I32, {count});
  }
  std::vector<int32_t> idx(size_t(count), 0);
  for (int i = 0; i < n; ++i)
    for (int p = 0; p < len; ++p) idx[size_t(i) * max_len_ + p] = src[i] * max_len_ + p;
  Tensor index = s_->gather.rows(0, count);
  be.upload(index, idx.data());
  const int64_t KD = s_->k[0].dim(2);
  for (int l = 0; l < model_.config().n_layers; ++l)
    for (const Tensor& cache : {s_->k[size_t(l)], s_->v[size_t(l)]}) {
      const Tensor all = cache.view({int64_t(B_) * max_len_, KD});
      be.embedding_forward(all.rows(int64_t(dst0) * max_len_, int64_t(dst0 + n) * max_len_),
                           all.rows(0, int64_t(dst0) * max_len_), index);
    }
}

void LlamaInference::move_row(int src, int dst, int len) {
  require_idle("move_row");
  TL_CHECK(src >= 0 && src < B_ && dst >= 0 && dst < B_, "inference: move_row(", src, ", ", dst,
           ") names a row outside the cache's ", B_);
  TL_CHECK(len >= 0 && len <= max_len_, "inference: move_row length ", len, " is outside [0, ",
           max_len_, "]");
  if (src == dst || len == 0) return;
  Backend& be = model_.backend();
  for (std::vector<Tensor>* kv : {&s_->k, &s_->v})
    for (const Tensor& t : *kv)  // [B, max_len, KD]: row b's first len positions are contiguous
      be.copy(t.rows(dst, dst + 1).view({max_len_, t.dim(2)}).rows(0, len),
              t.rows(src, src + 1).view({max_len_, t.dim(2)}).rows(0, len));
}

}  // namespace tl
