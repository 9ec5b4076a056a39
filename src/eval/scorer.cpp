// Batches: examples sorted by length, longest first (as the harness sorts). A batch of E
// examples with R requests in all runs in two forwards over one KV cache:
//   1. prefix: cache rows [0, E), row e = example e's shared prefix (its first P tokens,
//      padded to the longest); no head.
//   2. copy_prefix: rows [E, R), the examples' other choices, take their example's prefix.
//   3. suffix: all R rows, row r feeds its request's tokens after the prefix at positions
//      p_e...; the hidden states of the scored positions are gathered and go through the
//      head as log-probabilities of their targets (head_logprob), summed per request.
// The prefix stops before the first scored position of every choice, so every scored
// position is in the suffix. Padding positions write cache entries that no real token reads
// (causal attention reads positions <= its own, and a row overwrites a position before
// reading it).
#include "eval/scorer.h"

#include <algorithm>
#include <numeric>

#include "model/llama_infer.h"

namespace tl::eval {

namespace {

struct Group {
  int64_t index;   // into the caller's groups
  int prefix;      // shared tokens computed once
  int max_suffix;  // longest choice after the prefix
};

Tensor head_weight(LlamaModel& model) {
  const ParamInfo& p = model.layout().get(ParamKind::Head);
  Tensor all = model.compute_params();
  return Tensor(static_cast<char*>(all.data) + size_t(p.offset) * dtype_size(all.dtype), all.dtype,
                all.device, p.shape);
}

}  // namespace

std::vector<std::vector<ScoreResult>> score_requests(
    LlamaModel& model, const std::vector<std::vector<TokenRequest>>& groups,
    const ScorerOptions& opts, ScorerStats* stats) {
  std::vector<std::vector<ScoreResult>> out(groups.size());
  const int window = model.config().max_seq_len;
  ScorerStats st;
  std::vector<Group> order;
  int widest = 1, cache_len = 1;
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& reqs = groups[g];
    out[g].resize(reqs.size());
    if (reqs.empty()) continue;
    // Shared prefix: the longest common start of the inputs (tokens[:-1]), stopped before
    // any choice's first scored position.
    size_t prefix = SIZE_MAX, longest = 0;
    for (const TokenRequest& r : reqs) {
      TL_CHECK(r.contlen >= 1 && size_t(r.contlen) < r.tokens.size() &&
                   r.tokens.size() - 1 <= size_t(window),
               "score_requests: a request of ", r.tokens.size(), " tokens scoring ", r.contlen,
               " does not fit the window of ", window);
      const size_t in = r.tokens.size() - 1;
      prefix = std::min(prefix, in - size_t(r.contlen));
      longest = std::max(longest, in);
      const TokenRequest& r0 = reqs[0];
      size_t common = 0;
      while (common < in && common + 1 < r0.tokens.size() && r.tokens[common] == r0.tokens[common])
        ++common;
      prefix = std::min(prefix, common);
    }
    if (!opts.prefix_reuse || reqs.size() == 1) prefix = 0;
    order.push_back({int64_t(g), int(prefix), int(longest - prefix)});
    widest = std::max(widest, int(reqs.size()));
    cache_len = std::max(cache_len, int(longest));
    st.shared_tokens += int64_t(prefix) * int64_t(reqs.size() - 1);
  }
  // Longest first; ties by index keep the run deterministic.
  std::stable_sort(order.begin(), order.end(), [](const Group& a, const Group& b) {
    return a.prefix + a.max_suffix > b.prefix + b.max_suffix;
  });

