#include "eval/tasks.h"

#include <algorithm>
#include <map>
#include <memory>

#include "core/error.h"
#include "eval/dataset.h"
#include "eval/fewshot.h"
#include "eval/text.h"

namespace tl::eval {

namespace {

// Reads one row's fields; every failure names the task, the row and the field.
class Fields {
 public:
  Fields(const std::string& task, const Row& row) : task_(task), row_(row) {}

  [[noreturn]] void bad(const std::string& field, const std::string& what) const {
    fail(task_, ": ", row_.where(), ": field '", field, "': ", what);
  }
  const json& get(const std::string& field) const {
    // "a.b" reads a field of a struct field.
    const json* v = &row_.value;
    std::string done;
    size_t start = 0;
    for (;;) {
      const size_t dot = field.find('.', start);
      const std::string part = field.substr(start, dot == std::string::npos ? dot : dot - start);
      done += (done.empty() ? "" : ".") + part;
      if (!v->is_object())
        bad(done, cat("the enclosing value is ", v->type_name(), ", not an object"));
      auto it = v->find(part);
      if (it == v->end()) bad(done, "missing");
      if (it->is_null()) bad(done, "is null");
      v = &*it;
      if (dot == std::string::npos) return *v;
      start = dot + 1;
    }
  }
  std::string text(const std::string& field, const json& v) const {
    if (!v.is_string()) bad(field, cat("is ", v.type_name(), ", not a string"));
    std::string s = v.get<std::string>();
    const std::string problem = utf8_problem(s);
    if (!problem.empty()) bad(field, problem);
    return s;
  }
  std::string str(const std::string& field) const { return text(field, get(field)); }
  int64_t integer(const std::string& field, bool digit_string_ok) const {
    const json& v = get(field);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (digit_string_ok && v.is_string()) {
      const std::string s = v.get<std::string>();
      if (s.empty()) bad(field, "is an empty string (a split without labels?)");
      if (s.size() <= 9 &&
          std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::stoll(s);
      bad(field, cat("'", s, "' is not a number"));
    }
    bad(field, cat("is ", v.type_name(), ", not an integer"));
  }
  std::vector<std::string> str_list(const std::string& field) const {
    const json& v = get(field);
    if (!v.is_array()) bad(field, cat("is ", v.type_name(), ", not a list"));
    if (v.empty()) bad(field, "is an empty list");
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i].is_null()) bad(cat(field, "[", i, "]"), "is null");
      out.push_back(text(cat(field, "[", i, "]"), v[i]));
    }
    return out;
  }
  int index_in(const std::string& field, int64_t value, size_t n) const {
    if (value < 0 || uint64_t(value) >= n)
      bad(field, cat(value, " is out of range for ", n, " choices"));
    return int(value);
  }

 private:
  const std::string& task_;
  const Row& row_;
};

// The usual request shape: one context, continuation " " + choice.
Doc shared_context(const std::string& context, const std::vector<std::string>& choices, int gold) {
  Doc d;
  for (const auto& c : choices) d.choices.push_back({context, " " + c, int64_t(py_len(c))});
  d.gold = gold;
  return d;
}

Doc hellaswag(const Fields& f) {
  const std::string ctx = f.str("ctx_a") + " " + py_capitalize(f.str("ctx_b"));
  const std::string query = hellaswag_preprocess(f.str("activity_label") + ": " + ctx);
  std::vector<std::string> choices = f.str_list("endings");
  for (auto& c : choices) c = hellaswag_preprocess(c);
  const int gold = f.index_in("label", f.integer("label", true), choices.size());
  return shared_context(query, choices, gold);
}

// ARC and OpenBookQA: choices {text, label}; the gold is the answer key's place in label.
Doc lettered(const Fields& f, const std::string& context, bool lstrip_key) {
  const std::vector<std::string> text = f.str_list("choices.text");
  const std::vector<std::string> labels = f.str_list("choices.label");
  if (labels.size() != text.size())
    f.bad("choices.label", cat(labels.size(), " labels for ", text.size(), " texts"));
  std::string key = f.str("answerKey");
  if (lstrip_key) key = py_lstrip(key);
  auto it = std::find(labels.begin(), labels.end(), key);
  if (it == labels.end()) {
    std::string list;
    for (const auto& l : labels) list += (list.empty() ? "" : ", ") + l;
    f.bad("answerKey", cat("'", key, "' is not one of the labels (", list, ")"));
  }
  return shared_context(context, text, int(it - labels.begin()));
}

Doc winogrande(const Fields& f) {
  const std::string sentence = f.str("sentence");
  const size_t blank = sentence.find('_');
  if (blank == std::string::npos) f.bad("sentence", "has no '_' blank");
  const json& a = f.get("answer");
  int gold = -1;
  if (a.is_string() && (a == "1" || a == "2")) gold = a == "1" ? 0 : 1;
  if (a.is_number_integer() && (a == 1 || a == 2)) gold = a == 1 ? 0 : 1;
  if (gold < 0) f.bad("answer", cat(a.dump(), " is not \"1\" or \"2\""));
  // Partial scoring: the option goes into the context; the text after the blank is the
  // continuation shared by both options.
  const std::string prefix = sentence.substr(0, blank);
  const std::string cont = " " + py_strip(sentence.substr(blank + 1));
  Doc d;
  for (const char* field : {"option1", "option2"}) {
    const std::string opt = f.str(field);
    d.choices.push_back({prefix + opt, cont, int64_t(py_len(prefix + opt))});
  }
  d.gold = gold;
  return d;
}

