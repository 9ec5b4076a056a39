// A small table of figures that `tinyllama report` prints to stdout and shows on its page
// (zero-shot accuracy by step, a run's losses against a reference run's).
#pragma once
#include <string>
#include <vector>

namespace tl {

struct ReportTable {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // formatted cells, one per header column
};

// The title on its own line, then the header and the rows in right-aligned columns two
// spaces apart, every line ending in '\n'.
std::string format_table(const ReportTable& t);

// v with `decimals` digits after the point; "-" for NaN or infinity.
std::string format_fixed(double v, int decimals);

}  // namespace tl
