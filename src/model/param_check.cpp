#include "model/param_check.h"

#include <algorithm>
#include <cmath>

namespace tl {

std::string describe_non_finite(const std::vector<float>& p, const ParamLayout& layout) {
  const auto bad = std::find_if(p.begin(), p.end(), [](float x) { return !std::isfinite(x); });
  if (bad == p.end()) return "";
  const int64_t at = int64_t(bad - p.begin());
  for (const ParamInfo& info : layout.params())
    if (at >= info.offset && at < info.offset + info.numel())
      return cat("parameter '", info.name, "' holds ", *bad, " at element ", at - info.offset);
  return cat("the padding at flat index ", at, " holds ", *bad);
}

}  // namespace tl
