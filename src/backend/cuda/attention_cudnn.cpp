// Causal grouped-query attention through cuDNN's fused flash attention, with the cuDNN 9
// graph backend C API (no cudnn-frontend). cuDNN has no single causal-SDPA operation before
// 9.21; its runtime-fusion engines recognize an operation graph of this shape instead:
//   forward   S = Q K^T * scale; causal mask (row index >= column index, else -inf);
//             M = max S; E = exp(S - M); Z = sum E; stats = M + log Z; O = (E / Z) V
//   backward  Dsum = sum(dO * O); P = exp(Q K^T * scale - stats) masked; dV = P^T dO;
//             dS = P * (dO V^T - Dsum) * scale; dK = dS^T Q; dQ = dS K
// (summed over the query heads of each kv group by a head reduction when H > K). These are the
// graphs cudnn-frontend's composite SDPA nodes build; the layout below follows them.
// Q, K, V, O and the gradients are described in place by strides into the packed qkv / out
// tensors (no copies). stats = logsumexp of the scaled scores in natural log: exactly our lse.
// Every tensor is 4-d, as cuDNN requires of the operands of one node: [B, heads, T, D] views,
// stats and Dsum [B,H,T,1], scores [B,H,T,T], scalars [1,1,1,1].
// Execution plans are built once per shape and cached.
#include <cudnn.h>

#include <array>
#include <cmath>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/attention_internal.h"
#include "backend/cuda/cuda_common.h"

namespace tl::gpu {
namespace {

[[noreturn]] void cudnn_fail(cudnnStatus_t st, const char* expr, const char* file, int line) {
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof(detail));
  const std::string what =
      std::string(cudnnGetErrorString(st)) + (detail[0] ? std::string(": ") + detail : "");
  cuda_fail(what.c_str(), expr, file, line);
}
#define ATTN_CUDNN_CHECK(expr)                                                   \
  do {                                                                           \
    cudnnStatus_t st_ = (expr);                                                  \
    if (st_ != CUDNN_STATUS_SUCCESS) cudnn_fail(st_, #expr, __FILE__, __LINE__); \
  } while (0)

using Dims = std::array<int64_t, 4>;

std::string dims_str(const Dims& d) { return cat("[", d[0], ",", d[1], ",", d[2], ",", d[3], "]"); }

const char* type_name(cudnnDataType_t t) {
  return t == CUDNN_DATA_FLOAT      ? "f32"
         : t == CUDNN_DATA_BFLOAT16 ? "bf16"
         : t == CUDNN_DATA_INT32    ? "i32"
         : t == CUDNN_DATA_BOOLEAN  ? "bool"
                                    : "type?";
}

const char* pointwise_name(cudnnPointwiseMode_t m) {
  static const std::pair<cudnnPointwiseMode_t, const char*> kNames[] = {
      {CUDNN_POINTWISE_ADD, "ADD"},           {CUDNN_POINTWISE_SUB, "SUB"},
      {CUDNN_POINTWISE_MUL, "MUL"},           {CUDNN_POINTWISE_DIV, "DIV"},
      {CUDNN_POINTWISE_EXP, "EXP"},           {CUDNN_POINTWISE_LOG, "LOG"},
      {CUDNN_POINTWISE_IDENTITY, "IDENTITY"}, {CUDNN_POINTWISE_GEN_INDEX, "GEN_INDEX"},
      {CUDNN_POINTWISE_CMP_GE, "CMP_GE"},     {CUDNN_POINTWISE_BINARY_SELECT, "BINARY_SELECT"},
  };
  for (const auto& [mode, name] : kNames)
    if (mode == m) return name;
  return "pointwise?";
}

// One backend descriptor, destroyed with its owner.
struct Desc {
  cudnnBackendDescriptor_t d = nullptr;
  explicit Desc(cudnnBackendDescriptorType_t type) {
    ATTN_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d));
  }
  ~Desc() {
    if (d) cudnnBackendDestroyDescriptor(d);
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t n,
           const void* v) {
    ATTN_CUDNN_CHECK(cudnnBackendSetAttribute(d, name, type, n, v));
  }
  void set_desc(cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t v) {
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v);
  }
  void finalize() { ATTN_CUDNN_CHECK(cudnnBackendFinalize(d)); }
};

// Tensor ids the variant pack binds (virtual tensors get ids from kFirstVirtual on).
enum Uid : int64_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kStats,
  kdO,
  kdQ,
  kdK,
  kdV,
  kScale,
  kNegInf,
  kOne,
  kDsum,
  kdQAcc,
  kFirstVirtual = 100
};

