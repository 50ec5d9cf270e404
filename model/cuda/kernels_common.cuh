// The pieces that model/cuda/'s step and training kernels share: the dot8
// lanes of a product in registers, the row statistics in eight threads of a
// block, the block's softmax, and the three products that both passes
// launch (linear, the LSTM cell, the Boom), each either as one plain kernel
// (every output's eight lanes in one thread) or as the tiled product of
// tiled_product.cuh (for the Boom, then a pointwise kernel). Every one
// computes the sums of model/step_kernels.h in their order (FORMAT.md,
// "Step kernels").
//
// Private to the kernels' .cu files, which each get their own copy (the
// anonymous namespace); the host emulation (simt.h), which includes several
// .cu files into one translation unit, gets one.
#pragma once

#include <cmath>

#include "model/cuda/simt.h"
#include "model/cuda/tiled_product.cuh"
#include "model/kernel_math.h"

namespace shazip::model::SHAZIP_CUDA_NS {
namespace {

constexpr int kThreads = 128;     // threads per block of the product kernels
constexpr int kRowThreads = 256;  // threads per block of the row kernels
constexpr int kRows = 4;          // rows (streams, positions) per thread in the product kernels

int blocks_for(int64_t n, int64_t per_block) { return static_cast<int>((n + per_block - 1) / per_block); }

// A grid of kThreads-wide blocks over n outputs, times groups of kRows rows.
dim3 product_grid(int64_t n, int64_t rows) {
  return dim3(static_cast<unsigned>(blocks_for(n, kThreads)), static_cast<unsigned>(blocks_for(rows, kRows)));
}

// lanes[r][l] += x_r[i] * w[i] for i = l, l + 8, ... < k, one fma each, in
// order (dot8's lanes; k a multiple of 8). Rows past the batch repeat the
// last row: computed, never stored.
template <int R>
__device__ __forceinline__ void dot8_accumulate(const float* const (&x)[R], const float* __restrict__ w, int64_t k,
                                                float (&lanes)[R][kLanes]) {
  for (int64_t i = 0; i < k; i += kLanes) {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      const float wv = __ldg(w + i + l);
#pragma unroll
      for (int r = 0; r < R; ++r) lanes[r][l] = fma_rn(x[r][i + l], wv, lanes[r][l]);
    }
  }
}

template <int R>
__device__ __forceinline__ void zero_lanes(float (&lanes)[R][kLanes]) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) lanes[r][l] = 0.0f;
  }
}

// The kRows rows of this thread's group: row pointers into x (rows x k),
// clamped to the last row.
template <int R>
__device__ __forceinline__ void group_rows(const float* x, int64_t rows, int64_t k, int64_t first,
                                           const float* (&out)[R]) {
#pragma unroll
  for (int r = 0; r < R; ++r) out[r] = x + (first + r < rows ? first + r : rows - 1) * k;
}

// dot8(a, b, n) (b null: sum8(a, n)) of vectors in shared or global memory,
// by threads 0..7 of the block; the result in *out for every thread after the
// barrier. Must be reached by every thread of the block.
__device__ void lane_dot(const float* a, const float* b, int64_t n, float* lanes, float* out) {
  const int t = threadIdx.x;
  if (t < kLanes) {
    float acc = 0.0f;
    for (int64_t i = t; i < n; i += kLanes) acc = b ? fma_rn(a[i], b[i], acc) : acc + a[i];
    lanes[t] = acc;
  }
  __syncthreads();
  if (t == 0) *out = reduce_lanes(lanes);
  __syncthreads();
}

// step::softmax of x[0..n) in place by a block of kRowThreads threads:
// exp(x - max) with det_expf, divided by their sum8. The maximum is
// order-free. Must be reached by every thread of the block.
__device__ void block_softmax(float* x, int64_t n) {
  __shared__ float red[kRowThreads];
  __shared__ float lanes[kLanes];
  __shared__ float stat;
  const int t = threadIdx.x;
  float m = -INFINITY;
  for (int64_t i = t; i < n; i += kRowThreads) m = fmaxf(m, x[i]);
  red[t] = m;
  __syncthreads();
  for (int s = kRowThreads / 2; s > 0; s >>= 1) {
    if (t < s) red[t] = fmaxf(red[t], red[t + s]);
    __syncthreads();
  }
  m = red[0];
  for (int64_t i = t; i < n; i += kRowThreads) x[i] = det_expf(x[i] - m);
  __syncthreads();
  lane_dot(x, nullptr, n, lanes, &stat);
  const float s = stat;
  for (int64_t i = t; i < n; i += kRowThreads) x[i] = x[i] / s;
  __syncthreads();
}

