// Few-shot examples for the seven non-MMLU tasks as lm-evaluation-harness 0.4's default
// ContextSampler picks them (docs/eval.md, "Few-shot"): one random.Random(seed) per task,
// consumed document after document in evaluation order; each document draws K examples
// (K + 1 for the tasks whose harness fewshot split equals their test split, both unset),
// drops any equal to the evaluated row and keeps the first K.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "eval/py_random.h"
#include "eval/tasks.h"

namespace tl::eval {

// True for hellaswag, piqa, winogrande and boolq (no test split in their YAML): the harness
// draws K + 1 candidates; for openbookqa and the ARC tasks it draws K.
bool draws_one_extra(const std::string& task);

// One labeled example: the gold choice's context + continuation (doc_to_text + " " +
// target) + "\n\n". A winogrande sentence with nothing after its blank has an empty target:
// the example is then its context alone, without the delimiters (harness >= 0.4.4).
std::string fewshot_example(const std::string& task, const Doc& doc);

struct FewshotPool {
  std::string path;               // for messages
  std::vector<json> rows;         // the raw rows, compared with the evaluated row
  std::vector<std::string> text;  // fewshot_example() of each row
};

class FewshotSampler {
 public:
  // Throws naming the task and sizes when the pool holds fewer rows than one draw needs.
  FewshotSampler(const std::string& task, FewshotPool pool, int k, uint64_t seed);
  // The few-shot prefix of the next evaluated document; `picked` gets the pool rows used.
  std::string next(const json& eval_row, std::vector<int64_t>* picked);

 private:
  FewshotPool pool_;
  int k_;
  size_t draws_;
  PyRandom rng_;
};

}  // namespace tl::eval