// Builds an operation graph; keeps every descriptor alive as long as the plan that uses it.
// Every tensor of a graph has 4 dims (cuDNN rejects operations whose operands differ in rank).
// A descriptor that does not finalize fails with a description of the node and its tensors
// (uid, type, dims, strides), and a graph that does not finalize lists all its nodes.
class Graph {
 public:
  using Td = cudnnBackendDescriptor_t;
  Td tensor(int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
            bool is_virtual, bool by_value = false) {
    Desc& t = keep(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t align = 16;
    t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data());
    t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data());
    t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    const bool yes = true;
    if (is_virtual) t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &yes);
    if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes);
    std::string info =
        cat("#", uid, " ", type_name(type), " dims ", dims_str(dims), " strides ",
            dims_str(strides), is_virtual ? " virtual" : "", by_value ? " by-value" : "");
    finalize(t, "tensor " + info);
    info_[t.d] = std::move(info);
    return t.d;
  }
  Td virt(cudnnDataType_t type, const Dims& dims, const Dims& strides) {
    return tensor(next_uid_++, type, dims, strides, true);
  }
  // A host f32 scalar passed by value at execution, [1,1,1,1] like the rest of the graph
  // (cudnn-frontend creates its scalars 1-d and widens them to the rank of the other operands).
  Td scalar(int64_t uid) {
    return tensor(uid, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  }
  // y = mode(x[, b[, t]]); axis only for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, Td x, Td b, Td t, Td y,
                 cudnnDataType_t compute = CUDNN_DATA_FLOAT, int64_t axis = -1) {
    Desc& pw = keep(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    pw.set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    if (mode == CUDNN_POINTWISE_GEN_INDEX)
      pw.set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    const std::string what =
        cat("pointwise ", pointwise_name(mode), " (math ", type_name(compute),
            mode == CUDNN_POINTWISE_GEN_INDEX ? cat(", axis ", axis) : std::string(), ")");
    finalize(pw, what);
    Desc& op = keep(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw.d);
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
    if (t) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t);
    op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    const float one = 1.f;
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
    add_op(op, what, {{"x", x}, {"b", b}, {"t", t}, {"y", y}});
  }
  void reduction(cudnnReduceTensorOp_t mode, Td x, Td y) {
    Desc& r = keep(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    r.set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    r.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    const std::string what = mode == CUDNN_REDUCE_TENSOR_MAX ? "reduction MAX" : "reduction ADD";
    finalize(r, what);
    Desc& op = keep(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, r.d);
    op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x);
    op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
    add_op(op, what, {{"x", x}, {"y", y}});
  }
  void matmul(Td a, Td b, Td c) {
    Desc& mm = keep(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    mm.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    finalize(mm, "matmul descriptor");
    Desc& op = keep(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a);
    op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b);
    op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c);
    op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm.d);
    add_op(op, "matmul", {{"a", a}, {"b", b}, {"c", c}});
  }
  void reshape(Td x, Td y) {
    Desc& op = keep(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x);
    op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
    add_op(op, "reshape", {{"x", x}, {"y", y}});
  }
  // Finalizes the graph and builds the first execution plan heuristics offer that cuDNN
  // accepts. Returns the plan descriptor (owned by this graph); nullptr without a handle (the
  // nodes alone, cudnn_attention_check_nodes).
  Td build_plan(cudnnHandle_t handle, const char* what) {
    if (!handle) return nullptr;
    Desc& graph = keep(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(ops_.size()),
              ops_.data());
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    finalize(graph, cat(what, " operation graph of ", ops_.size(), " nodes:\n", listing()));
    std::string tried;
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
      heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph.d);
      heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
      if (cudnnBackendFinalize(heur.d) != CUDNN_STATUS_SUCCESS) continue;
      int64_t n = 0;
      if (cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &n,
                                   nullptr) != CUDNN_STATUS_SUCCESS)
        continue;
      std::vector<std::unique_ptr<Desc>> cfgs;
      std::vector<cudnnBackendDescriptor_t> raw;
      for (int64_t i = 0; i < n; ++i) {
        cfgs.push_back(std::make_unique<Desc>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
        raw.push_back(cfgs.back()->d);
      }
      if (n == 0 || cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                             CUDNN_TYPE_BACKEND_DESCRIPTOR, n, &n,
                                             raw.data()) != CUDNN_STATUS_SUCCESS)
        continue;
      for (int64_t i = 0; i < n; ++i) {
        auto plan = std::make_unique<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
        plan->set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, raw[size_t(i)]);
        const cudnnStatus_t st = cudnnBackendFinalize(plan->d);
        if (st == CUDNN_STATUS_SUCCESS) {
          keep_.push_back(std::move(cfgs[size_t(i)]));
          keep_.push_back(std::move(plan));
          return keep_.back()->d;
        }
        tried += std::string(tried.empty() ? "" : "; ") + cudnnGetErrorString(st);
      }
    }
    fail("attention (cudnn): no cuDNN engine runs the ", what, " graph (cuDNN ", cudnnGetVersion(),
         ", tried: ", tried.empty() ? "none offered" : tried, last_error(), ")\n", listing());
  }

 private:
  Desc& keep(cudnnBackendDescriptorType_t type) {
    keep_.push_back(std::make_unique<Desc>(type));
    return *keep_.back();
  }
  static std::string last_error() {
    char detail[512] = {0};
    cudnnGetLastErrorString(detail, sizeof(detail));
    return detail[0] ? std::string("; ") + detail : std::string();
  }
  void finalize(Desc& d, const std::string& what) {
    const cudnnStatus_t st = cudnnBackendFinalize(d.d);
    if (st != CUDNN_STATUS_SUCCESS)
      fail("attention (cudnn): cuDNN ", cudnnGetVersion(), " returned ", cudnnGetErrorString(st),
           last_error(), ", finalizing ", what);
  }
  // Finalizes an operation; on failure names the node and its tensors.
  void add_op(Desc& op, const std::string& what,
              std::initializer_list<std::pair<const char*, Td>> operands) {
    std::string line = what;
    for (const auto& [name, t] : operands)
      if (t) line += cat("\n    ", name, ": ", info_.count(t) ? info_[t] : "(unknown tensor)");
    finalize(op, cat("node ", ops_.size(), ": ", line));
    ops_.push_back(op.d);
    listing_.push_back(std::move(line));
  }
  std::string listing() const {
    std::string s;
    for (size_t i = 0; i < listing_.size(); ++i) s += cat("  node ", i, ": ", listing_[i], "\n");
    return s;
  }
  std::vector<std::unique_ptr<Desc>> keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  std::vector<std::string> listing_;                      // one entry per node, for diagnostics
  std::map<cudnnBackendDescriptor_t, std::string> info_;  // tensor -> "#uid type dims strides"
  int64_t next_uid_ = kFirstVirtual;
};