Doc boolq(const Fields& f) {
  const std::string ctx = f.str("passage") + "\nQuestion: " + f.str("question") + "?\nAnswer:";
  return shared_context(ctx, {"no", "yes"}, f.index_in("label", f.integer("label", false), 2));
}

Doc piqa(const Fields& f) {
  const std::string ctx = "Question: " + f.str("goal") + "\nAnswer:";
  return shared_context(ctx, {f.str("sol1"), f.str("sol2")},
                        f.index_in("label", f.integer("label", false), 2));
}

struct MmluRow {
  std::string question, subject;
  std::vector<std::string> choices;
  int answer;
};
MmluRow mmlu_row(const Fields& f) {
  MmluRow r;
  r.question = f.str("question");
  r.subject = f.str("subject");
  r.choices = f.str_list("choices");
  if (r.choices.size() != 4)
    f.bad("choices", cat(r.choices.size(), " choices, the template has 4"));
  r.answer = f.index_in("answer", f.integer("answer", false), 4);
  if (mmlu_category(r.subject).empty())
    f.bad("subject", cat("'", r.subject, "' is not an MMLU subject"));
  return r;
}

const std::map<std::string, std::string>& mmlu_subjects() {
  static const std::map<std::string, std::string> m = [] {
    std::map<std::string, std::string> out;
    const std::pair<const char*, const char*> groups[] = {
        {"humanities",
         "formal_logic high_school_european_history high_school_us_history "
         "high_school_world_history international_law jurisprudence logical_fallacies "
         "moral_disputes moral_scenarios philosophy prehistory professional_law world_religions"},
        {"social_sciences",
         "econometrics high_school_geography high_school_government_and_politics "
         "high_school_macroeconomics high_school_microeconomics high_school_psychology "
         "human_sexuality professional_psychology public_relations security_studies sociology "
         "us_foreign_policy"},
        {"other",
         "business_ethics clinical_knowledge college_medicine global_facts human_aging "
         "management marketing medical_genetics miscellaneous nutrition "
         "professional_accounting professional_medicine virology"},
        {"stem",
         "abstract_algebra anatomy astronomy college_biology college_chemistry "
         "college_computer_science college_mathematics college_physics computer_security "
         "conceptual_physics electrical_engineering elementary_mathematics high_school_biology "
         "high_school_chemistry high_school_computer_science high_school_mathematics "
         "high_school_physics high_school_statistics machine_learning"}};
    for (const auto& [cat_name, list] : groups) {
      std::string s = list;
      for (size_t i = 0; i < s.size();) {
        size_t j = s.find(' ', i);
        if (j == std::string::npos) j = s.size();
        out[s.substr(i, j - i)] = cat_name;
        i = j + 1;
      }
    }
    return out;
  }();
  return m;
}

// The split an MMLU file holds, from its name as the hub lays it out ("test-00000-of-...",
// "dev.jsonl"): "test", "dev", or "" for splits not used (validation, auxiliary_train).
std::string mmlu_split(const std::string& file) {
  const std::string base = file.substr(file.find_last_of('/') + 1);
  for (const char* s : {"test", "dev"})
    if (base.rfind(s, 0) == 0) return s;
  for (const char* s : {"validation", "val", "auxiliary_train", "train"})
    if (base.rfind(s, 0) == 0) return "";
  fail("mmlu: cannot tell the split of '", file,
       "': its name must start with test or dev (validation, auxiliary_train are skipped)");
}

TaskData load_mmlu(const std::vector<std::string>& files, int64_t limit, int k) {
  const TaskInfo& info = task_info("mmlu");
  std::map<std::string, std::vector<std::pair<MmluRow, std::string>>> test;
  std::map<std::string, std::vector<MmluRow>> dev;
  for (const std::string& file : files) {
    const std::string split = mmlu_split(file);
    if (split.empty()) continue;
    for (const Row& row : read_rows(file, info.columns)) {
      const Fields f("mmlu", row);
      MmluRow r = mmlu_row(f);
      if (split == "dev")
        dev[r.subject].push_back(std::move(r));
      else
        test[r.subject].emplace_back(std::move(r), row.where());
    }
  }
  TL_CHECK(!test.empty(), "mmlu: no test rows among the ", files.size(),
           " files (file names must start with test or dev)");
  TaskData t{"mmlu", k, {}};
  for (auto& [subject, rows] : test) {
    const auto& shots = dev[subject];
    TL_CHECK(int64_t(shots.size()) >= k, "mmlu: subject '", subject, "' has ", shots.size(),
             " dev rows, ", k, "-shot needs ", k);
    std::string prefix = "The following are multiple choice questions (with answers) about " +
                         py_replace(subject, "_", " ") + ".\n\n";
    for (int s = 0; s < k; ++s)
      prefix += mmlu_question_block(shots[size_t(s)].question, shots[size_t(s)].choices) + " " +
                "ABCD"[shots[size_t(s)].answer] + "\n\n";
    const size_t n = limit > 0 ? std::min(rows.size(), size_t(limit)) : rows.size();
    for (size_t i = 0; i < n; ++i) {
      const MmluRow& r = rows[i].first;
      Doc d = shared_context(prefix + mmlu_question_block(r.question, r.choices),
                             {"A", "B", "C", "D"}, r.answer);
      d.index = int64_t(i);
      d.where = rows[i].second;
      d.subject = subject;
      t.docs.push_back(std::move(d));
    }
  }
  return t;
}

}  // namespace

