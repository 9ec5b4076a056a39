#include "observe/report_reference.h"

#include <algorithm>
#include <cstdlib>
#include <map>

#include "core/fs.h"

namespace tl {

namespace {

const char* const kColumns[] = {"step", "tokens", "loss", "val_loss"};
const char* const kAccepted = "accepted: step, tokens, loss, val_loss";

struct Where {  // for messages: reference 'FILE' line N
  const std::string& path;
  size_t line;
  template <class... Args>
  [[noreturn]] void fail_at(const std::string& field, const Args&... why) const {
    fail("reference '", path, "' line ", line, field.empty() ? "" : ", field '" + field + "'", ": ",
         why...);
  }
};

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// A cell's number: NaN for an empty cell, nan or inf (missing); step and tokens must be
// whole and not negative.
double cell_number(const std::string& cell, const std::string& field, const Where& at) {
  if (cell.empty()) return NAN;
  char* end = nullptr;
  const double v = std::strtod(cell.c_str(), &end);
  if (end != cell.c_str() + cell.size()) at.fail_at(field, "'", cell, "' is not a number");
  if (!std::isfinite(v)) return NAN;
  if ((field == "step" || field == "tokens") && (v < 0 || v != std::floor(v)))
    at.fail_at(field, "'", cell, "' is not a whole number >= 0");
  return v;
}

// Adds the row's points: a training point where it has a loss, a validation point where it
// has a val_loss; either must be placed by a step or tokens.
void add_point(LossCurves& c, double step, double tokens, double loss, double val_loss,
               const Where& at) {
  if (std::isnan(loss) && std::isnan(val_loss)) return;
  if (std::isnan(step) && std::isnan(tokens)) at.fail_at("", "a loss without step or tokens");
  if (!std::isnan(loss)) c.train.push_back({step, tokens, loss});
  if (!std::isnan(val_loss)) c.val.push_back({step, tokens, val_loss});
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t next; (next = line.find(sep, at)) != std::string::npos; at = next + 1)
    out.push_back(trim(line.substr(at, next - at)));
  out.push_back(trim(line.substr(at)));
  return out;
}

LossCurves read_csv(const std::string& path, const std::vector<std::string>& lines) {
  LossCurves c;
  std::vector<int> col;  // column -> index into kColumns
  char sep = ',';
  for (size_t n = 0; n < lines.size(); ++n) {
    const Where at{path, n + 1};
    if (trim(lines[n]).empty()) continue;
    if (col.empty()) {  // the header
      if (lines[n].find(',') == std::string::npos && lines[n].find('\t') != std::string::npos)
        sep = '\t';
      bool seen[4] = {};
      for (const std::string& name : split(lines[n], sep)) {
        const auto* it = std::find(std::begin(kColumns), std::end(kColumns), name);
        if (it == std::end(kColumns)) at.fail_at(name, "unknown column (", kAccepted, ")");
        const int k = int(it - std::begin(kColumns));
        if (seen[k]) at.fail_at(name, "a second column of that name");
        seen[k] = true, col.push_back(k);
      }
      if (!seen[0] && !seen[1]) at.fail_at("", "no step or tokens column (", kAccepted, ")");
      if (!seen[2] && !seen[3]) at.fail_at("", "no loss or val_loss column (", kAccepted, ")");
      continue;
    }
    const std::vector<std::string> cells = split(lines[n], sep);
    if (cells.size() != col.size())
      at.fail_at("", cells.size(), " fields where the header has ", col.size());
    double v[4] = {NAN, NAN, NAN, NAN};  // step, tokens, loss, val_loss
    for (size_t i = 0; i < cells.size(); ++i)
      v[col[i]] = cell_number(cells[i], kColumns[col[i]], at);
    add_point(c, v[0], v[1], v[2], v[3], at);
  }
  return c;
}

// Python's json.dumps writes NaN, Infinity and -Infinity for non-finite floats, which JSON
// lacks: they become null (missing) outside strings.
std::string python_nan_to_null(const std::string& line) {
  std::string out;
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < line.size())
        out += line[++i];
      else if (ch == '"')
        in_string = false;
      continue;
    }
    in_string = ch == '"';
    bool replaced = false;
    for (const std::string word : {"NaN", "-Infinity", "Infinity"})
      if (line.compare(i, word.size(), word) == 0) {
        out += "null", i += word.size() - 1, replaced = true;
        break;
      }
    if (!replaced) out += ch;
  }
  return out;
}

double json_number(const json& j, const char* field, const Where& at) {
  if (!j.contains(field) || j[field].is_null()) return NAN;
  if (!j[field].is_number()) at.fail_at(field, j[field].dump(), " is not a number");
  const double v = j[field].get<double>();
  if (!std::isfinite(v)) return NAN;
  if (std::string(field) != "loss" && std::string(field) != "val_loss" &&
      (v < 0 || v != std::floor(v)))
    at.fail_at(field, j[field].dump(), " is not a whole number >= 0");
  return v;
}

