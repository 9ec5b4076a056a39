#include "generate/generate.h"

#include <algorithm>
#include <cmath>

#include "core/timer.h"
#include "model/llama_infer.h"

namespace tl {

void generate(LlamaModel& model, std::vector<int>& ids, int max_new, const SamplingOptions& opts,
              uint64_t seed, int stop_id, const std::function<void(int)>& on_token) {
  TL_CHECK(!ids.empty(), "generate: the prompt is empty");
  const int V = model.config().vocab_size, ctx = model.config().max_seq_len;
  Rng rng(seed);
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int32_t> window;
  model.reserve(1, int(std::min<size_t>(size_t(ctx), ids.size() + size_t(max_new))));
  for (int i = 0; i < max_new; ++i) {
    const size_t start = ids.size() > size_t(ctx) ? ids.size() - size_t(ctx) : 0;
    window.assign(ids.begin() + ptrdiff_t(start), ids.end());
    model.forward_last_logits(window.data(), 1, int(window.size()), logits.data());
    int next = sample_token(logits.data(), V, opts, rng);
    if (next == stop_id) break;
    ids.push_back(next);
    if (on_token) on_token(next);
  }
}

double GenerateStats::tokens_per_s() const {
  const double t = prefill_seconds + decode_seconds;
  return t > 0 ? double(new_tokens) / t : 0.0;
}

double GenerateStats::decode_tokens_per_s() const {
  return decode_seconds > 0 ? double(new_tokens - first_tokens) / decode_seconds : 0.0;
}

std::vector<std::vector<int>> generate_batch(LlamaModel& model,
                                             const std::vector<std::vector<int>>& prompts,
                                             const BatchOptions& opts,
                                             const std::function<void(int, int)>& on_token,
                                             GenerateStats* stats) {
  const int B = int(prompts.size());
  const int V = model.config().vocab_size, ctx = model.config().max_seq_len;
  TL_CHECK(B > 0, "generate: no prompts");
  int longest = 0;
  for (int b = 0; b < B; ++b) {
    const size_t n = prompts[size_t(b)].size();
    TL_CHECK(n > 0, "generate: prompt ", b, " is empty");
    TL_CHECK(n <= size_t(ctx), "generate: prompt ", b, " has ", n,
             " tokens, more than the model's context of ", ctx);
    longest = std::max(longest, int(n));
  }
  GenerateStats st;
  std::vector<std::vector<int>> out(static_cast<size_t>(B));
  if (opts.max_new <= 0) return out;
  // Positions needed: the prompt plus every new token but the last, which is never fed.
  const int max_len = int(std::min<int64_t>(ctx, int64_t(longest) + opts.max_new - 1));
  LlamaInference inf(model, B, std::max(max_len, longest));
  std::vector<Rng> rngs;
  for (int b = 0; b < B; ++b) rngs.emplace_back(opts.seed + uint64_t(b));
  std::vector<float> logits(size_t(B) * V), chunk(size_t(B) * V);
  std::vector<int32_t> cur(static_cast<size_t>(B)), pos(static_cast<size_t>(B)),
      pick(static_cast<size_t>(B)), toks;
  auto len = [&](int b) { return int(prompts[size_t(b)].size()); };

  // Prefill: every row's prompt, up to `S` positions per call; row b's logits come from
  // the call that holds its last prompt token. Shorter rows pad with id 0.
  Timer timer;
  const int S = std::max(1, std::min(longest, opts.prefill_tokens / B));
  for (int p0 = 0; p0 < longest; p0 += S) {
    const int Tn = std::min(S, longest - p0);
    toks.assign(size_t(B) * Tn, 0);
    for (int b = 0; b < B; ++b) {
      for (int t = 0; t < Tn && p0 + t < len(b); ++t)
        toks[size_t(b) * Tn + t] = prompts[size_t(b)][size_t(p0 + t)];
      pos[size_t(b)] = p0;
      const int last = len(b) - 1 - p0;
      pick[size_t(b)] = last >= 0 && last < Tn ? last : Tn - 1;
    }
    inf.forward(toks.data(), Tn, pos.data(), pick.data(), chunk.data());
    for (int b = 0; b < B; ++b) {
      const int last = len(b) - 1 - p0;
      if (last >= 0 && last < Tn)
        std::copy_n(chunk.begin() + ptrdiff_t(b) * V, V, logits.begin() + ptrdiff_t(b) * V);
    }
  }
  st.prefill_seconds = timer.seconds();
  for (int b = 0; b < B; ++b) {
    cur[size_t(b)] = len(b);
    st.prompt_tokens += len(b);
  }

  Timer decode_timer;
  std::vector<char> done(static_cast<size_t>(B), 0);
  toks.assign(size_t(B), 0);
  std::fill(pick.begin(), pick.end(), 0);
  // Greedy decode steps take the argmax on the device (submit_argmax): the ids sample_token
  // would pick, without the [B,V] logits download. The first token comes from the prefill's.
  // They run one ahead of the host: the step after the one just submitted is submitted too
  // (its tokens are that step's ids, on the device) when no row can end by length at the
  // step just submitted; a row that meets the stop id instead has its token ahead dropped.
  const bool greedy = opts.sampling.temperature <= 0;
  const bool run_ahead = greedy && opts.run_ahead && inf.run_ahead();
  std::vector<int32_t> next(size_t(B), 0), pos_ahead(size_t(B), 0);
  bool submitted_ahead = false;  // the step the next iteration would submit is in flight
  for (bool first = true;; first = false) {
    if (greedy && !first) inf.collect_argmax(next.data());
    int active = 0;
    for (int b = 0; b < B; ++b) {
      if (done[size_t(b)]) continue;
      const int id = greedy && !first ? next[size_t(b)]
                                      : sample_token(logits.data() + size_t(b) * V, V,
                                                     opts.sampling, rngs[size_t(b)]);
      if (id == opts.stop_id) {
        done[size_t(b)] = 1;
        continue;
      }
      out[size_t(b)].push_back(id);
      ++st.new_tokens;
      st.first_tokens += first;
      if (on_token) on_token(b, id);
      if (int(out[size_t(b)].size()) >= opts.max_new || cur[size_t(b)] >= inf.max_len()) {
        done[size_t(b)] = 1;
        continue;
      }
      toks[size_t(b)] = id;
      ++active;
    }
    if (active == 0) break;
    for (int b = 0; b < B; ++b) {  // finished rows rewrite their position 0 (never read again)
      pos[size_t(b)] = done[size_t(b)] ? 0 : cur[size_t(b)]++;
      if (done[size_t(b)]) toks[size_t(b)] = 0;
    }
    if (!greedy) {
      inf.forward(toks.data(), 1, pos.data(), pick.data(), logits.data());
    } else {
      if (!submitted_ahead) inf.submit_argmax(toks.data(), pos.data(), B);
      // The step after: every live row still live after this step, its position cur[b].
      submitted_ahead = run_ahead;
      for (int b = 0; b < B && submitted_ahead; ++b)
        submitted_ahead = done[size_t(b)] || (int(out[size_t(b)].size()) + 1 < opts.max_new &&
                                              cur[size_t(b)] < inf.max_len());
      if (submitted_ahead) {
        for (int b = 0; b < B; ++b) pos_ahead[size_t(b)] = done[size_t(b)] ? 0 : cur[size_t(b)];
        inf.submit_argmax(nullptr, pos_ahead.data(), B);
      }
    }
    ++st.steps;
  }
  while (inf.steps_in_flight() > 0) inf.collect_argmax(nullptr);  // ahead of rows that ended
  st.decode_seconds = decode_timer.seconds();
  if (stats) *stats = st;
  return out;
}

}  // namespace tl