// step::linear: y[r][j] = dot8(x_r, W_j, k) + bias[j] (bias may be null).
__global__ void linear_kernel(const float* x, int64_t rows, int64_t k, const float* __restrict__ w, int64_t n,
                              const float* __restrict__ bias, float* y) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t first = blockIdx.y * static_cast<int64_t>(kRows);
  if (j >= n) return;
  const float* xr[kRows];
  group_rows(x, rows, k, first, xr);
  float lanes[kRows][kLanes];
  zero_lanes(lanes);
  dot8_accumulate(xr, w + j * k, k, lanes);
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (first + r >= rows) break;
    const float v = reduce_lanes(lanes[r]);
    y[(first + r) * n + j] = bias ? v + bias[j] : v;
  }
}

// The LSTM cell for element j of kRows streams: the four gates' step::linear2
// over [x, h] (x's products first, then h's, in the same lanes) plus
// (b_ih + b_hh), then lstm_cell; the new c to c_out (may be c_prev), the new
// h to h_out (not h: every thread reads all of it). With acts non-null also
// the activated gates (rows, 4d) and tanh(c) (rows, d), as
// step::lstm_pointwise saves them for the backward pass.
struct LstmArgs {
  const float *x, *h, *c_prev;
  float *c_out, *h_out, *acts, *tanh_c;
  int64_t rows, d;
  const float *w_ih, *w_hh, *b_ih, *b_hh;
};

__global__ void lstm_kernel(LstmArgs a) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t first = blockIdx.y * static_cast<int64_t>(kRows);
  const int64_t d = a.d;
  if (j >= d) return;
  const float* xr[kRows];
  const float* hr[kRows];
  group_rows(a.x, a.rows, d, first, xr);
  group_rows(a.h, a.rows, d, first, hr);
  float pre[kRows][4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int64_t n = q * d + j;
    float lanes[kRows][kLanes];
    zero_lanes(lanes);
    dot8_accumulate(xr, a.w_ih + n * d, d, lanes);
    dot8_accumulate(hr, a.w_hh + n * d, d, lanes);
    const float bias = a.b_ih[n] + a.b_hh[n];
#pragma unroll
    for (int r = 0; r < kRows; ++r) pre[r][q] = reduce_lanes(lanes[r]) + bias;
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (first + r >= a.rows) break;
    const int64_t k = (first + r) * d + j;
    const LstmCell cell = lstm_cell(pre[r][0], pre[r][1], pre[r][2], pre[r][3], a.c_prev[k]);
    a.c_out[k] = cell.c;
    a.h_out[k] = cell.h;
    if (a.acts) {
      float* g = a.acts + (first + r) * 4 * d + j;
      g[0] = cell.i;
      g[d] = cell.f;
      g[2 * d] = cell.g;
      g[3 * d] = cell.o;
      a.tanh_c[k] = cell.tanh_c;
    }
  }
}