  // Batches: [begin, end) of order.
  const int max_rows = std::max(opts.max_rows, widest);
  std::vector<std::pair<size_t, size_t>> batches;
  int rows_needed = 1;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    int E = 0, R = 0, P = 0, S = 0;
    while (j < order.size()) {
      const Group& g = order[j];
      const int n = int(groups[size_t(g.index)].size());
      const int e = E + 1, r = R + n, p = std::max(P, g.prefix), s = std::max(S, g.max_suffix);
      const bool fits = r <= max_rows && int64_t(e) * p <= opts.max_tokens &&
                        int64_t(r) * s <= opts.max_tokens && p + s <= cache_len;
      if (E > 0 && !fits) break;
      E = e, R = r, P = p, S = s;
      ++j;
    }
    batches.emplace_back(i, j);
    rows_needed = std::max(rows_needed, R);
    i = j;
  }
  if (batches.empty()) return out;

  Backend& be = model.backend();
  LlamaInference infer(model, rows_needed, cache_len);
  const Tensor head = head_weight(model);
  const int64_t C = model.config().dim;
  const DType act = be.compute_dtype();
  // Device buffers for the gathered scored positions, grown as needed.
  Buffer sel_buf, io_buf;
  int64_t sel_cap = 0;
  std::vector<int32_t> tokens, pos, src, gather, targets, greedy;
  std::vector<float> logp;
  for (const auto& [b0, b1] : batches) {
    // Row layout: rows [0, E) the first choice of each example, then the other choices.
    struct Row {
      const TokenRequest* req;
      int64_t group;
      int choice, prefix;
    };
    std::vector<Row> rows;
    const int E = int(b1 - b0);
    int P = 0, S = 0;
    for (size_t k = b0; k < b1; ++k) {
      const Group& g = order[k];
      rows.push_back({&groups[size_t(g.index)][0], g.index, 0, g.prefix});
      P = std::max(P, g.prefix);
      S = std::max(S, g.max_suffix);
    }
    for (size_t k = b0; k < b1; ++k) {
      const Group& g = order[k];
      const auto& reqs = groups[size_t(g.index)];
      for (size_t c = 1; c < reqs.size(); ++c)
        rows.push_back({&reqs[c], g.index, int(c), g.prefix});
    }
    const int R = int(rows.size());
    if (P > 0) {
      tokens.assign(size_t(E) * size_t(P), 0);  // padding: token 0
      for (int e = 0; e < E; ++e)
        std::copy_n(rows[size_t(e)].req->tokens.begin(), rows[size_t(e)].prefix,
                    tokens.begin() + int64_t(e) * P);
      pos.assign(size_t(E), 0);
      infer.forward(tokens.data(), P, pos.data(), nullptr, nullptr, E);
      ++st.forwards;
      st.tokens += int64_t(E) * P;
      src.resize(size_t(R - E));
      for (int r = E; r < R; ++r) {
        // rows[r]'s example is the one whose first choice sits in row e
        int e = 0;
        while (rows[size_t(e)].group != rows[size_t(r)].group) ++e;
        src[size_t(r - E)] = e;
      }
      infer.copy_prefix(E, R - E, src.data(), P);
    }
    tokens.assign(size_t(R) * size_t(S), 0);
    pos.assign(size_t(R), 0);
    gather.clear();
    targets.clear();
    for (int r = 0; r < R; ++r) {
      const Row& row = rows[size_t(r)];
      const auto& t = row.req->tokens;
      const int in = int(t.size()) - 1, s = in - row.prefix;
      std::copy(t.begin() + row.prefix, t.begin() + in, tokens.begin() + int64_t(r) * S);
      pos[size_t(r)] = row.prefix;
      st.real_tokens += s + (r < E ? row.prefix : 0);
      // Suffix position j predicts t[prefix + j + 1]; the scored ones are the last contlen.
      for (int j = s - row.req->contlen; j < s; ++j) {
        gather.push_back(int32_t(int64_t(r) * S + j));
        targets.push_back(t[size_t(row.prefix + j + 1)]);
      }
    }
    infer.forward(tokens.data(), S, pos.data(), nullptr, nullptr, R);
    ++st.forwards;
    st.tokens += int64_t(R) * S;
    const int64_t M = int64_t(gather.size());
    if (M > sel_cap) {
      sel_cap = M;
      sel_buf = Buffer();
      io_buf = Buffer();
      sel_buf = Buffer(be, size_t(M * C) * dtype_size(act));
      io_buf = Buffer(be, size_t(M) * 16);  // gather, targets, logp, greedy: 4 bytes each
    }
    const Tensor sel = sel_buf.tensor(act, {M, C});
    const Tensor d_gather = io_buf.tensor(DType::I32, {M});
    const Tensor d_targets = io_buf.tensor(DType::I32, {M}, size_t(M) * 4);
    const Tensor d_logp = io_buf.tensor(DType::F32, {M}, size_t(M) * 8);
    const Tensor d_greedy = io_buf.tensor(DType::I32, {M}, size_t(M) * 12);
    be.upload(d_gather, gather.data());
    be.upload(d_targets, targets.data());
    be.embedding_forward(sel, infer.hidden(), d_gather);  // a row gather: sel[m] = h[gather[m]]
    be.head_logprob(d_logp, d_greedy, sel, head, d_targets);
    logp.resize(size_t(M));
    greedy.resize(size_t(M));
    be.download(logp.data(), d_logp);
    be.download(greedy.data(), d_greedy);
    size_t m = 0;
    for (const Row& row : rows) {
      ScoreResult res;
      res.greedy = true;
      for (int j = 0; j < row.req->contlen; ++j, ++m) {
        res.ll += double(logp[m]);
        res.greedy = res.greedy && greedy[m] != 0;
      }
      out[size_t(row.group)][size_t(row.choice)] = res;
    }
    ++st.batches;
  }
  if (stats) *stats = st;
  return out;
}

}  // namespace tl::eval
