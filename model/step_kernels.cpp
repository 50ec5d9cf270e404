// The step path's CPU kernels; see step_kernels.h for the sums they define.
#include "model/step_kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "coder/assert.h"
#include "model/kernel_math.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace shazip::model::step {
namespace {

using model::kLanes;
using model::reduce_lanes;

// --- plain C++: the definitions -------------------------------------------

// Adds the products of a[0..n) and b[0..n) to the lanes, element i to lane
// i mod 8 (n a multiple of 8 when more products follow).
inline void dot8_lanes_scalar(const float* a, const float* b, int64_t n, float* lanes) {
  for (int64_t i = 0; i < n; ++i) lanes[i % kLanes] = fma_rn(a[i], b[i], lanes[i % kLanes]);
}

float dot8_scalar(const float* a, const float* b, int64_t n) {
  float lanes[kLanes] = {};
  dot8_lanes_scalar(a, b, n, lanes);
  return reduce_lanes(lanes);
}

float sum8_scalar(const float* a, int64_t n) {
  float lanes[kLanes] = {};
  for (int64_t i = 0; i < n; ++i) lanes[i % kLanes] += a[i];
  return reduce_lanes(lanes);
}

// `segments` pairs (x, w) of rows of length k, their products in one dot8.
void linear_scalar(const float* const* xs, const float* const* ws, int segments, int64_t rows, int64_t k,
                   int64_t n, const float* bias, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      float lanes[kLanes] = {};
      for (int s = 0; s < segments; ++s) dot8_lanes_scalar(xs[s] + r * k, ws[s] + j * k, k, lanes);
      const float v = reduce_lanes(lanes);
      y[r * n + j] = bias ? v + bias[j] : v;
    }
  }
}

// linear_tn's and col_sum8's definitions: linear's and sum8's lanes over the
// columns, zero-padded to rows_pad rows.
void linear_tn_scalar(const float* a, const float* b, int64_t rows, int64_t rows_pad, int64_t n, int64_t k,
                      float* y) {
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < k; ++i) {
      float lanes[kLanes] = {};
      for (int64_t p = 0; p < rows_pad; ++p) {
        const bool in = p < rows;
        lanes[p % kLanes] = fma_rn(in ? a[p * n + j] : 0.0f, in ? b[p * k + i] : 0.0f, lanes[p % kLanes]);
      }
      y[j * k + i] = reduce_lanes(lanes);
    }
  }
}

// linear_nn's definition: linear's lanes over column i of w.
void linear_nn_scalar(const float* x, int64_t rows, int64_t n, const float* w, int64_t k, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      float lanes[kLanes] = {};
      for (int64_t j = 0; j < n; ++j) lanes[j % kLanes] = fma_rn(x[r * n + j], w[j * k + i], lanes[j % kLanes]);
      y[r * k + i] = reduce_lanes(lanes);
    }
  }
}

void col_sum8_scalar(const float* a, int64_t rows, int64_t rows_pad, int64_t n, float* y) {
  for (int64_t j = 0; j < n; ++j) {
    float lanes[kLanes] = {};
    for (int64_t p = 0; p < rows_pad; ++p) lanes[p % kLanes] += p < rows ? a[p * n + j] : 0.0f;
    y[j] = reduce_lanes(lanes);
  }
}

// Element j of row b of the LSTM's pointwise pass (step_kernels.h).
inline void lstm_element(const float* g, const float* c_prev, float* c, float* h, float* a, float* saved_tanh_c,
                         int64_t d, int64_t j) {
  const LstmCell r = lstm_cell(g[j], g[d + j], g[2 * d + j], g[3 * d + j], c_prev[j]);
  c[j] = r.c;
  h[j] = r.h;
  if (a) {
    a[j] = r.i;
    a[d + j] = r.f;
    a[2 * d + j] = r.g;
    a[3 * d + j] = r.o;
    saved_tanh_c[j] = r.tanh_c;
  }
}

void weighted_sum_scalar(const float* weights, int64_t count, const float* rows, int64_t n, float* y) {
  std::fill(y, y + n, 0.0f);
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t j = 0; j < n; ++j) y[j] = fma_rn(weights[i], rows[i * n + j], y[j]);
  }
}

// --- AVX2 + FMA: the same operations, eight lanes at a time ----------------

#if defined(__x86_64__)
#define SHAZIP_AVX2 __attribute__((target("avx2,fma")))