const std::vector<TaskInfo>& known_tasks() {
  static const std::vector<TaskInfo> tasks = {
      {"hellaswag", true, {"ctx_a", "ctx_b", "activity_label", "endings", "label"}},
      {"openbookqa", true, {"question_stem", "choices", "answerKey"}},
      {"winogrande", false, {"sentence", "option1", "option2", "answer"}},
      {"arc_easy", true, {"question", "choices", "answerKey"}},
      {"arc_challenge", true, {"question", "choices", "answerKey"}},
      {"boolq", false, {"passage", "question", "label"}},
      {"piqa", true, {"goal", "sol1", "sol2", "label"}},
      {"mmlu", false, {"question", "subject", "choices", "answer"}},
  };
  return tasks;
}

const TaskInfo& task_info(const std::string& name) {
  std::string list;
  for (const TaskInfo& t : known_tasks()) {
    if (t.name == name) return t;
    list += (list.empty() ? "" : ", ") + t.name;
  }
  fail("unknown task '", name, "' (known tasks: ", list, ")");
}

std::string mmlu_category(const std::string& subject) {
  auto it = mmlu_subjects().find(subject);
  return it == mmlu_subjects().end() ? "" : it->second;
}

std::string mmlu_question_block(const std::string& question,
                                const std::vector<std::string>& choices) {
  std::string s = py_strip(question);
  for (size_t i = 0; i < choices.size() && i < 4; ++i) s += cat("\n", "ABCD"[i], ". ", choices[i]);
  return s + "\nAnswer:";
}

namespace {

Doc build_doc(const std::string& name, const Row& row) {
  const Fields f(name, row);
  return name == "hellaswag"    ? hellaswag(f)
         : name == "openbookqa" ? lettered(f, f.str("question_stem"), true)
         : name == "winogrande" ? winogrande(f)
         : name == "boolq"      ? boolq(f)
         : name == "piqa"       ? piqa(f)
                          : lettered(f, "Question: " + f.str("question") + "\nAnswer:", false);
}

// Every row of the few-shot split, each validated and rendered as a labeled example.
FewshotPool read_pool(const std::string& name, const std::string& path) {
  FewshotPool pool{path, {}, {}};
  for (const std::string& file : expand_dataset_path(path)) {
    for (Row& row : read_rows(file, task_info(name).columns)) {
      pool.text.push_back(fewshot_example(name, build_doc(name, row)));
      pool.rows.push_back(std::move(row.value));
    }
  }
  return pool;
}

}  // namespace

TaskData load_task(const std::string& name, const std::string& path, int64_t limit, int num_fewshot,
                   const FewshotSource& fewshot) {
  const TaskInfo& info = task_info(name);
  const std::vector<std::string> files = expand_dataset_path(path);
  if (name == "mmlu") {
    TL_CHECK(fewshot.path.empty(), "mmlu: its few-shot examples are the dev files in its PATH; ",
             "it takes no separate few-shot split");
    return load_mmlu(files, limit, num_fewshot < 0 ? 5 : num_fewshot);
  }
  const int k = std::max(num_fewshot, 0);
  TL_CHECK(k == 0 || !fewshot.path.empty(), name, ": --num-fewshot ", k,
           " needs the examples' split (the harness samples them from the training split, "
           "not the evaluated one): pass --fewshot-from ",
           name, "=PATH");
  std::unique_ptr<FewshotSampler> sampler;
  if (k > 0)
    sampler =
        std::make_unique<FewshotSampler>(name, read_pool(name, fewshot.path), k, fewshot.seed);
  TaskData t{name, k, {}};
  for (const std::string& file : files) {
    for (const Row& row : read_rows(file, info.columns)) {
      if (limit > 0 && int64_t(t.docs.size()) >= limit) break;
      Doc d = build_doc(name, row);
      if (sampler) {  // one draw per evaluated document, in order
        const std::string prefix = sampler->next(row.value, &d.shots);
        for (Choice& c : d.choices) c.context = prefix + c.context;
      }
      d.index = int64_t(t.docs.size());
      d.where = row.where();
      t.docs.push_back(std::move(d));
    }
  }
  TL_CHECK(!t.docs.empty(), name, ": '", path, "' holds no rows");
  return t;
}

}  // namespace tl::eval
