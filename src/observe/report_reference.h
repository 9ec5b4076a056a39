// `tinyllama report --reference FILE`: another run's loss curves (a tinyllama metrics.jsonl,
// bench/pytorch_trainer.py's jsonl, or a CSV), read, aligned with the run's own and compared
// point by point.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "core/json_reader.h"
#include "observe/report_table.h"

namespace tl {

// One logged loss (nats/token), at an optimizer step and/or after a number of training
// tokens; NaN where the source does not say.
struct CurvePoint {
  double step = NAN, tokens = NAN, loss = NAN;
};

struct LossCurves {
  std::vector<CurvePoint> train, val;  // in file order
};

// Reads FILE: jsonl when its first non-blank character is '{', else CSV.
// - CSV: a header line naming its columns, each one of step, tokens, loss, val_loss (at
//   least one of step and tokens, at least one of loss and val_loss); cells separated by
//   commas (or tabs, when the header has no comma). An empty cell, nan or inf is a missing
//   value; a row with a loss is a training point, with a val_loss a validation point.
// - jsonl: one object a line; an object with a "loss" is a training point, with a "val_loss"
//   a validation point, placed by its "step" and/or "tokens"; other keys and objects (events,
//   eval tasks, lr...) are passed over; null (and Python's NaN) is a missing value. A last
//   line without its newline that is not JSON (a run cut short) is passed over.
// Then validation points without tokens take those of the training point of the same step.
// Throws "reference 'FILE' line N, field 'F': ..." for an unknown column, a value that is
// not a (whole, for step and tokens) number, a loss with neither step nor tokens; and names
// the file when it is missing or holds no loss.
LossCurves read_reference(const std::string& path);

// A validation point without tokens takes the training point's at its step (0 at step 0).
void fill_val_tokens(LossCurves& c);

struct LossMatch {
  double step = NAN, tokens = NAN;                  // the run's
  double run = NAN, ref = NAN;                      // losses, nats/token
  double rel() const { return (run - ref) / ref; }  // relative difference, run vs reference
};

struct Comparison {
  std::string key;                    // "tokens" when every point on both sides has tokens,
                                      // else "step"
  double tokens_per_step = NAN;       // the run's, to draw tokens on its step axis
  std::vector<LossMatch> train, val;  // at each key value both sides have a loss, ascending
};

// Throws when no key is shared: the reference places points only by tokens and the run
// does not log them.
Comparison compare_curves(const LossCurves& run, const LossCurves& ref);

// The reference's points on the run's step axis: their step, or (key "tokens") their
// tokens over the run's tokens per step.
std::vector<double> reference_x(const std::vector<CurvePoint>& points, const Comparison& c);

// step, tokens, the run's loss, the reference's, and the relative difference in %, for at
// most max_rows matches spread evenly over them (the last always among them).
ReportTable comparison_table(const std::vector<LossMatch>& m, const std::string& title,
                             const std::string& label, size_t max_rows);

}  // namespace tl