// The sums of four accumulators' lanes in the fixed order, as [a, b, c, d]:
// s = low half + high half = (l0 + l4, l1 + l5, l2 + l6, l3 + l7), then
// (s0 + s2) + (s1 + s3).
SHAZIP_AVX2 inline __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
  const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
  // [a0 a1 c0 c1 | b0 b1 d0 d1] + [a2 a3 c2 c3 | b2 b3 d2 d3]
  const __m256 u = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  // [a c a c | b d b d]
  const __m256 v = _mm256_add_ps(_mm256_shuffle_ps(u, u, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(u, u, _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm_unpacklo_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

// The (one or two) segments' matrices of k-float rows, each from row r on:
// the pointers the blocks take.
struct SegmentRows {
  const float* at[2];
};
inline SegmentRows rows_from(const float* const* m, int segments, int64_t r, int64_t k) {
  return {{m[0] + r * k, segments > 1 ? m[1] + r * k : nullptr}};
}

// Rows [0, R) of x times rows [0, C) of w, over every segment: R * C dot8s
// in registers (up to 12 independent chains for the FMA latency), then
// reduced four at a time. Unrolled fully, or GCC keeps the accumulators in
// memory. 3 x 4 uses 12 accumulators, 3 row vectors and 1 weight vector: all
// 16 registers, and 7 loads per 12 multiply-adds (4 x 2 needed 6 per 8, and
// left the FMA units waiting on 8 chains: 1.5x slower on 128-row products).
template <int R, int C>
SHAZIP_AVX2 inline void linear_block_avx2(const float* const* xs, const float* const* ws, int segments, int64_t k,
                                          int64_t n, const float* bias, float* y) {
  static_assert(R * C % 4 == 0 && R * C <= 12, "accumulators reduced four at a time");
  __m256 acc[R * C];
#pragma GCC unroll 12
  for (int i = 0; i < R * C; ++i) acc[i] = _mm256_setzero_ps();
  for (int s = 0; s < segments; ++s) {
    const float* x = xs[s];
    const float* w = ws[s];
    for (int64_t i = 0; i < k; i += kLanes) {
      __m256 xv[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x + r * k + i);
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) {
        const __m256 wv = _mm256_loadu_ps(w + c * k + i);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r * C + c] = _mm256_fmadd_ps(xv[r], wv, acc[r * C + c]);
      }
    }
  }
  alignas(16) float out[R * C];
#pragma GCC unroll 3
  for (int i = 0; i < R * C; i += 4) _mm_store_ps(out + i, reduce4(acc[i], acc[i + 1], acc[i + 2], acc[i + 3]));
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) y[r * n + c] = bias ? out[r * C + c] + bias[c] : out[r * C + c];
  }
}

// R rows of x against the 8 weight rows from j: C at a time.
template <int R, int C>
SHAZIP_AVX2 void linear_tile_avx2(const float* const* xs, const float* const* ws, int segments, int64_t k,
                                  int64_t n, const float* bias, float* y) {
  for (int c0 = 0; c0 < kLanes; c0 += C) {
    linear_block_avx2<R, C>(xs, rows_from(ws, segments, c0, k).at, segments, k, n, bias ? bias + c0 : nullptr, y + c0);
  }
}

// Tiles of 8 weight rows outside, rows of x inside: each tile (8 x k floats)
// is read from memory once per call and then from L1 for every row of x (the
// larger presets' matrices do not fit in L2).
SHAZIP_AVX2 void linear_avx2(const float* const* xs, const float* const* ws, int segments, int64_t rows, int64_t k,
                             int64_t n, const float* bias, float* y) {
  for (int64_t j = 0; j < n; j += kLanes) {
    const SegmentRows wj = rows_from(ws, segments, j, k);
    const float* bj = bias ? bias + j : nullptr;
    int64_t r = 0;
    for (; r + 3 <= rows; r += 3) {
      linear_tile_avx2<3, 4>(rows_from(xs, segments, r, k).at, wj.at, segments, k, n, bj, y + r * n + j);
    }
    const SegmentRows xr = rows_from(xs, segments, r, k);
    switch (rows - r) {
      case 2: linear_tile_avx2<2, 4>(xr.at, wj.at, segments, k, n, bj, y + r * n + j); break;
      case 1: linear_tile_avx2<1, 8>(xr.at, wj.at, segments, k, n, bj, y + r * n + j); break;
      default: break;
    }
  }
}

// linear_tn: columns [0, 8 * C) of row j of y, vectors over the columns.
// Lane l of every output is a chain over rows p = l, l + 8, ..., then one
// more addition of zero where the padding reaches that lane (linear's
// fma(0, 0, acc) on the padded transposes: -0 becomes +0, as there).
template <int C>
struct ProductLane {
  const float *a, *b;  // column j of a, column i of b
  int64_t rows, rows_pad, n, k;
  SHAZIP_AVX2 void operator()(int l, __m256* acc) const {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    int64_t p = l;
    for (; p < rows; p += kLanes) {
      const __m256 av = _mm256_broadcast_ss(a + p * n);
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[c] = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + p * k + kLanes * c), acc[c]);
    }
    if (p < rows_pad) {
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[c] = _mm256_add_ps(acc[c], _mm256_setzero_ps());
    }
  }
};

// col_sum8: columns [0, 8) from j, as sum8's lanes (additions from zero).
struct SumLane {
  const float* a;  // column j
  int64_t rows, rows_pad, n;
  SHAZIP_AVX2 void operator()(int l, __m256* acc) const {
    acc[0] = _mm256_setzero_ps();
    int64_t p = l;
    for (; p < rows; p += kLanes) acc[0] = _mm256_add_ps(acc[0], _mm256_loadu_ps(a + p * n));
    if (p < rows_pad) acc[0] = _mm256_add_ps(acc[0], _mm256_setzero_ps());
  }
};

// Stores the lanes of C vectors of outputs added in reduce_lanes' order,
// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), lane(l, acc) computing
// lane l: 4 C vectors live at most.
template <int C, class Lane>
SHAZIP_AVX2 inline void reduce_lane_vectors(const Lane& lane, float* y) {
  __m256 u[C], v[C], t0[C], t1[C];
  lane(0, u);
  lane(4, v);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) t0[c] = _mm256_add_ps(u[c], v[c]);
  lane(2, u);
  lane(6, v);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) t0[c] = _mm256_add_ps(t0[c], _mm256_add_ps(u[c], v[c]));
  lane(1, u);
  lane(5, v);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) t1[c] = _mm256_add_ps(u[c], v[c]);
  lane(3, u);
  lane(7, v);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    _mm256_storeu_ps(y + kLanes * c, _mm256_add_ps(t0[c], _mm256_add_ps(t1[c], _mm256_add_ps(u[c], v[c]))));
  }
}