LossCurves read_jsonl(const std::string& path, const std::vector<std::string>& lines,
                      bool last_cut_short) {
  LossCurves c;
  for (size_t n = 0; n < lines.size(); ++n) {
    const Where at{path, n + 1};
    if (trim(lines[n]).empty()) continue;
    json j = json::parse(lines[n], nullptr, false);
    if (j.is_discarded()) j = json::parse(python_nan_to_null(lines[n]), nullptr, false);
    if (!j.is_object()) {
      if (n + 1 == lines.size() && last_cut_short) break;
      at.fail_at("", "not a JSON object");
    }
    add_point(c, json_number(j, "step", at), json_number(j, "tokens", at),
              json_number(j, "loss", at), json_number(j, "val_loss", at), at);
  }
  return c;
}

}  // namespace

void fill_val_tokens(LossCurves& c) {
  std::map<double, double> tokens{{0.0, 0.0}};  // step -> tokens; none are seen at step 0
  for (const CurvePoint& p : c.train)
    if (!std::isnan(p.step) && !std::isnan(p.tokens)) tokens[p.step] = p.tokens;
  for (CurvePoint& p : c.val)
    if (std::isnan(p.tokens) && !std::isnan(p.step) && tokens.count(p.step))
      p.tokens = tokens[p.step];
}

LossCurves read_reference(const std::string& path) {
  TL_CHECK(file_exists(path), "reference '", path, "': no such file");
  const std::string text = read_file(path);
  std::vector<std::string> lines;
  size_t at = 0;
  for (size_t next; (next = text.find('\n', at)) != std::string::npos; at = next + 1)
    lines.push_back(text.substr(at, next - at));
  if (at < text.size()) lines.push_back(text.substr(at));
  const size_t first = text.find_first_not_of(" \t\r\n");
  TL_CHECK(first != std::string::npos, "reference '", path, "' is empty");
  LossCurves c =
      text[first] == '{' ? read_jsonl(path, lines, at < text.size()) : read_csv(path, lines);
  TL_CHECK(!c.train.empty() || !c.val.empty(), "reference '", path,
           "' holds no loss or val_loss values");
  fill_val_tokens(c);
  return c;
}

namespace {

bool all_have(const std::vector<CurvePoint>& points, double CurvePoint::*field) {
  return std::all_of(points.begin(), points.end(),
                     [&](const CurvePoint& p) { return !std::isnan(p.*field); });
}

// Pairs the run's and the reference's losses at equal key values (the later point wins
// where a key repeats), in ascending key order.
std::vector<LossMatch> match(const std::vector<CurvePoint>& run, const std::vector<CurvePoint>& ref,
                             double CurvePoint::*key) {
  std::map<double, double> ref_at;
  for (const CurvePoint& p : ref)
    if (!std::isnan(p.*key)) ref_at[p.*key] = p.loss;
  std::map<double, const CurvePoint*> run_at;
  for (const CurvePoint& p : run)
    if (!std::isnan(p.*key) && !std::isnan(p.loss)) run_at[p.*key] = &p;
  std::vector<LossMatch> out;
  for (const auto& [k, p] : run_at)
    if (auto it = ref_at.find(k); it != ref_at.end() && !std::isnan(it->second))
      out.push_back({p->step, p->tokens, p->loss, it->second});
  return out;
}

}  // namespace

Comparison compare_curves(const LossCurves& run, const LossCurves& ref) {
  auto all = [](const LossCurves& c, double CurvePoint::*field) {
    return all_have(c.train, field) && all_have(c.val, field);
  };
  Comparison out;
  for (const CurvePoint& p : run.train)
    if (p.step > 0 && !std::isnan(p.tokens)) out.tokens_per_step = p.tokens / p.step;
  const bool ref_steps = std::any_of(ref.train.begin(), ref.train.end(),
                                     [](const CurvePoint& p) { return !std::isnan(p.step); }) ||
                         std::any_of(ref.val.begin(), ref.val.end(),
                                     [](const CurvePoint& p) { return !std::isnan(p.step); });
  if (all(run, &CurvePoint::tokens) && all(ref, &CurvePoint::tokens) &&
      !std::isnan(out.tokens_per_step))
    out.key = "tokens";
  else if (ref_steps)
    out.key = "step";
  else
    fail(
        "the reference places its losses by tokens only, and this run's metrics do not log "
        "tokens at every point: nothing to align them by");
  const auto key = out.key == "tokens" ? &CurvePoint::tokens : &CurvePoint::step;
  out.train = match(run.train, ref.train, key);
  out.val = match(run.val, ref.val, key);
  return out;
}

std::vector<double> reference_x(const std::vector<CurvePoint>& points, const Comparison& c) {
  std::vector<double> x;
  for (const CurvePoint& p : points)
    x.push_back(c.key == "tokens" ? p.tokens / c.tokens_per_step : p.step);
  return x;
}

ReportTable comparison_table(const std::vector<LossMatch>& m, const std::string& title,
                             const std::string& label, size_t max_rows) {
  ReportTable t{title, {"step", "tokens", "run", label, "rel. diff (%)"}, {}};
  const size_t n = m.size(), rows = std::min(n, max_rows);
  for (size_t r = 0; r < rows; ++r) {
    const size_t i = rows == n ? r : rows == 1 ? n - 1 : r * (n - 1) / (rows - 1);
    const LossMatch& x = m[i];
    t.rows.push_back({format_fixed(x.step, 0), format_fixed(x.tokens, 0), format_fixed(x.run, 4),
                      format_fixed(x.ref, 4), format_fixed(100 * x.rel(), 2)});
  }
  return t;
}

}  // namespace tl
