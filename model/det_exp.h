// det_expf: an exp that every IEEE machine computes to the same bits, for the
// model's own kernels (the LSTM's pointwise pass, the step kernels). Torch-free.
#pragma once

#include <cstdint>

namespace shazip::model {

// exp for the gates: range reduction to [-ln2/2, ln2/2] and a degree-6
// polynomial, float arithmetic in a fixed order; relative error < 2e-7.
// Branch-free and without floor() or libm, so loops over it vectorise with
// plain SSE2, and every IEEE machine computes the same bits.
inline float det_expf(float x) {
  x = x < 88.0f ? x : 88.0f;   // NaN compares false: becomes 88, saturating
  x = x > -86.0f ? x : -86.0f;  // the gates either way
  // k = round(x / ln2) by the 1.5 * 2^23 trick (exact in round-to-nearest).
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float k = shifted - 12582912.0f;
  // r = x - k * ln2 in two parts (Cody-Waite) so that r is accurate.
  const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187045e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^k from its exponent bits (k in [-124, 127]).
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// sigmoid and tanh through det_expf: the LSTM cell, the attention's gates and
// the Boom's activation, in the step and the training kernels alike.
inline float det_sigmoid(float x) { return 1.0f / (1.0f + det_expf(-x)); }
inline float det_tanh(float x) { return 2.0f / (1.0f + det_expf(-2.0f * x)) - 1.0f; }

}  // namespace shazip::model