SHAZIP_AVX2 void linear_tn_avx2(const float* a, const float* b, int64_t rows, int64_t rows_pad, int64_t n,
                                int64_t k, float* y) {
  for (int64_t j = 0; j < n; ++j) {
    int64_t i = 0;
    for (; i + 3 * kLanes <= k; i += 3 * kLanes) {
      reduce_lane_vectors<3>(ProductLane<3>{a + j, b + i, rows, rows_pad, n, k}, y + j * k + i);
    }
    for (; i < k; i += kLanes) {
      reduce_lane_vectors<1>(ProductLane<1>{a + j, b + i, rows, rows_pad, n, k}, y + j * k + i);
    }
  }
}

SHAZIP_AVX2 void col_sum8_avx2(const float* a, int64_t rows, int64_t rows_pad, int64_t n, float* y) {
  for (int64_t j = 0; j < n; j += kLanes) reduce_lane_vectors<1>(SumLane{a + j, rows, rows_pad, n}, y + j);
}

// Columns [0, 8 * C) of the weighted sum: one chain per column, C vectors of
// them at once.
template <int C>
SHAZIP_AVX2 inline void weighted_sum_block_avx2(const float* weights, int64_t count, const float* rows, int64_t n,
                                                float* y) {
  __m256 acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < count; ++i) {
    const __m256 wv = _mm256_broadcast_ss(weights + i);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(rows + i * n + kLanes * c), acc[c]);
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + kLanes * c, acc[c]);
}

SHAZIP_AVX2 void weighted_sum_avx2(const float* weights, int64_t count, const float* rows, int64_t n, float* y) {
  int64_t j = 0;
  for (; j + 8 * kLanes <= n; j += 8 * kLanes) weighted_sum_block_avx2<8>(weights, count, rows + j, n, y + j);
  for (; j < n; j += kLanes) weighted_sum_block_avx2<1>(weights, count, rows + j, n, y + j);
}

SHAZIP_AVX2 float sum8_avx2(const float* a, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = _mm256_add_ps(acc, _mm256_loadu_ps(a + i));
  alignas(32) float lanes[kLanes];
  _mm256_store_ps(lanes, acc);
  for (; i < n; ++i) lanes[i % kLanes] += a[i];
  return reduce_lanes(lanes);
}

SHAZIP_AVX2 float dot8_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  alignas(32) float lanes[kLanes];
  _mm256_store_ps(lanes, acc);
  for (; i < n; ++i) lanes[i % kLanes] = fma_rn(a[i], b[i], lanes[i % kLanes]);
  return reduce_lanes(lanes);
}

// dot8 of four rows with one vector at a time: four independent chains.
SHAZIP_AVX2 void dot8_rows_avx2(const float* rows, int64_t count, int64_t stride, const float* v, int64_t n,
                                float* out) {
  int64_t r = 0;
  if (n % kLanes == 0) {
    for (; r + 4 <= count; r += 4) {
      const float* a = rows + r * stride;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
      for (int64_t i = 0; i < n; i += kLanes) {
        const __m256 vv = _mm256_loadu_ps(v + i);
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), vv, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + stride + i), vv, acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 2 * stride + i), vv, acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + 3 * stride + i), vv, acc3);
      }
      _mm_storeu_ps(out + r, reduce4(acc0, acc1, acc2, acc3));
    }
  }
  for (; r < count; ++r) out[r] = dot8_avx2(rows + r * stride, v, n);
}

// det_expf on eight floats: the same IEEE operations in the same order (no
// FMA here: -ffp-contract=off), so every lane equals the scalar function.
SHAZIP_AVX2 inline __m256 splat(float v) { return _mm256_set1_ps(v); }

SHAZIP_AVX2 inline __m256 det_expf8(__m256 x) {
  x = _mm256_min_ps(x, splat(88.0f));  // NaN gives the second operand, 88, as det_expf
  x = _mm256_max_ps(x, splat(-86.0f));
  const __m256 k = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, splat(1.44269504088896341f)), splat(12582912.0f)),
                                 splat(12582912.0f));
  const __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(k, splat(0.693145751953125f))),
                                 _mm256_mul_ps(k, splat(1.428606765330187045e-06f)));
  __m256 p = splat(1.0f / 720.0f);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), splat(1.0f / 120.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), splat(1.0f / 24.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), splat(1.0f / 6.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), splat(0.5f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), splat(1.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), splat(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

SHAZIP_AVX2 void gelu_avx2(float* x, int64_t n) {
  const __m256 scale = _mm256_set1_ps(kGeluScale);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 e = det_expf8(_mm256_xor_ps(_mm256_mul_ps(v, scale), sign));
    _mm256_storeu_ps(x + i, _mm256_mul_ps(v, _mm256_div_ps(one, _mm256_add_ps(one, e))));
  }
  for (; i < n; ++i) x[i] = det_gelu(x[i]);
}

SHAZIP_AVX2 void sigmoid_avx2(const float* x, int64_t n, float scale, float* y) {
  const __m256 sv = _mm256_set1_ps(scale);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 e = det_expf8(_mm256_xor_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), sign));
    _mm256_storeu_ps(y + i, _mm256_div_ps(one, _mm256_add_ps(one, e)));
  }
  for (; i < n; ++i) y[i] = det_sigmoid(x[i] * scale);
}

// x[i] = det_expf(x[i] - m).
SHAZIP_AVX2 void exp_shifted_avx2(float* x, int64_t n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(x + i, det_expf8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv)));
  for (; i < n; ++i) x[i] = det_expf(x[i] - m);
}