struct Plan {
  Graph graph;
  cudnnBackendDescriptor_t plan = nullptr;
  int64_t workspace = 0;  // bytes cuDNN asks for
};

// Layouts of the packed tensors as [B, heads, T, D] views (element strides).
struct Views {
  Dims q, q_s, kv, kv_s, kt, kt_s, o, o_s, stats, stats_s, s, s_s, st_s, row, row_s;
  explicit Views(const AttnShape& a) {
    const int64_t B = a.B, T = a.T, H = a.H, K = a.K, D = a.D, W = a.qkv_row(), OW = a.out_row();
    q = {B, H, T, D}, q_s = {T * W, D, W, 1};
    kv = {B, K, T, D}, kv_s = {T * W, D, W, 1};
    kt = {B, K, D, T}, kt_s = {T * W, D, 1, W};  // K^T (and V^T) without a copy
    o = {B, H, T, D}, o_s = {T * OW, D, OW, 1};
    stats = {B, H, T, 1}, stats_s = {H * T, T, 1, 1};      // = lse[B,H,T]
    s = {B, H, T, T}, s_s = {H * T * T, T * T, T, 1};      // scores
    st_s = {H * T * T, T * T, 1, T};                       // the same, transposed
    row = {B, H, T, D}, row_s = {H * T * D, T * D, D, 1};  // dense per-head [T, D]
  }
};

