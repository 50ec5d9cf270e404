// LSTM layer with hand-written forward and backward passes.
//
// LibTorch's CPU LSTM runs a dozen small ops per time step, each recorded for
// autograd; at the sizes shazip uses (d ~ 128, 32 streams) that overhead is
// most of the training time. Here a time step is one GEMM (h @ W_hh^T added to
// the input projections that are computed for the whole segment at once) and
// one pointwise pass in plain C++; the backward pass is one GEMM and one
// pointwise pass per step, with the weight gradients as three large GEMMs at
// the end. The pointwise code uses its own exp (det_expf) so that results do
// not depend on which libm variant the CPU selects.
//
// Gate order i, f, g, o as in PyTorch, so the weights are interchangeable with
// torch::nn::LSTM's.
#pragma once

#include <ATen/ATen.h>

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

// One step for a batch: gates (B, 4d) pre-activations (already including both
// biases and both projections), c_prev (B, d). Writes c, h (B, d). If
// `saved_acts` / `saved_tanh_c` are non-null, also writes the activated gates
// (B, 4d) and tanh(c) (B, d) for the backward pass. All arrays contiguous.
void lstm_pointwise(const float* gates, const float* c_prev, float* c, float* h,
                    float* saved_acts, float* saved_tanh_c, int64_t batch, int64_t d);

// One inference step: returns (h, c) for x (B, d), states (B, d).
std::pair<at::Tensor, at::Tensor> lstm_step(const at::Tensor& x, const at::Tensor& h,
                                            const at::Tensor& c, const at::Tensor& w_ih,
                                            const at::Tensor& w_hh, const at::Tensor& b_ih,
                                            const at::Tensor& b_hh);

// Whole layer over a segment with autograd: x (B, T, d) batch-first, initial
// states (B, d) treated as constants. Returns the hidden states (B, T, d).
at::Tensor lstm_layer(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                      const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& b_ih,
                      const at::Tensor& b_hh);

}  // namespace shazip::model