// Elementwise passes of layer_norm and softmax, eight at a time: the same
// IEEE operations on each element in the same order (no FMA).
SHAZIP_AVX2 void subtract_avx2(const float* x, int64_t n, float v, float* y) {
  const __m256 vv = _mm256_set1_ps(v);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), vv));
  for (; i < n; ++i) y[i] = x[i] - v;
}

// y = y * s * w + b, as ((y * s) * w) + b.
SHAZIP_AVX2 void scale_shift_avx2(float* y, int64_t n, float s, const float* w, const float* b) {
  const __m256 sv = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(y + i), sv), _mm256_loadu_ps(w + i));
    _mm256_storeu_ps(y + i, _mm256_add_ps(t, _mm256_loadu_ps(b + i)));
  }
  for (; i < n; ++i) y[i] = y[i] * s * w[i] + b[i];
}

SHAZIP_AVX2 void divide_avx2(float* x, int64_t n, float s) {
  const __m256 sv = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), sv));
  for (; i < n; ++i) x[i] = x[i] / s;
}

SHAZIP_AVX2 inline __m256 sigmoid8(__m256 x) {
  return _mm256_div_ps(splat(1.0f), _mm256_add_ps(splat(1.0f), det_expf8(_mm256_xor_ps(x, splat(-0.0f)))));
}

SHAZIP_AVX2 inline __m256 tanh8(__m256 x) {
  const __m256 e = det_expf8(_mm256_mul_ps(splat(-2.0f), x));
  return _mm256_sub_ps(_mm256_div_ps(splat(2.0f), _mm256_add_ps(splat(1.0f), e)), splat(1.0f));
}

SHAZIP_AVX2 void lstm_pointwise_avx2(const float* gates, const float* c_prev, float* c, float* h, float* saved_acts,
                                     float* saved_tanh_c, int64_t batch, int64_t d) {
  for (int64_t b = 0; b < batch; ++b) {
    const float* g = gates + b * 4 * d;
    float* a = saved_acts ? saved_acts + b * 4 * d : nullptr;
    float* tcs = saved_tanh_c ? saved_tanh_c + b * d : nullptr;
    int64_t j = 0;
    for (; j + kLanes <= d; j += kLanes) {
      const __m256 ig = sigmoid8(_mm256_loadu_ps(g + j));
      const __m256 fg = sigmoid8(_mm256_loadu_ps(g + d + j));
      const __m256 gg = tanh8(_mm256_loadu_ps(g + 2 * d + j));
      const __m256 og = sigmoid8(_mm256_loadu_ps(g + 3 * d + j));
      const __m256 cn =
          _mm256_add_ps(_mm256_mul_ps(fg, _mm256_loadu_ps(c_prev + b * d + j)), _mm256_mul_ps(ig, gg));
      const __m256 tc = tanh8(cn);
      _mm256_storeu_ps(c + b * d + j, cn);
      _mm256_storeu_ps(h + b * d + j, _mm256_mul_ps(og, tc));
      if (a) {
        _mm256_storeu_ps(a + j, ig);
        _mm256_storeu_ps(a + d + j, fg);
        _mm256_storeu_ps(a + 2 * d + j, gg);
        _mm256_storeu_ps(a + 3 * d + j, og);
        _mm256_storeu_ps(tcs + j, tc);
      }
    }
    for (; j < d; ++j) lstm_element(g, c_prev + b * d, c + b * d, h + b * d, a, tcs, d, j);
  }
}

// --- AVX-512: linear's products, two rows per register ---------------------
//
// The same lanes as linear_block_avx2: a zmm holds the eight lanes of output
// (r, c) in its low half and those of (r + 1, c) in its high half, so every
// lane runs the FMA chain over k that the AVX2 kernel runs, and the halves
// are reduced by reduce4. The bits are the AVX2 kernel's; only the number of
// instructions changes (half the multiply-adds, one insert per row pair).
#define SHAZIP_AVX512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
// All lanes, for the zero-masking forms (GCC 12's unmasked ones read an
// undefined vector and warn).
constexpr __mmask16 kAll16 = 0xFFFF;
constexpr __mmask8 kAll8 = 0xFF;

// Rows [0, R) of x (R even) times the 8 weight rows of a tile.
template <int R>
SHAZIP_AVX512 inline void linear_block_avx512(const float* const* xs, const float* const* ws, int segments,
                                              int64_t k, int64_t n, const float* bias, float* y) {
  static_assert(R % 2 == 0 && R <= 6, "row pairs; 3 x 8 accumulators at most");
  constexpr int kPairs = R / 2;
  __m512 acc[kPairs * kLanes];
#pragma GCC unroll 24
  for (int i = 0; i < kPairs * kLanes; ++i) acc[i] = _mm512_setzero_ps();
  for (int s = 0; s < segments; ++s) {
    const float* x = xs[s];
    const float* w = ws[s];
    for (int64_t i = 0; i < k; i += kLanes) {
      __m512 xv[kPairs];
#pragma GCC unroll 3
      for (int p = 0; p < kPairs; ++p) {
        xv[p] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(x + 2 * p * k + i)),
                                   _mm256_loadu_ps(x + (2 * p + 1) * k + i), 1);
      }
#pragma GCC unroll 8
      for (int c = 0; c < kLanes; ++c) {
        const __m512 wv = _mm512_maskz_broadcast_f32x8(kAll16, _mm256_loadu_ps(w + c * k + i));
#pragma GCC unroll 3
        for (int p = 0; p < kPairs; ++p) acc[p * kLanes + c] = _mm512_fmadd_ps(xv[p], wv, acc[p * kLanes + c]);
      }
    }
  }
