// FP8 (OCP OFP8 v1.0) conversions and scaling, bit for bit against a reference written here
// from the spec: every code decoded by the spec's formula, and every cast checked against the
// nearest representable value found by exhaustive search (ties to the even code, saturation
// at the largest normal). On a CUDA build, also against CUDA's own host conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/fp8.h"
#include "core/rng.h"
#if TL_WITH_CUDA
#include <cuda_fp8.h>
#endif

using namespace tl;

namespace {

struct Spec {
  Fp8Format f;
  int exp_bits, mant_bits, bias;
  bool ieee_specials;  // E5M2: exponent all ones is inf/NaN; E4M3: only S.1111.111 is NaN
};
const Spec kSpecs[] = {{Fp8Format::E4M3, 4, 3, 7, false}, {Fp8Format::E5M2, 5, 2, 15, true}};

// The spec's value of a code: NaN for NaN patterns, +-inf for E5M2's infinities.
double spec_value(const Spec& s, int code) {
  const int sign = code >> 7, e = (code >> s.mant_bits) & ((1 << s.exp_bits) - 1);
  const int m = code & ((1 << s.mant_bits) - 1);
  const int e_max = (1 << s.exp_bits) - 1;
  double mag;
  if (s.ieee_specials && e == e_max)
    mag = m == 0 ? INFINITY : NAN;
  else if (!s.ieee_specials && e == e_max && m == (1 << s.mant_bits) - 1)
    mag = NAN;
  else if (e == 0)
    mag = std::pow(2.0, 1 - s.bias) * (m / std::pow(2.0, s.mant_bits));
  else
    mag = std::pow(2.0, e - s.bias) * (1.0 + m / std::pow(2.0, s.mant_bits));
  return sign ? -mag : mag;
}

// Nearest finite code to x by exhaustive search; ties go to the even code; beyond the
// largest finite magnitude, that magnitude (saturation); NaN -> 0x7F whatever its sign (a
// NaN pattern of the spec; ours, so CPU and GPU codes agree bit for bit).
int spec_cast(const Spec& s, double x) {
  const int sign = std::signbit(x) ? 0x80 : 0;
  if (std::isnan(x)) return 0x7F;
  const double a = std::fabs(x);
  int best = -1;
  double best_d = INFINITY, largest = 0;
  int largest_code = 0;
  for (int c = 0; c < 128; ++c) {
    const double v = spec_value(s, c);
    if (!std::isfinite(v)) continue;
    if (v > largest) largest = v, largest_code = c;
    const double d = std::fabs(v - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) best = c, best_d = d;
  }
  if (a >= largest) best = largest_code;
  return sign | best;
}

}  // namespace

TEST(Fp8, EveryCodeDecodesAsTheSpecSays) {
  for (const Spec& s : kSpecs)
    for (int c = 0; c < 256; ++c) {
      const double want = spec_value(s, c);
      const float got = fp8_to_f32(uint8_t(c), s.f);
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(got)) << fp8_format_name(s.f) << " code " << c;
      else
        EXPECT_EQ(double(got), want) << fp8_format_name(s.f) << " code " << c;
    }
  EXPECT_EQ(fp8_to_f32(0x7E, Fp8Format::E4M3), 448.0f);
  EXPECT_EQ(fp8_to_f32(0x7B, Fp8Format::E5M2), 57344.0f);
  EXPECT_EQ(fp8_to_f32(0x01, Fp8Format::E4M3), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_to_f32(0x01, Fp8Format::E5M2), std::ldexp(1.0f, -16));
  EXPECT_TRUE(std::isinf(fp8_to_f32(0xFC, Fp8Format::E5M2)));
  EXPECT_EQ(fp8_max(Fp8Format::E4M3), 448.0f);
  EXPECT_EQ(fp8_max(Fp8Format::E5M2), 57344.0f);
}

TEST(Fp8, CastsRoundToNearestEvenAndSaturateBitForBit) {
  for (const Spec& s : kSpecs) {
    std::vector<float> xs = {0.0f,      -0.0f,  INFINITY,
                             -INFINITY, NAN,    -NAN,
                             1e30f,     -1e30f, std::numeric_limits<float>::denorm_min(),
                             1e-30f};
    // Every code, the midpoints between neighbours (the ties), and a hair to each side.
    for (int c = 0; c < 127; ++c) {
      const double v = spec_value(s, c), w = spec_value(s, c + 1);
      if (!std::isfinite(v) || !std::isfinite(w)) continue;
      const float mid = float((v + w) / 2);
      for (float x : {float(v), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)})
        xs.insert(xs.end(), {x, -x});
    }
    // Random magnitudes over the whole range and beyond.
    Rng rng(7);
    for (int i = 0; i < 20000; ++i) {
      const float x = float(std::ldexp(rng.uniform() + 0.5, int(rng.below(50)) - 30));
      xs.insert(xs.end(), {x, -x});
    }
    for (float x : xs) {
      const int want = spec_cast(s, double(x));
      const int got = f32_to_fp8(x, s.f);
      ASSERT_EQ(got, want) << fp8_format_name(s.f) << " cast of " << x;
#if TL_WITH_CUDA
      const __nv_fp8_interpretation_t k = s.f == Fp8Format::E4M3 ? __NV_E4M3 : __NV_E5M2;
      const int cuda = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, k);
      // CUDA's satfinite keeps NaN as its own canonical pattern; compare finite results.
      if (!std::isnan(x)) ASSERT_EQ(got, cuda) << fp8_format_name(s.f) << " CUDA cast of " << x;
#endif
    }
  }
}

TEST(Fp8, EveryCodeSurvivesARoundTrip) {
  for (const Spec& s : kSpecs)
    for (int c = 0; c < 256; ++c) {
      const float v = fp8_to_f32(uint8_t(c), s.f);
      if (!std::isfinite(v)) continue;
      EXPECT_EQ(f32_to_fp8(v, s.f), c) << fp8_format_name(s.f) << " code " << c;
    }
}

TEST(Fp8, CurrentScalingMapsAmaxToTheFormatsMax) {
  for (const Spec& s : kSpecs) {
    for (float amax : {1e-6f, 0.37f, 1.0f, 3.5f, 448.0f, 9000.0f, 1e9f}) {
      const float scale = fp8_scale_for_amax(amax, s.f);
      // The largest element lands on (or one rounding below) the largest normal, never beyond.
      const float scaled = amax * scale;
      EXPECT_LE(scaled, fp8_max(s.f) * (1 + 1e-6f)) << amax;
      EXPECT_GE(scaled, fp8_max(s.f) * (1 - 1e-6f)) << amax;
      const uint8_t code = f32_to_fp8(scaled, s.f);
      EXPECT_EQ(fp8_to_f32(code, s.f), fp8_max(s.f)) << amax;
      // A margin of 2 leaves a factor of 4 of headroom.
      EXPECT_FLOAT_EQ(fp8_scale_for_amax(amax, s.f, 2) * 4, scale);
    }
    EXPECT_EQ(fp8_scale_for_amax(0.0f, s.f), 1.0f);      // an all-zero tensor
    EXPECT_EQ(fp8_scale_for_amax(INFINITY, s.f), 0.0f);  // overflowed: fall back to bf16
    EXPECT_EQ(fp8_scale_for_amax(NAN, s.f), 0.0f);
    // A vanishing tensor: the scale stops at 2^100 instead of overflowing to infinity.
    EXPECT_EQ(fp8_scale_for_amax(1e-38f, s.f), 0x1p100f);
    EXPECT_EQ(fp8_scale_for_amax(1e-45f, s.f), 0x1p100f);
  }
}
