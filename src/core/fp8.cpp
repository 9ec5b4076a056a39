#include "core/fp8.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tl {

namespace {
struct Layout {
  int mant_bits, bias;
  uint8_t max_code;  // the largest finite magnitude's code
};
Layout layout(Fp8Format f) {
  return f == Fp8Format::E4M3 ? Layout{3, 7, 0x7E} : Layout{2, 15, 0x7B};
}
}  // namespace

const char* fp8_format_name(Fp8Format f) { return f == Fp8Format::E4M3 ? "e4m3" : "e5m2"; }

float fp8_max(Fp8Format f) { return f == Fp8Format::E4M3 ? 448.0f : 57344.0f; }

float fp8_to_f32(uint8_t code, Fp8Format f) {
  const Layout l = layout(f);
  const bool neg = code & 0x80;
  const int e = (code & 0x7F) >> l.mant_bits, m = code & ((1 << l.mant_bits) - 1);
  const int e_all = (1 << (7 - l.mant_bits)) - 1;
  float v;
  if (f == Fp8Format::E4M3 && e == e_all && m == (1 << l.mant_bits) - 1)
    v = std::numeric_limits<float>::quiet_NaN();
  else if (f == Fp8Format::E5M2 && e == e_all)
    v = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else if (e == 0)
    v = std::ldexp(float(m), 1 - l.bias - l.mant_bits);  // subnormal: 0.m x 2^(1-bias)
  else
    v = std::ldexp(float(m + (1 << l.mant_bits)), e - l.bias - l.mant_bits);
  return neg ? -v : v;
}

uint8_t f32_to_fp8(float x, Fp8Format f) {
  const Layout l = layout(f);
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return 0x7F;
  const double a = std::fabs(double(x));
  if (a >= double(fp8_max(f))) return sign | l.max_code;  // includes infinity
  // Doubles hold every float exactly and scaling by powers of two is exact, so one
  // nearbyint (ties to even in the default rounding mode) is the only rounding.
  const int min_exp = 1 - l.bias;  // exponent of the smallest normal
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1): a's exponent is e - 1
  const int exp = a == 0.0 ? min_exp : std::max(e - 1, min_exp);
  const double q = std::nearbyint(std::ldexp(a, l.mant_bits - exp));  // in [0, 2^(m+1)]
  // Subnormals (exp == min_exp, q < 2^m) encode as q with exponent field 0; a carry to
  // 2^(m+1) or from subnormal to 2^m lands on the next exponent by plain addition.
  const int code = (exp - min_exp) * (1 << l.mant_bits) + int(q);
  return sign | uint8_t(code > l.max_code ? l.max_code : code);
}

float fp8_scale_for_amax(float amax, Fp8Format f, int margin) {
  if (!std::isfinite(amax)) return 0.0f;
  if (amax <= 0.0f) return 1.0f;
  // In float, as the GPU computes it (a correctly rounded division): the same bits there.
  return std::min(std::ldexp(fp8_max(f) / amax, -margin), kFp8MaxScale);
}

}  // namespace tl