#pragma GCC unroll 3
  for (int p = 0; p < kPairs; ++p) {
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      float* yr = y + (2 * p + half) * n;
#pragma GCC unroll 2
      for (int c = 0; c < kLanes; c += 4) {
        __m256 v[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
          const __m512 a = acc[p * kLanes + c + q];
          v[q] = half ? _mm512_maskz_extractf32x8_ps(kAll8, a, 1) : _mm512_maskz_extractf32x8_ps(kAll8, a, 0);
        }
        alignas(16) float out[4];
        _mm_store_ps(out, reduce4(v[0], v[1], v[2], v[3]));
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) yr[c + q] = bias ? out[q] + bias[c + q] : out[q];
      }
    }
  }
}

// linear_avx2's tiles, rows 6 at a time; the remainder as 4, 2 and the AVX2
// kernel's one row.
SHAZIP_AVX512 void linear_avx512(const float* const* xs, const float* const* ws, int segments, int64_t rows,
                                 int64_t k, int64_t n, const float* bias, float* y) {
  for (int64_t j = 0; j < n; j += kLanes) {
    const SegmentRows wj = rows_from(ws, segments, j, k);
    const float* bj = bias ? bias + j : nullptr;
    int64_t r = 0;
    for (; r + 6 <= rows; r += 6) {
      linear_block_avx512<6>(rows_from(xs, segments, r, k).at, wj.at, segments, k, n, bj, y + r * n + j);
    }
    if (r + 4 <= rows) {
      linear_block_avx512<4>(rows_from(xs, segments, r, k).at, wj.at, segments, k, n, bj, y + r * n + j);
      r += 4;
    }
    if (r + 2 <= rows) {
      linear_block_avx512<2>(rows_from(xs, segments, r, k).at, wj.at, segments, k, n, bj, y + r * n + j);
      r += 2;
    }
    if (r < rows) {
      linear_tile_avx2<1, 8>(rows_from(xs, segments, r, k).at, wj.at, segments, k, n, bj, y + r * n + j);
    }
  }
}

// --- AVX-512: linear_tn over few rows, the rows of b in registers ---------
//
// linear_tn's lanes (ProductLane) with sixteen columns of y per register:
// lane l of output (j, i) is the chain over rows p = l, l + 8, ... of
// a[p][j] * b[p][i], from zero. The eight lanes are taken in groups in
// reduce_lanes' order, each group's rows of b held in registers (16 of
// them) while every row j of a block runs past them; its sum goes to y
// (or to a scratch block) and the next group's is added to it:
//   two groups {0, 4, 2, 6}, {1, 5, 3, 7} (rows_pad <= 32): y = t0, then
//     y = y + t1, with t0 = (l0 + l4) + (l2 + l6), t1 = (l1 + l5) + (l3 + l7);
//   four groups {0, 4}, {2, 6}, {1, 5}, {3, 7} (rows_pad <= 64): y = s04,
//     y = y + s26, u = s15, y = y + (u + s37).
// The same operations on every lane as linear_tn_avx2, so the same bits.
// Without padding rows only (rows == rows_pad), which the training step's N = B T
// always is.
constexpr int64_t kTnRowsAvx512 = 64;
constexpr int64_t kTnBlock = 32;  // rows j of y per block: their a and y stay in L1

// Group `group` of the G = 8 / LG groups, LG lanes each, P rows per lane, for
// rows j in [j0, j1) and the columns of mask m from i. J rows of y at a time:
// LG * J = 8 independent chains.
template <int P, int LG>
SHAZIP_AVX512 inline void tn_group_avx512(const float* a, const float* b, int64_t n, int64_t k, int group, int64_t j0,
                                          int64_t j1, __mmask16 m, float* y, float* u) {
  static constexpr int kOrder[8] = {0, 4, 2, 6, 1, 5, 3, 7};
  constexpr int J = 8 / LG;
  static_assert(P * LG <= 16, "the group's rows of b in 16 registers");
  __m512 bv[LG][P];
  int lane[LG];
#pragma GCC unroll 4
  for (int q = 0; q < LG; ++q) {
    lane[q] = kOrder[group * LG + q];
#pragma GCC unroll 8
    for (int r = 0; r < P; ++r) bv[q][r] = _mm512_maskz_loadu_ps(m, b + (lane[q] + kLanes * r) * k);
  }
  // What this group's sums do: store (first group; the third of four, to u),
  // or add to y, with u first for the fourth of four.
  const bool first = group == 0 || (LG == 2 && group == 2);
  const bool with_u = LG == 2 && group == 3;
  float* out = LG == 2 && group == 2 ? u : y;
  const int64_t out_stride = out == u ? 16 : k;
  for (int64_t j = j0; j < j1; j += J) {
    __m512 acc[J][LG];
#pragma GCC unroll 4
    for (int jj = 0; jj < J; ++jj) {
#pragma GCC unroll 4
      for (int q = 0; q < LG; ++q) acc[jj][q] = _mm512_setzero_ps();
    }
#pragma GCC unroll 8
    for (int r = 0; r < P; ++r) {
#pragma GCC unroll 4
      for (int q = 0; q < LG; ++q) {
        const float* ar = a + (lane[q] + kLanes * r) * n + j;
#pragma GCC unroll 4
        for (int jj = 0; jj < J; ++jj) acc[jj][q] = _mm512_fmadd_ps(_mm512_set1_ps(ar[jj]), bv[q][r], acc[jj][q]);
      }
    }
#pragma GCC unroll 4
    for (int jj = 0; jj < J; ++jj) {
      __m512 s = LG == 4 ? _mm512_add_ps(_mm512_add_ps(acc[jj][0], acc[jj][1]), _mm512_add_ps(acc[jj][2], acc[jj][3]))
                         : _mm512_add_ps(acc[jj][0], acc[jj][1]);
      float* o = out + (j - j0 + jj) * out_stride;
      float* yj = y + (j - j0 + jj) * k;
      if (with_u) s = _mm512_add_ps(_mm512_maskz_loadu_ps(m, u + (j - j0 + jj) * 16), s);
      if (!first) s = _mm512_add_ps(_mm512_maskz_loadu_ps(m, yj), s);
      _mm512_mask_storeu_ps(first ? o : yj, m, s);
    }
  }
}

