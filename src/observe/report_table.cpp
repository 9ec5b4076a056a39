#include "observe/report_table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tl {

std::string format_table(const ReportTable& t) {
  std::vector<size_t> width(t.header.size());
  for (size_t c = 0; c < t.header.size(); ++c) {
    width[c] = t.header[c].size();
    for (const auto& row : t.rows)
      if (c < row.size()) width[c] = std::max(width[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const std::string pad(width[c] - cell.size(), ' ');
      out += c ? "  " : "";
      out += pad + cell;
    }
    return out + "\n";
  };
  std::string out = t.title + "\n" + line(t.header);
  for (const auto& row : t.rows) out += line(row);
  return out;
}

std::string format_fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace tl
