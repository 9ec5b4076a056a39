#include "eval/fewshot.h"

#include "core/error.h"

namespace tl::eval {

bool draws_one_extra(const std::string& task) {
  // The harness compares fewshot_split (unset for all seven) with test_split: equal (both
  // None) for these four, so it draws one extra to drop the evaluated document.
  return task == "hellaswag" || task == "piqa" || task == "winogrande" || task == "boolq";
}

std::string fewshot_example(const std::string& task, const Doc& doc) {
  const Choice& gold = doc.choices[size_t(doc.gold)];
  if (task == "winogrande" && gold.continuation == " ") return gold.context;
  return gold.context + gold.continuation + "\n\n";
}

FewshotSampler::FewshotSampler(const std::string& task, FewshotPool pool, int k, uint64_t seed)
    : pool_(std::move(pool)), k_(k), draws_(size_t(k) + draws_one_extra(task)), rng_(seed) {
  TL_CHECK(k > 0, task, ": few-shot needs K > 0, got ", k);
  TL_CHECK(pool_.rows.size() >= draws_, task, ": --num-fewshot ", k, " draws ", draws_, " examples",
           draws_one_extra(task) ? " (K + 1: the harness drops the evaluated document)" : "",
           " but the few-shot split '", pool_.path, "' holds ", pool_.rows.size(), " rows");
}

std::string FewshotSampler::next(const json& eval_row, std::vector<int64_t>* picked) {
  std::string prefix;
  int kept = 0;
  for (size_t i : rng_.sample(pool_.rows.size(), draws_)) {
    if (kept == k_) break;
    if (pool_.rows[i] == eval_row) continue;  // the harness's `x != doc`
    prefix += pool_.text[i];
    if (picked) picked->push_back(int64_t(i));
    ++kept;
  }
  return prefix;
}

}  // namespace tl::eval