// The Boom for element i of kRows rows: for each of the f / d chunks cc,
// u = dot8(x_r, boom_w[cc d + i], d) + boom_b[cc d + i], activated as
// u * sigmoid(1.702 u), the chunks summed in order, then the residual:
// out = sum + base. With u_out non-null also u and the sigmoid (rows, f), as
// the training step keeps them.
__global__ void boom_kernel(const float* x, const float* base, float* out, int64_t rows, int64_t d, int64_t chunks,
                            const float* __restrict__ w, const float* __restrict__ bias, float* u_out,
                            float* sig_out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t first = blockIdx.y * static_cast<int64_t>(kRows);
  if (i >= d) return;
  const float* xr[kRows];
  group_rows(x, rows, d, first, xr);
  float sum[kRows];
  for (int64_t cc = 0; cc < chunks; ++cc) {
    const int64_t n = cc * d + i;
    float lanes[kRows][kLanes];
    zero_lanes(lanes);
    dot8_accumulate(xr, w + n * d, d, lanes);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float u = reduce_lanes(lanes[r]) + bias[n];
      const float sg = det_sigmoid(u * kGeluScale);
      const float v = u * sg;  // det_gelu(u)
      sum[r] = cc == 0 ? v : sum[r] + v;
      if (u_out && first + r < rows) {
        u_out[(first + r) * chunks * d + n] = u;
        sig_out[(first + r) * chunks * d + n] = sg;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (first + r >= rows) break;
    out[(first + r) * d + i] = sum[r] + base[(first + r) * d + i];
  }
}

// The Boom's activation and chunk sum for element i of row r from
// u = x W^T + b (rows, chunks d), as boom_kernel finishes; with sig_out
// non-null also the sigmoids.
__global__ void boom_sum_kernel(const float* u, const float* base, float* out, int64_t rows, int64_t d,
                                int64_t chunks, float* sig_out) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= rows * d) return;
  const int64_t r = e / d, i = e % d;
  float sum = 0.0f;
  for (int64_t cc = 0; cc < chunks; ++cc) {
    const int64_t n = r * chunks * d + cc * d + i;
    const float sg = det_sigmoid(u[n] * kGeluScale);
    const float v = u[n] * sg;  // det_gelu(u)
    sum = cc == 0 ? v : sum + v;
    if (sig_out) sig_out[n] = sg;
  }
  out[e] = sum + base[e];
}

// --- the products' launches: plain or tiled --------------------------------

// Blocks of kRowThreads threads over n elements.
unsigned elementwise_blocks(int64_t n) { return static_cast<unsigned>(blocks_for(n, kRowThreads)); }

// y (rows x n) = x W^T + bias.
void launch_linear(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* bias, float* y,
                   bool tiled, cudaStream_t stream) {
  if (tiled) {
    tiled_product(linear_product(x, rows, k, w, n, bias, y), stream);
  } else {
    SHAZIP_LAUNCH(linear_kernel, product_grid(n, rows), kThreads, 0, stream)(x, rows, k, w, n, bias, y);
  }
}

// One LSTM step of a.rows rows: lstm_kernel, or the tiled product of [x, h]
// and the gates' weights with the cell as its last step.
void launch_lstm(const LstmArgs& a, bool tiled, cudaStream_t stream) {
  if (!tiled) {
    SHAZIP_LAUNCH(lstm_kernel, product_grid(a.d, a.rows), kThreads, 0, stream)(a);
    return;
  }
  TiledProduct p;
  p.a = {a.x, a.d, true, a.h, a.d, a.d};  // [x, h]
  p.b = {a.w_ih, a.d, true, a.w_hh, a.d, a.d, a.d};
  p.m = a.rows;
  p.n = 4 * a.d;
  p.k = p.valid = 2 * a.d;
  p.bias = a.b_ih;
  p.bias2 = a.b_hh;
  p.lstm = {a.c_prev, a.c_out, a.h_out, a.acts, a.tanh_c, a.d};
  tiled_product(p, stream);
}

// The Boom of rows x (rows, d): out = the chunks' activations summed, plus
// base. Tiled, u (rows, chunks d) takes the product; with sig non-null
// u and the sigmoids are kept (the training step's), in u and sig.
void launch_boom(const float* x, const float* base, float* out, int64_t rows, int64_t d, int64_t chunks,
                 const float* w, const float* bias, float* u, float* sig, bool tiled, cudaStream_t stream) {
  if (!tiled) {
    SHAZIP_LAUNCH(boom_kernel, product_grid(d, rows), kThreads, 0, stream)(x, base, out, rows, d, chunks, w, bias,
                                                                           sig ? u : nullptr, sig);
    return;
  }
  tiled_product(linear_product(x, rows, d, w, chunks * d, bias, u), stream);
  SHAZIP_LAUNCH(boom_sum_kernel, elementwise_blocks(rows * d), kRowThreads, 0, stream)(u, base, out, rows, d,
                                                                                       chunks, sig);
}

}  // namespace
}  // namespace shazip::model::SHAZIP_CUDA_NS