template <int P, int LG>
SHAZIP_AVX512 void linear_tn_groups_avx512(const float* a, const float* b, int64_t n, int64_t k, float* y) {
  alignas(64) float u[kTnBlock * 16];
  for (int64_t j0 = 0; j0 < n; j0 += kTnBlock) {
    const int64_t j1 = std::min(n, j0 + kTnBlock);
    for (int64_t i = 0; i < k; i += 16) {
      const __mmask16 m = k - i >= 16 ? kAll16 : static_cast<__mmask16>((1u << (k - i)) - 1);
      for (int group = 0; group < 8 / LG; ++group) {
        tn_group_avx512<P, LG>(a, b + i, n, k, group, j0, j1, m, y + j0 * k + i, u);
      }
    }
  }
}

SHAZIP_AVX512 void linear_tn_avx512(const float* a, const float* b, int64_t rows, int64_t n, int64_t k, float* y) {
  switch (rows / kLanes) {
    case 1: return linear_tn_groups_avx512<1, 4>(a, b, n, k, y);
    case 2: return linear_tn_groups_avx512<2, 4>(a, b, n, k, y);
    case 3: return linear_tn_groups_avx512<3, 4>(a, b, n, k, y);
    case 4: return linear_tn_groups_avx512<4, 4>(a, b, n, k, y);
    case 5: return linear_tn_groups_avx512<5, 2>(a, b, n, k, y);
    case 6: return linear_tn_groups_avx512<6, 2>(a, b, n, k, y);
    case 7: return linear_tn_groups_avx512<7, 2>(a, b, n, k, y);
    case 8: return linear_tn_groups_avx512<8, 2>(a, b, n, k, y);
    default: SHAZIP_ASSERT(false);
  }
}

// --- AVX-512: linear_nn, sixteen columns of y per register ------------------
//
// Lane l of output (r, i) is linear's chain over j = l, l + 8, ... of x[r][j]
// * w[j][i]; here a register holds that lane for sixteen columns i, so R rows
// take 8 R accumulators, every row of w is loaded once per R rows and x's
// entries come broadcast. The lanes are added in reduce_lanes' order.
template <int R>
SHAZIP_AVX512 inline void nn_block_avx512(const float* x, int64_t n, const float* w, __mmask16 m, float* y,
                                          int64_t k) {
  __m512 acc[R][kLanes];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int l = 0; l < kLanes; ++l) acc[r][l] = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < n; j += kLanes) {
#pragma GCC unroll 8
    for (int l = 0; l < kLanes; ++l) {
      __m512 wv = _mm512_loadu_ps(w + (j + l) * 16);
      // In a register for the R rows: GCC would otherwise fold this load
      // into each multiply-add and keep x's broadcasts in registers instead.
      asm("" : "+v"(wv));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][l] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * n + j + l]), wv, acc[r][l]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const __m512 t0 = _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][4]), _mm512_add_ps(acc[r][2], acc[r][6]));
    const __m512 t1 = _mm512_add_ps(_mm512_add_ps(acc[r][1], acc[r][5]), _mm512_add_ps(acc[r][3], acc[r][7]));
    _mm512_mask_storeu_ps(y + r * k, m, _mm512_add_ps(t0, t1));
  }
}

// Column blocks outside, each copied first into n contiguous rows of 16
// floats (in place, w's rows of k floats put n x 16 blocks at a stride that
// maps them onto a few L1 sets: 2x the time at n = 384, k = 96), which then
// stay in L1 for every row of x; rows three at a time inside.
SHAZIP_AVX512 void linear_nn_avx512(const float* x, int64_t rows, int64_t n, const float* w, int64_t k, float* y) {
  thread_local std::vector<float> packed;
  if (packed.size() < static_cast<size_t>(n * 16)) packed.resize(static_cast<size_t>(n * 16));
  float* wp = packed.data();
  for (int64_t i = 0; i < k; i += 16) {
    const __mmask16 m = k - i >= 16 ? kAll16 : static_cast<__mmask16>((1u << (k - i)) - 1);
    for (int64_t j = 0; j < n; ++j) _mm512_storeu_ps(wp + j * 16, _mm512_maskz_loadu_ps(m, w + j * k + i));
    int64_t r = 0;
    for (; r + 3 <= rows; r += 3) nn_block_avx512<3>(x + r * n, n, wp, m, y + r * k + i, k);
    switch (rows - r) {
      case 2: nn_block_avx512<2>(x + r * n, n, wp, m, y + r * k + i, k); break;
      case 1: nn_block_avx512<1>(x + r * n, n, wp, m, y + r * k + i, k); break;
      default: break;
    }
  }
}

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool cpu_has_avx512() {
  return cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}