// S = Q K^T * scale [- stats], then the causal mask (-inf above the diagonal); returns the
// masked scores (f32, virtual). The backward subtracts stats before masking, as cuDNN expects.
cudnnBackendDescriptor_t scaled_masked_scores(Graph& g, const Views& v, cudnnBackendDescriptor_t q,
                                              cudnnBackendDescriptor_t kt,
                                              cudnnBackendDescriptor_t scale,
                                              cudnnBackendDescriptor_t sub_stats) {
  auto s = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
  g.matmul(q, kt, s);
  auto scaled = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
  g.pointwise(CUDNN_POINTWISE_MUL, s, scale, nullptr, scaled);
  if (sub_stats) {
    auto shifted = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
    g.pointwise(CUDNN_POINTWISE_SUB, scaled, sub_stats, nullptr, shifted);
    scaled = shifted;
  }
  auto row = g.virt(CUDNN_DATA_INT32, v.s, v.s_s), col = g.virt(CUDNN_DATA_INT32, v.s, v.s_s);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scaled, nullptr, nullptr, row, CUDNN_DATA_FLOAT, 2);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scaled, nullptr, nullptr, col, CUDNN_DATA_FLOAT, 3);
  auto keep = g.virt(CUDNN_DATA_BOOLEAN, v.s, v.s_s);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, col, nullptr, keep, CUDNN_DATA_BOOLEAN);
  auto masked = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, scaled, g.scalar(kNegInf), keep, masked);
  return masked;
}

void build_forward(Plan& p, cudnnHandle_t handle, const AttnShape& a) {
  Graph& g = p.graph;
  const Views v(a);
  auto q = g.tensor(kQ, CUDNN_DATA_BFLOAT16, v.q, v.q_s, false);
  auto kt = g.tensor(kK, CUDNN_DATA_BFLOAT16, v.kt, v.kt_s, false);
  auto val = g.tensor(kV, CUDNN_DATA_BFLOAT16, v.kv, v.kv_s, false);
  auto o = g.tensor(kO, CUDNN_DATA_BFLOAT16, v.o, v.o_s, false);
  auto stats = g.tensor(kStats, CUDNN_DATA_FLOAT, v.stats, v.stats_s, false);
  auto s = scaled_masked_scores(g, v, q, kt, g.scalar(kScale), nullptr);
  // softmax with stats = max + log(sum exp(s - max))
  auto mx = g.virt(CUDNN_DATA_FLOAT, v.stats, v.stats_s);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, s, mx);
  auto sub = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s), e = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
  g.pointwise(CUDNN_POINTWISE_SUB, s, mx, nullptr, sub);
  g.pointwise(CUDNN_POINTWISE_EXP, sub, nullptr, nullptr, e);
  auto z = g.virt(CUDNN_DATA_FLOAT, v.stats, v.stats_s),
       logz = g.virt(CUDNN_DATA_FLOAT, v.stats, v.stats_s);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, z);
  g.pointwise(CUDNN_POINTWISE_LOG, z, nullptr, nullptr, logz);
  g.pointwise(CUDNN_POINTWISE_ADD, mx, logz, nullptr, stats);
  auto pr = g.virt(CUDNN_DATA_BFLOAT16, v.s, v.s_s);  // probabilities feed the second GEMM in bf16
  g.pointwise(CUDNN_POINTWISE_DIV, e, z, nullptr, pr);
  g.matmul(pr, val, o);
  p.plan = g.build_plan(handle, "forward");
}

