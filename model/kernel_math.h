// The model's elementwise arithmetic, defined once for the CPU kernels
// (model/step_kernels.cpp, model/train_kernels.cpp) and the CUDA kernels
// (model/cuda/), so that a GPU computes the CPU's bits: every function is a
// fixed sequence of IEEE single-precision operations, each rounded to
// nearest, with no contraction into fused multiply-adds except where fma_rn
// asks for one. Torch-free.
//
// The host side needs -ffp-contract=off (CMakeLists.txt), the device side
// nvcc's -fmad=false and its accurate division and square root (the default
// without --use_fast_math, which this header refuses).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SHAZIP_HD __host__ __device__ __forceinline__
#else
#define SHAZIP_HD inline
#endif

#if defined(__CUDACC__) && defined(__USE_FAST_MATH__)
#error "--use_fast_math changes the model's arithmetic: archives would not decode"
#endif

namespace shazip::model {

// a * b + c rounded once.
SHAZIP_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fmaf(a, b, c);
#endif
}

// sqrt(x), correctly rounded (the Adam step's).
SHAZIP_HD float sqrt_rn(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return std::sqrt(x);
#endif
}

// 1 / sqrt(x), both rounded (LayerNorm's reciprocal deviation).
SHAZIP_HD float rsqrt_rn(float x) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(1.0f, __fsqrt_rn(x));
#else
  return 1.0f / std::sqrt(x);
#endif
}

// exp for the gates: range reduction to [-ln2/2, ln2/2] and a degree-6
// polynomial, float arithmetic in a fixed order; relative error < 2e-7.
// Branch-free and without floor() or libm, so loops over it vectorise with
// plain SSE2, and every IEEE machine computes the same bits.
SHAZIP_HD float det_expf(float x) {
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
#if defined(__CUDA_ARCH__)
  const float scale = __int_as_float(bits);
#else
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
#endif
  return p * scale;
}

// sigmoid and tanh through det_expf: the LSTM cell, the attention's gates and
// the Boom's activation, in the step and the training kernels alike.
SHAZIP_HD float det_sigmoid(float x) { return 1.0f / (1.0f + det_expf(-x)); }
SHAZIP_HD float det_tanh(float x) { return 2.0f / (1.0f + det_expf(-2.0f * x)) - 1.0f; }

// The Boom's activation is x * sigmoid(kGeluScale * x) (the reference's GELU
// approximation).
constexpr float kGeluScale = 1.702f;
SHAZIP_HD float det_gelu(float x) { return x * det_sigmoid(x * kGeluScale); }

// dot8 and sum8 (model/step_kernels.h) keep eight running sums, lane l
// taking elements l, l + 8, l + 16, ... in order; this is their fixed
// reduction: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
constexpr int kLanes = 8;
SHAZIP_HD float reduce_lanes(const float* l) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

// One element of the LSTM cell from its four gate pre-activations (i, f, g, o)
// and the previous cell: the activated gates, the new cell c = f * c_prev +
// i * g, tanh(c), and h = o * tanh(c).
struct LstmCell {
  float i, f, g, o, c, tanh_c, h;
};
SHAZIP_HD LstmCell lstm_cell(float pre_i, float pre_f, float pre_g, float pre_o, float c_prev) {
  LstmCell r;
  r.i = det_sigmoid(pre_i);
  r.f = det_sigmoid(pre_f);
  r.g = det_tanh(pre_g);
  r.o = det_sigmoid(pre_o);
  r.c = r.f * c_prev + r.i * r.g;
  r.tanh_c = det_tanh(r.c);
  r.h = r.o * r.tanh_c;
  return r;
}

}  // namespace shazip::model
