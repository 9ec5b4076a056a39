// Checks of a flat parameter array against its layout.
#pragma once
#include <string>
#include <vector>

#include "model/param_layout.h"

namespace tl {

// "" when every value of the flat parameters `p` (ParamLayout order) is finite; else where
// the first NaN/Inf is: "parameter 'layers.1.w_down' holds nan at element 7".
std::string describe_non_finite(const std::vector<float>& p, const ParamLayout& layout);

}  // namespace tl