void build_backward(Plan& p, cudnnHandle_t handle, const AttnShape& a) {
  Graph& g = p.graph;
  const Views v(a);
  const bool gqa = a.H != a.K;
  auto q = g.tensor(kQ, CUDNN_DATA_BFLOAT16, v.q, v.q_s, false);
  auto kt = g.tensor(kK, CUDNN_DATA_BFLOAT16, v.kt, v.kt_s, false);
  auto vt = g.tensor(kV, CUDNN_DATA_BFLOAT16, v.kt, v.kt_s, false);
  auto o = g.tensor(kO, CUDNN_DATA_BFLOAT16, v.o, v.o_s, false);
  auto d_o = g.tensor(kdO, CUDNN_DATA_BFLOAT16, v.o, v.o_s, false);
  auto stats = g.tensor(kStats, CUDNN_DATA_FLOAT, v.stats, v.stats_s, false);
  auto dq = g.tensor(kdQ, CUDNN_DATA_BFLOAT16, v.q, v.q_s, false);
  auto dk = g.tensor(kdK, CUDNN_DATA_BFLOAT16, v.kv, v.kv_s, false);
  auto dv = g.tensor(kdV, CUDNN_DATA_BFLOAT16, v.kv, v.kv_s, false);
  auto scale = g.scalar(kScale);

  // Dsum = sum_d dO * O, kept in workspace memory
  auto prod = g.virt(CUDNN_DATA_FLOAT, v.o, {a.H * a.T * a.D, a.T * a.D, a.H * a.D, 1});
  g.pointwise(CUDNN_POINTWISE_MUL, d_o, o, nullptr, prod);
  auto rsum = g.virt(CUDNN_DATA_FLOAT, v.stats, v.stats_s);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, prod, rsum);
  auto dsum = g.tensor(kDsum, CUDNN_DATA_FLOAT, v.stats, v.stats_s, false);
  g.pointwise(CUDNN_POINTWISE_MUL, rsum, g.scalar(kOne), nullptr, dsum);

  // P = exp(S * scale - stats), causal
  auto shifted = scaled_masked_scores(g, v, q, kt, scale, stats);
  auto pr = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
  g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, nullptr, pr);

  // dV = P^T dO (per query head, then summed over each kv group)
  auto pt = g.virt(CUDNN_DATA_BFLOAT16, v.s, v.st_s);
  g.reshape(pr, pt);
  auto dv_full = gqa ? g.virt(CUDNN_DATA_BFLOAT16, v.row, v.row_s) : dv;
  g.matmul(pt, d_o, dv_full);
  if (gqa) g.reduction(CUDNN_REDUCE_TENSOR_ADD, dv_full, dv);

  // dS = P * (dO V^T - Dsum) * scale
  auto dp = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
  g.matmul(d_o, vt, dp);
  auto dp_sub = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s), ds_raw = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
  g.pointwise(CUDNN_POINTWISE_SUB, dp, dsum, nullptr, dp_sub);
  g.pointwise(CUDNN_POINTWISE_MUL, dp_sub, pr, nullptr, ds_raw);
  auto ds = g.virt(CUDNN_DATA_FLOAT, v.s, v.s_s);
  g.pointwise(CUDNN_POINTWISE_MUL, ds_raw, scale, nullptr, ds);

  // dK = dS^T Q
  auto dst = g.virt(CUDNN_DATA_BFLOAT16, v.s, v.st_s);
  g.reshape(ds, dst);
  auto dk_full = gqa ? g.virt(CUDNN_DATA_BFLOAT16, v.row, v.row_s) : dk;
  g.matmul(dst, q, dk_full);
  if (gqa) g.reduction(CUDNN_REDUCE_TENSOR_ADD, dk_full, dk);

  // dQ = dS K, accumulated in f32 workspace, then converted into dqkv
  auto k = g.virt(CUDNN_DATA_FLOAT, v.kv, v.kv_s);  // f32 like cudnn-frontend's virtual reshape
  g.reshape(kt, k);
  auto dq_acc = g.tensor(kdQAcc, CUDNN_DATA_FLOAT, v.row, v.row_s, false);
  g.matmul(ds, k, dq_acc);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, dq_acc, nullptr, nullptr, dq);
  p.plan = g.build_plan(handle, "backward");
}

// The masked-score fill: cuDNN before 9.10 wants the lowest finite float instead of -inf.
float mask_value() { return cudnnGetVersion() < 91000 ? -3.402823466e38f : -INFINITY; }

}  // namespace

struct CudnnAttention {
  // (backward?, B, T, H, K, D) -> plan
  std::map<std::tuple<bool, int, int, int, int, int>, std::unique_ptr<Plan>> plans;
};

CudnnAttention* cudnn_attention_create() { return new CudnnAttention(); }
void cudnn_attention_destroy(CudnnAttention* c) noexcept { delete c; }

void cudnn_release_handle(CudaContext& ctx) noexcept {
  if (ctx.cudnn) cudnnDestroy(static_cast<cudnnHandle_t>(ctx.cudnn));
  ctx.cudnn = nullptr;
}

size_t cudnn_runtime_version() { return cudnnGetVersion(); }

const char* cudnn_attention_unsupported(const AttnShape& s) {
  if (s.D % 8 != 0 || s.D > 128)
    return "cuDNN fused attention needs head dim <= 128, a multiple of 8";
  // cudnn-frontend works around a backward bug of cuDNN <= 9.15 at T % 128 != 0 with a padding
  // mask we do not build.
  if (s.T % 128 != 0 && cudnn_runtime_version() < 91600)
    return "cuDNN <= 9.15 attention backward needs T % 128 == 0";
  return "";
}

void cudnn_attention_check_nodes(const AttnShape& s) {
  Plan fwd, bwd;
  build_forward(fwd, nullptr, s);
  build_backward(bwd, nullptr, s);
}