#else
bool cpu_has_avx2_fma() { return false; }
bool cpu_has_avx512() { return false; }
#endif

std::atomic<bool> g_simd{cpu_has_avx2_fma()};
std::atomic<bool> g_avx512{cpu_has_avx512() && !std::getenv("SHAZIP_NO_AVX512")};

void linear_segments(const float* const* xs, const float* const* ws, int segments, int64_t rows, int64_t k,
                     int64_t n, const float* bias, float* y) {
  SHAZIP_ASSERT(k % kLanes == 0 && n % kLanes == 0);
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) {
    if (g_avx512.load(std::memory_order_relaxed)) return linear_avx512(xs, ws, segments, rows, k, n, bias, y);
    return linear_avx2(xs, ws, segments, rows, k, n, bias, y);
  }
#endif
  linear_scalar(xs, ws, segments, rows, k, n, bias, y);
}

}  // namespace

float sum8(const float* a, int64_t n) {
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) return sum8_avx2(a, n);
#endif
  return sum8_scalar(a, n);
}

float dot8(const float* a, const float* b, int64_t n) {
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) return dot8_avx2(a, b, n);
#endif
  return dot8_scalar(a, b, n);
}

void dot8_rows(const float* rows, int64_t count, int64_t stride, const float* v, int64_t n, float* out) {
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) return dot8_rows_avx2(rows, count, stride, v, n, out);
#endif
  for (int64_t r = 0; r < count; ++r) out[r] = dot8_scalar(rows + r * stride, v, n);
}

void linear(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* bias,
            float* y) {
  const float* xs[2] = {x, nullptr};
  const float* ws[2] = {w, nullptr};
  linear_segments(xs, ws, 1, rows, k, n, bias, y);
}

void linear2(const float* x, const float* h, int64_t rows, int64_t k, const float* wx, const float* wh,
             int64_t n, const float* bias, float* y) {
  const float* xs[2] = {x, h};
  const float* ws[2] = {wx, wh};
  linear_segments(xs, ws, 2, rows, k, n, bias, y);
}

void linear_tn(const float* a, const float* b, int64_t rows, int64_t rows_pad, int64_t n, int64_t k, float* y) {
  SHAZIP_ASSERT(k % kLanes == 0 && n % kLanes == 0 && rows_pad % kLanes == 0 && rows <= rows_pad);
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) {
    if (linear_tn_in_registers(rows, rows_pad)) return linear_tn_avx512(a, b, rows, n, k, y);
    return linear_tn_avx2(a, b, rows, rows_pad, n, k, y);
  }
#endif
  linear_tn_scalar(a, b, rows, rows_pad, n, k, y);
}

bool linear_tn_in_registers(int64_t rows, int64_t rows_pad) {
#if defined(__x86_64__)
  return avx512() && rows > 0 && rows == rows_pad && rows <= kTnRowsAvx512;
#else
  return false;
#endif
}

void linear_nn(const float* x, int64_t rows, int64_t n, const float* w, int64_t k, float* y) {
  SHAZIP_ASSERT(k % kLanes == 0 && n % kLanes == 0);
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed) && g_avx512.load(std::memory_order_relaxed)) {
    return linear_nn_avx512(x, rows, n, w, k, y);
  }
#endif
  linear_nn_scalar(x, rows, n, w, k, y);
}

void col_sum8(const float* a, int64_t rows, int64_t rows_pad, int64_t n, float* y) {
  SHAZIP_ASSERT(n % kLanes == 0 && rows_pad % kLanes == 0 && rows <= rows_pad);
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) return col_sum8_avx2(a, rows, rows_pad, n, y);
#endif
  col_sum8_scalar(a, rows, rows_pad, n, y);
}

void weighted_sum(const float* weights, int64_t count, const float* rows, int64_t n, float* y) {
  SHAZIP_ASSERT(n % kLanes == 0);
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) return weighted_sum_avx2(weights, count, rows, n, y);
#endif
  weighted_sum_scalar(weights, count, rows, n, y);
}

void layer_norm(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps,
                float* y) {
  const float fd = static_cast<float>(d);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    const float mean = sum8(xr, d) / fd;
#if defined(__x86_64__)
    if (g_simd.load(std::memory_order_relaxed)) {
      subtract_avx2(xr, d, mean, yr);
      const float rstd = rsqrt_rn(dot8(yr, yr, d) / fd + eps);
      scale_shift_avx2(yr, d, rstd, w, b);
      continue;
    }
#endif
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] - mean;
    const float var = dot8(yr, yr, d) / fd;
    const float rstd = rsqrt_rn(var + eps);
    for (int64_t i = 0; i < d; ++i) yr[i] = yr[i] * rstd * w[i] + b[i];
  }
}

void softmax(float* x, int64_t n) {
  SHAZIP_ASSERT(n > 0);
  const float m = *std::max_element(x, x + n);
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) {
    exp_shifted_avx2(x, n, m);
  } else
#endif
  {
    for (int64_t i = 0; i < n; ++i) x[i] = det_expf(x[i] - m);
  }
  const float s = sum8(x, n);
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) return divide_avx2(x, n, s);
#endif
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / s;
}

void gelu(float* x, int64_t n) {
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) return gelu_avx2(x, n);
#endif
  for (int64_t i = 0; i < n; ++i) x[i] = det_gelu(x[i]);
}

void sigmoid(const float* x, int64_t n, float scale, float* y) {
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) return sigmoid_avx2(x, n, scale, y);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = det_sigmoid(x[i] * scale);
}

