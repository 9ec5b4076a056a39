// OCP 8-bit floating point (OFP8 v1.0) on the host: the two formats FP8 training uses, their
// conversions, and per-tensor scaling. The reference the GPU casts are tested against.
//   E4M3: bias 7, 3 mantissa bits, no infinities, NaN = S.1111.111, largest normal 448
//         (forward tensors: weights and activations).
//   E5M2: bias 15, 2 mantissa bits, IEEE-like (S.11111.00 infinity, .01-.11 NaN), largest
//         normal 57344 (gradients: more range, less precision).
#pragma once
#include <cstdint>

namespace tl {

enum class Fp8Format : uint8_t { E4M3, E5M2 };

const char* fp8_format_name(Fp8Format f);
float fp8_max(Fp8Format f);  // largest finite value: 448 or 57344
float fp8_to_f32(uint8_t code, Fp8Format f);

// Round to nearest, ties to even, saturating ("satfinite", what training casts use): a finite
// value or an infinity beyond the largest normal becomes +-fp8_max; every NaN becomes the
// positive NaN code 0x7F (what the GPU gives: its products make canonical, positive NaNs);
// -0 stays -0.
uint8_t f32_to_fp8(float x, Fp8Format f);

// Current (per-tensor) scaling: the factor s with amax * s = fp8_max(f) / 2^margin, so the
// scaled tensor uses the format's range; the GEMM multiplies its result by 1/s. An amax of 0
// (an all-zero tensor) gives 1; a non-finite amax (an overflowed tensor) gives 0, which
// callers treat as "do not use FP8 for this product"; s is at most kFp8MaxScale (2^100: an
// amax below ~4e-28 is scaled by that, its 1/s a normal float).
constexpr float kFp8MaxScale = 0x1p100f;
float fp8_scale_for_amax(float amax, Fp8Format f, int margin = 0);

}  // namespace tl