namespace {

cudnnHandle_t handle_for(CudaContext& ctx) {
  if (!ctx.cudnn) {
    cudnnHandle_t h = nullptr;
    ATTN_CUDNN_CHECK(cudnnCreate(&h));
    ctx.cudnn = h;
  }
  auto h = static_cast<cudnnHandle_t>(ctx.cudnn);
  ATTN_CUDNN_CHECK(cudnnSetStream(h, ctx.stream));
  return h;
}

Plan& plan_for(CudaContext& ctx, CudnnAttention* c, const AttnShape& s, bool backward) {
  const char* why = cudnn_attention_unsupported(s);
  TL_CHECK(why[0] == '\0', "attention (cudnn): ", why, " (B=", s.B, " T=", s.T, " H=", s.H,
           " K=", s.K, " D=", s.D, "); use TL_ATTENTION=fa2");
  auto key = std::make_tuple(backward, s.B, s.T, s.H, s.K, s.D);
  auto it = c->plans.find(key);
  if (it != c->plans.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  cudnnHandle_t h = handle_for(ctx);
  if (backward)
    build_backward(*p, h, s);
  else
    build_forward(*p, h, s);
  int64_t n = 0;
  ATTN_CUDNN_CHECK(cudnnBackendGetAttribute(p->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                            CUDNN_TYPE_INT64, 1, &n, &p->workspace));
  return *c->plans.emplace(key, std::move(p)).first->second;
}

void execute(CudaContext& ctx, const Plan& p, void* workspace, const std::vector<int64_t>& uids,
             const std::vector<void*>& ptrs) {
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(uids.size()), uids.data());
  pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, int64_t(ptrs.size()),
           ptrs.data());
  pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  pack.finalize();
  ATTN_CUDNN_CHECK(cudnnBackendExecute(handle_for(ctx), p.plan, pack.d));
}

void* at(const void* base, int64_t elements) {  // bf16 element offset
  return const_cast<char*>(static_cast<const char*>(base)) + elements * 2;
}

}  // namespace

void cudnn_attention_forward(CudaContext& ctx, CudnnAttention* c, const AttnShape& s, void* out,
                             float* lse, const void* qkv) {
  const Plan& p = plan_for(ctx, c, s, false);
  void* ws = attention_scratch(ctx, size_t(p.workspace));
  float scale = 1.f / std::sqrt(float(s.D)), neg_inf = mask_value();
  execute(ctx, p, ws, {kQ, kK, kV, kO, kStats, kScale, kNegInf},
          {const_cast<void*>(qkv), at(qkv, int64_t(s.H) * s.D), at(qkv, int64_t(s.H + s.K) * s.D),
           out, lse, &scale, &neg_inf});
}

void cudnn_attention_backward(CudaContext& ctx, CudnnAttention* c, const AttnShape& s, void* dqkv,
                              const void* dout, const void* qkv, const void* out,
                              const float* lse) {
  const Plan& p = plan_for(ctx, c, s, true);
  // workspace: [cuDNN's | Dsum [B,H,T] f32 | dQ accumulator [B,H,T,D] f32]
  const size_t rows = size_t(s.B) * s.H * s.T;
  const size_t off_dsum = round_up_256(size_t(p.workspace));
  const size_t off_dq = off_dsum + round_up_256(rows * 4);
  char* ws = static_cast<char*>(attention_scratch(ctx, off_dq + rows * s.D * 4));
  if (cudnnGetVersion() < 90600)  // older cuDNN expects a zeroed dQ accumulator
    TL_CUDA_CHECK(cudaMemsetAsync(ws + off_dq, 0, rows * s.D * 4, ctx.stream));
  float scale = 1.f / std::sqrt(float(s.D)), neg_inf = mask_value(), one = 1.f;
  const int64_t hd = int64_t(s.H) * s.D, kd = int64_t(s.K) * s.D;
  execute(ctx, p, ws,
          {kQ, kK, kV, kO, kdO, kStats, kdQ, kdK, kdV, kScale, kNegInf, kOne, kDsum, kdQAcc},
          {const_cast<void*>(qkv), at(qkv, hd), at(qkv, hd + kd), const_cast<void*>(out),
           const_cast<void*>(dout), const_cast<float*>(lse), dqkv, at(dqkv, hd), at(dqkv, hd + kd),
           &scale, &neg_inf, &one, ws + off_dsum, ws + off_dq});
}

}  // namespace tl::gpu