void lstm_pointwise(const float* gates, const float* c_prev, float* c, float* h, float* saved_acts,
                    float* saved_tanh_c, int64_t batch, int64_t d) {
#if defined(__x86_64__)
  if (g_simd.load(std::memory_order_relaxed)) {
    return lstm_pointwise_avx2(gates, c_prev, c, h, saved_acts, saved_tanh_c, batch, d);
  }
#endif
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = 0; j < d; ++j) {
      lstm_element(gates + b * 4 * d, c_prev + b * d, c + b * d, h + b * d,
                   saved_acts ? saved_acts + b * 4 * d : nullptr, saved_tanh_c ? saved_tanh_c + b * d : nullptr,
                   d, j);
    }
  }
}

void forward(const Shape& shape, const train::Weights& w, const float* query_gate, const float* value_gate,
             const State& state, int64_t* mem_pos, int64_t* mem_fill, const int64_t* bytes,
             std::vector<float>& scratch, float* logits) {
  const int64_t batch = shape.batch, d = shape.dim, f = shape.boom_factor * d;
  const int64_t slots = shape.attn_layer >= 0 ? shape.slots : 0;
  const float eps = shape.ln_eps;
  // Scratch rows: h (B, d), q (B, d), gates (B, 4d), hq (B, d), boom (B, f),
  // base (B, d), attention weights (S), the LSTM's summed biases (4d).
  scratch.resize(static_cast<size_t>(batch * (d + d + 4 * d + d + f + d) + slots + 4 * d));
  float* h = scratch.data();
  float* q = h + batch * d;
  float* gates = q + batch * d;
  float* hq = gates + batch * 4 * d;
  float* wide = hq + batch * d;
  float* base = wide + batch * f;
  float* weights = base + batch * d;
  float* lstm_bias = weights + slots;

  for (int64_t b = 0; b < batch; ++b) {
    SHAZIP_ASSERT(bytes[b] >= 0 && bytes[b] < 256);
    std::copy_n(w.embed + bytes[b] * d, d, h + b * d);
  }
  for (size_t l = 0; l < w.blocks.size(); ++l) {
    const train::BlockParams<const float*>& blk = w.blocks[l];
    float* h_state = state.h[l];
    float* c_state = state.c[l];
    layer_norm(h, batch, d, blk.ln_start_w, blk.ln_start_b, eps, h);
    for (int64_t j = 0; j < 4 * d; ++j) lstm_bias[j] = blk.b_ih[j] + blk.b_hh[j];
    linear2(h, h_state, batch, d, blk.w_ih, blk.w_hh, 4 * d, lstm_bias, gates);
    lstm_pointwise(gates, c_state, c_state, h_state, nullptr, nullptr, batch, d);
    std::copy_n(h_state, batch * d, h);
    if (static_cast<int64_t>(l) == shape.attn_layer) {
      const train::AttnParams<const float*>& a = w.attn;
      // The current position joins the memory first: it is its own key too.
      for (int64_t b = 0; b < batch; ++b) {
        float* slot = state.mem + (b * slots + *mem_pos) * d;
        layer_norm(h + b * d, 1, d, a.ln_mem_w, a.ln_mem_b, eps, slot);
      }
      *mem_pos = (*mem_pos + 1) % slots;
      *mem_fill = std::min(*mem_fill + 1, slots);
      layer_norm(h, batch, d, a.ln_mid_w, a.ln_mid_b, eps, hq);
      linear(hq, batch, d, a.q_w, d, a.q_b, q);
      layer_norm(q, batch, d, a.q_ln_w, a.q_ln_b, eps, q);
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t i = 0; i < d; ++i) q[b * d + i] = q[b * d + i] * query_gate[i];
      }
      for (int64_t b = 0; b < batch; ++b) {
        const float* keys = state.mem + b * slots * d;  // slots [0, mem_fill), in storage order
        dot8_rows(keys, *mem_fill, d, q + b * d, d, weights);
        softmax(weights, *mem_fill);
        float* hb = h + b * d;
        weighted_sum(weights, *mem_fill, keys, d, hb);
        for (int64_t i = 0; i < d; ++i) hb[i] = hb[i] * value_gate[i] + hq[b * d + i];
      }
    }
    // Boom: the residual's LayerNorm, then d -> f, x * sigmoid(1.702 x), and
    // the f / d chunks summed in order.
    layer_norm(h, batch, d, blk.ln_ff_w, blk.ln_ff_b, eps, base);
    layer_norm(h, batch, d, blk.ln_xff_w, blk.ln_xff_b, eps, h);
    linear(h, batch, d, blk.boom_w, f, blk.boom_b, wide);
    gelu(wide, batch * f);
    for (int64_t b = 0; b < batch; ++b) {
      const float* wb = wide + b * f;
      float* hb = h + b * d;
      for (int64_t i = 0; i < d; ++i) hb[i] = wb[i];
      for (int64_t c = 1; c < shape.boom_factor; ++c) {
        for (int64_t i = 0; i < d; ++i) hb[i] = hb[i] + wb[c * d + i];
      }
      for (int64_t i = 0; i < d; ++i) hb[i] = hb[i] + base[b * d + i];
    }
  }
  linear(h, batch, d, w.embed, 256, w.dec_bias, logits);
}

bool set_simd(bool on) {
  const bool use = on && cpu_has_avx2_fma();
  g_simd.store(use);
  return use;
}

bool simd() { return g_simd.load(); }

bool set_avx512(bool on) {
  const bool use = on && cpu_has_avx512();
  g_avx512.store(use);
  return use;
}

bool avx512() { return g_avx512.load() && g_simd.load(); }

}  // namespace shazip::model::step
