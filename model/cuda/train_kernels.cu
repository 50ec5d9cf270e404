// See train_kernels.h. TrainPass::Impl::run() follows train::SegmentPass::run
// (model/train_kernels.cpp) step by step, each CPU loop a kernel that keeps
// its order: a product's output is one thread's dot8 lanes, or in the tiled
// products each lane one thread's chain (the rows past the CPU's zero
// padding counted as its zeros), a chain over rows or over keys is one
// thread's loop, a row's sum8 or dot8 is threads 0-7 of a block.
// Where the CPU transposes a matrix so that a product runs over rows, the
// kernel reads the untransposed matrix in the transposed order instead: the
// same operands in the same order.
#include "model/cuda/train_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "model/cuda/kernels_common.cuh"
#include "model/cuda/step_kernels.h"
#include "model/kernel_math.h"

namespace shazip::model::SHAZIP_CUDA_NS {
namespace {

// Row r = b T + t of the segment: its input byte and its target.
__device__ __forceinline__ int64_t input_byte(const int64_t* bytes, int64_t seg, int64_t r) {
  return bytes[r / seg * (seg + 1) + r % seg];
}
__device__ __forceinline__ int64_t target_byte(const int64_t* bytes, int64_t seg, int64_t r) {
  return bytes[r / seg * (seg + 1) + r % seg + 1];
}

__device__ __forceinline__ int64_t global_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}

// --- forward ------------------------------------------------------------------

struct LnFwd {
  const float* x;          // rows of d; with bytes, the embedding
  const int64_t* bytes;    // null, or gather row r's input byte's embedding row
  int64_t seg;
  const float *w, *b;
  float *xhat, *rstd, *y;  // saved: xhat = (x - mean) * rstd (rows, d), rstd (rows)
  const float *w2, *b2;    // a second LayerNorm of the same rows (w2 null: none)
  float* y2;
  const float* post;       // null, or y_post = y * post
  float* y_post;
  int64_t d;
  float eps;
};

// train's ln_forward for one row per block: mean = sum8 / d, c = x - mean,
// rstd = 1 / sqrt(dot8(c, c) / d + eps), xhat = c * rstd, y = xhat * w + b.
__global__ void ln_forward_kernel(LnFwd a) {
  float* c = simt::dynamic_shared<float>();  // d floats
  __shared__ float lanes[kLanes];
  __shared__ float stat;
  const int64_t r = blockIdx.x, d = a.d;
  const float* x = a.bytes ? a.x + input_byte(a.bytes, a.seg, r) * d : a.x + r * d;
  const float fd = static_cast<float>(d);
  lane_dot(x, nullptr, d, lanes, &stat);
  const float mean = stat / fd;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) c[i] = x[i] - mean;
  __syncthreads();
  lane_dot(c, c, d, lanes, &stat);
  const float rs = rsqrt_rn(stat / fd + a.eps);
  if (threadIdx.x == 0) a.rstd[r] = rs;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float h = c[i] * rs;
    const float v = h * a.w[i] + a.b[i];
    a.xhat[r * d + i] = h;
    a.y[r * d + i] = v;
    if (a.post) a.y_post[r * d + i] = v * a.post[i];
    if (a.w2) a.y2[r * d + i] = h * a.w2[i] + a.b2[i];
  }
}

// Rows of d between (B, T) order (row b T + t) and (T, B) order (row t B + b).
__global__ void reorder_kernel(const float* src, float* dst, int64_t batch, int64_t seg, int64_t d, bool to_tb) {
  const int64_t e = global_index();
  if (e >= batch * seg * d) return;
  const int64_t row = e / d, i = e % d;
  const int64_t from = to_tb ? (row % batch) * seg + row / batch : (row % seg) * batch + row / seg;
  dst[e] = src[from * d + i];
}

// keys (B, K, d): per stream the memory's first P slots, then the segment's
// rows of mh.
__global__ void keys_kernel(const float* mem, int64_t slots, int64_t past, const float* mh, int64_t batch,
                            int64_t seg, int64_t keys, int64_t d, float* out) {
  const int64_t e = global_index();
  if (e >= batch * keys * d) return;
  const int64_t b = e / (keys * d), s = e / d % keys, i = e % d;
  out[e] = s < past ? mem[(b * slots + s) * d + i] : mh[(b * seg + s - past) * d + i];
}

// out[r][s] = dot8(key s of row r's stream, v_r, d) for the P + t + 1 keys row
// r = b T + t sees, zero for the rest (step::dot8_rows; the key first). The
// scores (v = q) and, in the backward pass, d(probs) (v = dmix).
__global__ void key_dots_kernel(const float* keys, int64_t past, int64_t seg, int64_t nkeys, int64_t d,
                                const float* v, float* out) {
  const int64_t s = global_index();
  const int64_t r = blockIdx.y;
  if (s >= nkeys) return;
  const int64_t count = past + r % seg + 1;
  float lanes[kLanes] = {};
  if (s < count) {
    const float* key = keys + (r / seg * nkeys + s) * d;
    const float* vr = v + r * d;
    for (int64_t i = 0; i < d; i += kLanes) {
#pragma unroll
      for (int l = 0; l < kLanes; ++l) lanes[l] = fma_rn(key[i + l], vr[i + l], lanes[l]);
    }
  }
  out[r * nkeys + s] = s < count ? reduce_lanes(lanes) : 0.0f;
}

// step::softmax over each row's P + t + 1 scores, one row per block.
__global__ void key_softmax_kernel(float* probs, int64_t past, int64_t seg, int64_t nkeys) {
  const int64_t r = blockIdx.x;
  block_softmax(probs + r * nkeys, past + r % seg + 1);
}

// out[r][i] = the chain over row r's keys s of weights[r][s] * key s's
// element i (step::weighted_sum). With value_gate: the attention's output,
// h = out * value_gate + hq, too.
__global__ void key_mix_kernel(const float* weights, const float* keys, int64_t past, int64_t seg, int64_t nkeys,
                               int64_t d, float* out, const float* value_gate, const float* hq, float* h) {
  const int64_t i = global_index();
  const int64_t r = blockIdx.y;
  if (i >= d) return;
  const int64_t count = past + r % seg + 1;
  const float* wr = weights + r * nkeys;
  const float* key = keys + r / seg * nkeys * d + i;
  float acc = 0.0f;
  for (int64_t s = 0; s < count; ++s) acc = fma_rn(wr[s], key[s * d], acc);
  out[r * d + i] = acc;
  if (value_gate) h[r * d + i] = acc * value_gate[i] + hq[r * d + i];
}

// The decoder's softmax and the cross-entropy's gradient, one row per block:
// dlogits = (softmax - one-hot(target)) * inv_n in place; the target's
// probability kept for the loss.
__global__ void cross_entropy_kernel(float* logits, const int64_t* bytes, int64_t seg, float inv_n,
                                     float* target_prob) {
  const int64_t r = blockIdx.x;
  float* p = logits + r * 256;
  block_softmax(p, 256);
  const int64_t target = target_byte(bytes, seg, r);
  for (int64_t j = threadIdx.x; j < 256; j += blockDim.x) {
    if (j == target) target_prob[r] = p[j];
    p[j] = (j == target ? p[j] - 1.0f : p[j]) * inv_n;
  }
}

// --- backward: products ---------------------------------------------------------

// dx (rows x k) = dy (rows x n) w (n x k): dx[r][i] = dot8 over j of
// dy[r][j] * w[j][i] (train's input_grad, the CPU's linear against w
// transposed); with `add`, plus add[r][i].
__global__ void input_grad_kernel(const float* dy, int64_t rows, int64_t n, const float* __restrict__ w, int64_t k,
                                  const float* add, float* dx) {
  const int64_t i = global_index();
  const int64_t first = blockIdx.y * static_cast<int64_t>(kRows);
  if (i >= k) return;
  const float* yr[kRows];
  group_rows(dy, rows, n, first, yr);
  float lanes[kRows][kLanes];
  zero_lanes(lanes);
  for (int64_t j = 0; j < n; j += kLanes) {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      const float wv = __ldg(w + (j + l) * k + i);
#pragma unroll
      for (int r = 0; r < kRows; ++r) lanes[r][l] = fma_rn(yr[r][j + l], wv, lanes[r][l]);
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (first + r >= rows) break;
    const int64_t o = (first + r) * k + i;
    const float v = reduce_lanes(lanes[r]);
    dx[o] = add ? v + add[o] : v;
  }
}

// dw (n x k) = dy^T x over the rows: dw[j][i] = dot8 over r < rows_pad of
// dy[r][j] * x[r][i], the rows from `rows` on zeros (train's weight_grad
// over its transposed, zero-padded copies).
__global__ void weight_grad_kernel(const float* dy, int64_t n, const float* x, int64_t k, int64_t rows,
                                   int64_t rows_pad, float* dw) {
  const int64_t i = global_index();
  const int64_t first = blockIdx.y * static_cast<int64_t>(kRows);
  if (i >= k) return;
  int64_t col[kRows];
#pragma unroll
  for (int q = 0; q < kRows; ++q) col[q] = first + q < n ? first + q : n - 1;
  float lanes[kRows][kLanes];
  zero_lanes(lanes);
  for (int64_t r0 = 0; r0 < rows_pad; r0 += kLanes) {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      const int64_t r = r0 + l;
      const bool in = r < rows;
      const float xv = in ? x[r * k + i] : 0.0f;
#pragma unroll
      for (int q = 0; q < kRows; ++q) lanes[q][l] = fma_rn(in ? dy[r * n + col[q]] : 0.0f, xv, lanes[q][l]);
    }
  }
#pragma unroll
  for (int q = 0; q < kRows; ++q) {
    if (first + q >= n) break;
    dw[(first + q) * k + i] = reduce_lanes(lanes[q]);
  }
}

// db[j] = sum8 over r < rows_pad of dy[r][j], zeros from `rows` on.
__global__ void bias_grad_kernel(const float* dy, int64_t n, int64_t rows, int64_t rows_pad, float* db) {
  const int64_t j = global_index();
  if (j >= n) return;
  float lanes[kLanes] = {};
  for (int64_t r0 = 0; r0 < rows_pad; r0 += kLanes) {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      const int64_t r = r0 + l;
      lanes[l] = lanes[l] + (r < rows ? dy[r * n + j] : 0.0f);
    }
  }
  db[j] = reduce_lanes(lanes);
}

// --- backward: rows and columns -------------------------------------------------

// train's ln_backward for one row per block: g = dy * w, m1 = sum8(g) / d,
// m2 = dot8(g, xhat) / d, dx = ((g - m1) - xhat * m2) * rstd, written or
// (accumulate) added.
__global__ void ln_backward_kernel(const float* dy, const float* xhat, const float* rstd, const float* w, float* dx,
                                   bool accumulate, int64_t d) {
  float* g = simt::dynamic_shared<float>();  // d floats
  __shared__ float lanes[kLanes];
  __shared__ float stat;
  const int64_t r = blockIdx.x;
  const float fd = static_cast<float>(d);
  const float* dyr = dy + r * d;
  const float* h = xhat + r * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) g[i] = dyr[i] * w[i];
  __syncthreads();
  lane_dot(g, nullptr, d, lanes, &stat);
  const float m1 = stat / fd;
  lane_dot(g, h, d, lanes, &stat);
  const float m2 = stat / fd;
  float* out = dx + r * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = ((g[i] - m1) - h[i] * m2) * rstd[r];
    out[i] = accumulate ? out[i] + v : v;
  }
}

// Column chains over the rows, from 0, one thread per column: dot_out[i] of
// a[r][i] * b[r][i] (a multiplication, then an addition), sum_out[i] of
// a[r][i]; either may be null (train's col_dot and col_sum).
__global__ void column_kernel(const float* a, const float* b, int64_t rows, int64_t d, float* dot_out,
                              float* sum_out) {
  const int64_t i = global_index();
  if (i >= d) return;
  float dot = 0.0f, sum = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float av = a[r * d + i];
    if (dot_out) dot = dot + av * b[r * d + i];
    if (sum_out) sum = sum + av;
  }
  if (dot_out) dot_out[i] = dot;
  if (sum_out) sum_out[i] = sum;
}

// out[e] = a[e] * v[e mod d] (may be in place).
__global__ void scale_columns_kernel(const float* a, const float* v, int64_t n, int64_t d, float* out) {
  const int64_t e = global_index();
  if (e < n) out[e] = a[e] * v[e % d];
}

// The Boom's activation backwards: du = dout * (s + ((u * 1.702) * s) * (1 - s))
// for u's f = chunks * d columns, dout's column i = the element's within its chunk.
__global__ void boom_backward_kernel(const float* dout, const float* u, const float* sig, int64_t rows, int64_t d,
                                     int64_t f, float* du) {
  const int64_t e = global_index();
  if (e >= rows * f) return;
  const float sg = sig[e];
  du[e] = dout[e / f * d + e % f % d] * (sg + ((u[e] * kGeluScale) * sg) * (1.0f - sg));
}

// The softmax's backward pass per row, one row per block: ds holds d(probs)
// on entry; ds = p * (dp - dot8(p, dp)) over the row's keys.
__global__ void key_softmax_backward_kernel(const float* probs, float* ds, int64_t past, int64_t seg,
                                            int64_t nkeys) {
  __shared__ float lanes[kLanes];
  __shared__ float stat;
  const int64_t r = blockIdx.x;
  const int64_t count = past + r % seg + 1;
  const float* p = probs + r * nkeys;
  float* dp = ds + r * nkeys;
  lane_dot(p, dp, count, lanes, &stat);
  const float pdp = stat;
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x) dp[j] = p[j] * (dp[j] - pdp);
}

// d(the segment's keys) = d(mh): key P + j of stream b is seen by positions
// t >= j, through the probabilities (times dmix) and through the scores
// (times q): two chains over t, added. One thread per element, row b T + j.
__global__ void segment_keys_grad_kernel(const float* probs, const float* ds, const float* dmix, const float* q,
                                         int64_t past, int64_t seg, int64_t nkeys, int64_t d, float* dmh) {
  const int64_t i = global_index();
  const int64_t row = blockIdx.y;
  if (i >= d) return;
  const int64_t b = row / seg, j = row % seg;
  float through_p = 0.0f, through_s = 0.0f;
  for (int64_t t = j; t < seg; ++t) {
    const int64_t r = b * seg + t;
    through_p = fma_rn(probs[r * nkeys + past + j], dmix[r * d + i], through_p);
    through_s = fma_rn(ds[r * nkeys + past + j], q[r * d + i], through_s);
  }
  dmh[row * d + i] = through_p + through_s;
}

// One position of the LSTM back in time, one thread per element of (B, d):
// the four gates' gradients from d(h_t) (the output's plus the next
// position's), and the cell's, carried in dc.
__global__ void lstm_backward_kernel(const float* acts, const float* tanh_c, const float* c_prev, const float* dh_out,
                                     const float* dh_next, float* dc, float* dgates, int64_t batch, int64_t d) {
  const int64_t k = global_index();
  if (k >= batch * d) return;
  const int64_t b = k / d, j = k % d;
  const float* ab = acts + b * 4 * d;
  float* row = dgates + b * 4 * d;
  const float ig = ab[j], fg = ab[d + j], gg = ab[2 * d + j], og = ab[3 * d + j];
  const float tc = tanh_c[k];
  const float dhk = dh_out[k] + dh_next[k];
  const float dct = dc[k] + dhk * og * (1.0f - tc * tc);
  row[j] = dct * gg * ig * (1.0f - ig);
  row[d + j] = dct * c_prev[k] * fg * (1.0f - fg);
  row[2 * d + j] = dct * ig * (1.0f - gg * gg);
  row[3 * d + j] = dhk * tc * og * (1.0f - og);
  dc[k] = dct * fg;
}

// The embedding's rows: row byte(r) += dx_r for r in row order, one thread
// per column.
__global__ void embedding_grad_kernel(const float* dx, const int64_t* bytes, int64_t seg, int64_t rows, int64_t d,
                                      float* g_embed) {
  const int64_t i = global_index();
  if (i >= d) return;
  for (int64_t r = 0; r < rows; ++r) {
    float* e = g_embed + input_byte(bytes, seg, r) * d + i;
    *e = *e + dx[r * d + i];
  }
}

// train's gates_backward, by one block in four phases: the query gate's two
// parameters and sv = sigmoid(vs); [c, f] = vq_w sv + vq_b; their gradients
// (= vq_b's); vq_w's (an outer product) and vs's (a chain over the 2d rows).
// sv (d), cf and dcf (2d): global scratch.
struct GatesGrad {
  train::AttnParams<const float*> w;
  train::AttnParams<float*> g;
  const float *qgrad, *vgrad;
  float *sv, *cf, *dcf;
  int64_t d;
  float scale;
};

__global__ void gates_backward_kernel(GatesGrad a) {
  const int64_t d = a.d;
  const int t = threadIdx.x, n = blockDim.x;
  for (int64_t i = t; i < d; i += n) {
    const float sq = det_sigmoid(a.w.qs[i]), sk = det_sigmoid(a.w.ks[i]);
    a.g.qs[i] = a.qgrad[i] * (sk * a.scale) * (sq * (1.0f - sq));
    a.g.ks[i] = a.qgrad[i] * (sq * a.scale) * (sk * (1.0f - sk));
    a.sv[i] = det_sigmoid(a.w.vs[i]);
  }
  __syncthreads();
  for (int64_t j = t; j < 2 * d; j += n) {
    const float* x[1] = {a.sv};
    float lanes[1][kLanes] = {};
    dot8_accumulate(x, a.w.vq_w + j * d, d, lanes);
    a.cf[j] = reduce_lanes(lanes[0]) + a.w.vq_b[j];
  }
  __syncthreads();
  for (int64_t i = t; i < d; i += n) {
    const float tc = det_tanh(a.cf[i]), sf = det_sigmoid(a.cf[d + i]);
    a.dcf[i] = a.vgrad[i] * sf * (1.0f - tc * tc);
    a.dcf[d + i] = a.vgrad[i] * tc * (sf * (1.0f - sf));
    a.g.vq_b[i] = a.dcf[i];
    a.g.vq_b[d + i] = a.dcf[d + i];
  }
  __syncthreads();
  for (int64_t e = t; e < 2 * d * d; e += n) a.g.vq_w[e] = a.dcf[e / d] * a.sv[e % d];
  for (int64_t i = t; i < d; i += n) {
    float acc = 0.0f;
    for (int64_t j = 0; j < 2 * d; ++j) acc = fma_rn(a.dcf[j], a.w.vq_w[j * d + i], acc);
    a.g.vs[i] = acc * (a.sv[i] * (1.0f - a.sv[i]));
  }
}

// --- Adam -------------------------------------------------------------------------

// lanes[8 k + l] = lane l of the dot8 of norm block k with itself.
__global__ void norm_lanes_kernel(const float* g, int64_t n, int64_t blocks, float* lanes) {
  const int64_t e = global_index();
  if (e >= blocks * kLanes) return;
  const int64_t begin = e / kLanes * train::kNormBlock;
  const int64_t end = begin + train::kNormBlock < n ? begin + train::kNormBlock : n;
  float acc = 0.0f;
  for (int64_t i = begin + e % kLanes; i < end; i += kLanes) acc = fma_rn(g[i], g[i], acc);
  lanes[e] = acc;
}

// One block: each norm block's dot8 from its lanes, their sum8, and the
// clip's coefficient clip / (sqrt(sum) + 1e-6) to *coef.
__global__ void norm_kernel(const float* lanes, int64_t blocks, float* partial, float clip, float* coef) {
  __shared__ float red[kLanes];
  __shared__ float stat;
  for (int64_t k = threadIdx.x; k < blocks; k += blockDim.x) partial[k] = reduce_lanes(lanes + k * kLanes);
  __syncthreads();
  lane_dot(partial, nullptr, blocks, red, &stat);
  if (threadIdx.x == 0) *coef = clip / (sqrt_rn(stat) + 1e-6f);
}

struct AdamConstants {
  float b1, c1, b2, c2, step_size, bias2_sqrt, eps;
};

// train's adam_element, the clip's coefficient read from the device; without
// momentum (b1 = 0) m is neither read nor written (the same bits:
// train_kernels.cpp), a quarter less memory traffic.
__global__ void adam_kernel(AdamConstants k, const float* coef_ptr, int64_t n, float* w, float* g, float* m,
                            float* v) {
  const int64_t i = global_index();
  if (i >= n) return;
  const float coef = *coef_ptr;
  const float gi = coef < 1.0f ? g[i] * coef : g[i];
  g[i] = gi;
  float mi = gi;
  if (k.b1 != 0.0f) {
    mi = k.b1 * m[i] + k.c1 * gi;
    m[i] = mi;
  }
  const float vi = k.b2 * v[i] + k.c2 * (gi * gi);
  v[i] = vi;
  w[i] = w[i] - k.step_size * (mi / (sqrt_rn(vi) / k.bias2_sqrt + k.eps));
}

struct CudaFailed {
  cudaError_t error;
};

}  // namespace

// --- the pass -----------------------------------------------------------------------

struct TrainPass::Impl {
  struct Ln {
    float *xhat, *rstd;
  };
  struct Saved {
    Ln ln_start;
    float *a_tb, *hs, *cs, *acts, *tcs;
    Ln ln_mem, ln_mid, q_ln;
    float *hq, *keys, *q0, *q, *probs, *mix;
    Ln ln_ff;  // and ln_xff: the same rows, so the same xhat and rstd
    float *zn, *u, *sig;
  };
  struct Dims : train::Shape {
    int64_t rows = 0, rows_pad = 0, boom = 0, past = 0, keys = 0;
  };

  ~Impl() {
    if (!buffers.empty()) simt::wait(stream);  // the last run's kernels may still read them
    for (auto& b : buffers) simt::release(b.first);
  }

  // Device scratch for this run, in call order; contents undefined. A buffer
  // that grows is released once the stream's earlier work (the last run's)
  // is done with it.
  float* get(int64_t n) {
    if (next == buffers.size()) buffers.emplace_back(nullptr, 0);
    std::pair<float*, size_t>& b = buffers[next++];
    const size_t want = static_cast<size_t>(std::max<int64_t>(n, 1));
    if (b.second < want) {
      if (b.first) {
        const cudaError_t e = simt::wait(stream);
        if (e != cudaSuccess) throw CudaFailed{e};
      }
      simt::release(b.first);
      b = {nullptr, 0};
      void* p = nullptr;
      const cudaError_t e = simt::alloc(&p, want * sizeof(float));
      if (e != cudaSuccess) throw CudaFailed{e};
      b = {static_cast<float*>(p), want};
    }
    return b.first;
  }

  void layer_norm(LnFwd a) {
    a.d = dims.dim;
    a.eps = dims.ln_eps;
    SHAZIP_LAUNCH(ln_forward_kernel, static_cast<unsigned>(dims.rows), kRowThreads,
                  static_cast<size_t>(dims.dim) * sizeof(float), stream)(a);
  }
  // The arguments of a LayerNorm of rows x into y, saving xhat and rstd in
  // new scratch; the caller may add a second LayerNorm, a post-multiplier.
  LnFwd ln_args(const float* x, const float* w, const float* b, Ln* saved, float* y) {
    *saved = {get(dims.rows * dims.dim), get(dims.rows)};
    LnFwd a{};
    a.x = x;
    a.w = w;
    a.b = b;
    a.xhat = saved->xhat;
    a.rstd = saved->rstd;
    a.y = y;
    return a;
  }
  // A LayerNorm of rows x into new scratch.
  float* layer_norm(const float* x, const float* w, const float* b, Ln* saved) {
    float* y = get(dims.rows * dims.dim);
    layer_norm(ln_args(x, w, b, saved, y));
    return y;
  }
  void layer_norm_backward(const float* dy, const Ln& s, const float* w, float* dx, bool accumulate, float* dw,
                           float* db) {
    const int64_t d = dims.dim;
    SHAZIP_LAUNCH(ln_backward_kernel, static_cast<unsigned>(dims.rows), kRowThreads,
                  static_cast<size_t>(d) * sizeof(float), stream)(dy, s.xhat, s.rstd, w, dx, accumulate, d);
    SHAZIP_LAUNCH(column_kernel, blocks_for(d, kThreads), kThreads, 0, stream)(dy, s.xhat, dims.rows, d, dw, db);
  }
  void reorder(const float* src, float* dst, bool to_tb) {
    const int64_t n = dims.rows * dims.dim;
    SHAZIP_LAUNCH(reorder_kernel, elementwise_blocks(n), kRowThreads, 0, stream)(src, dst, dims.batch, dims.seg,
                                                                                 dims.dim, to_tb);
  }
  void linear(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* bias, float* y) {
    launch_linear(x, rows, k, w, n, bias, y, tiled, stream);
  }
  void input_grad(const float* dy, int64_t rows, int64_t n, const float* w, int64_t k, float* dx,
                  const float* add = nullptr) {
    if (tiled) {
      tiled_product(input_grad_product(dy, rows, n, w, k, add, dx), stream);
    } else {
      SHAZIP_LAUNCH(input_grad_kernel, product_grid(k, rows), kThreads, 0, stream)(dy, rows, n, w, k, add, dx);
    }
  }
  void weight_grad(const float* dy, int64_t n, const float* x, int64_t k, float* dw, float* db) {
    if (tiled) {
      tiled_product(weight_grad_product(dy, n, x, k, dims.rows, dims.rows_pad, dw), stream);
    } else {
      SHAZIP_LAUNCH(weight_grad_kernel, product_grid(k, n), kThreads, 0, stream)(dy, n, x, k, dims.rows,
                                                                                 dims.rows_pad, dw);
    }
    if (db) {
      SHAZIP_LAUNCH(bias_grad_kernel, blocks_for(n, kThreads), kThreads, 0, stream)(dy, n, dims.rows,
                                                                                   dims.rows_pad, db);
    }
  }
  // out (N x K) = the dot8s of each row of v with its stream's keys, zero
  // past the keys the row sees: the scores, or d(probs).
  void key_dots(const float* keys, const float* v, float* out) {
    const int64_t T = dims.seg, K = dims.keys, d = dims.dim;
    if (!tiled) {
      const dim3 over_keys(static_cast<unsigned>(blocks_for(K, kThreads)), static_cast<unsigned>(dims.rows));
      SHAZIP_LAUNCH(key_dots_kernel, over_keys, kThreads, 0, stream)(keys, dims.past, T, K, d, v, out);
      return;
    }
    TiledProduct p = linear_product(v, T, d, keys, K, nullptr, out);
    p.batch = dims.batch;
    p.batch_a = T * d;
    p.batch_b = K * d;
    p.batch_c = T * K;
    p.mask_past = dims.past;
    tiled_product(p, stream);
  }
  // out (N x d) = each row's chain over the keys it sees of weights[r][s]
  // times key s; with gate, h = out * gate + add too (the attention's output).
  void key_mix(const float* weights, const float* keys, float* out, const float* gate, const float* add, float* h) {
    const int64_t T = dims.seg, K = dims.keys, d = dims.dim;
    if (!tiled) {
      const dim3 over_d(static_cast<unsigned>(blocks_for(d, kThreads)), static_cast<unsigned>(dims.rows));
      SHAZIP_LAUNCH(key_mix_kernel, over_d, kThreads, 0, stream)(weights, keys, dims.past, T, K, d, out, gate, add,
                                                                 h);
      return;
    }
    ChainProduct p;
    p.w = weights;
    p.v = keys;
    p.m = T;
    p.n = d;
    p.keys = K;
    p.past = dims.past;
    p.c = out;
    p.gate = gate;
    p.add = add;
    p.out2 = h;
    p.batch = dims.batch;
    chain_product(p, stream);
  }
  void copy(float* dst, const float* src, int64_t n) {
    const cudaError_t e = simt::copy_async(dst, src, static_cast<size_t>(n) * sizeof(float), stream);
    if (e != cudaSuccess) throw CudaFailed{e};
  }

  void run(const train::Weights& w, const train::Start& st, const int64_t* bytes, const train::Grads& g);
  float* lstm_forward(const train::BlockParams<const float*>& bw, const float* h0, const float* c0, const float* x,
                      Saved& s);
  void attention_forward(const train::AttnParams<const float*>& aw, const train::Start& st, const float* qgate,
                         const float* vgate, float* h, Saved& s);
  float* boom_forward(const train::BlockParams<const float*>& bw, const float* h, Saved& s);
  float* boom_backward(const train::BlockParams<const float*>& bw, const train::BlockParams<float*>& bg,
                       const Saved& s, const float* dout);
  void attention_backward(const train::AttnParams<const float*>& aw, const train::AttnParams<float*>& ag,
                          const Saved& s, const float* qgate, const float* vgate, float* dh, float* qgrad,
                          float* vgrad);
  void lstm_backward(const train::BlockParams<const float*>& bw, const train::BlockParams<float*>& bg,
                     const Saved& s, const float* dh, float* dx);

  std::vector<std::pair<float*, size_t>> buffers;
  size_t next = 0;
  std::vector<Saved> saved;
  Dims dims;
  cudaStream_t stream = nullptr;
  bool tiled = true;               // this run's products: tiled_products()
  const float* embed = nullptr;    // this run's embedding
  const int64_t* bytes = nullptr;  // and bytes (B, T + 1)
  float* target_prob = nullptr;    // (rows): the last run's, for loss()
};

void TrainPass::Impl::run(const train::Weights& w, const train::Start& st, const int64_t* bytes,
                          const train::Grads& g) {
  const int64_t T = dims.seg, d = dims.dim, N = dims.rows;
  const int64_t layers = static_cast<int64_t>(w.blocks.size());
  embed = w.embed;
  this->bytes = bytes;

  // ---- forward ----
  const float* x = nullptr;
  float* qgate = nullptr;
  float* vgate = nullptr;
  if (dims.attn_layer >= 0) {
    qgate = get(d);
    vgate = get(d);
    const cudaError_t e = attention_gates_device(w.attn, d, get(d), qgate, vgate, stream);
    if (e != cudaSuccess) throw CudaFailed{e};
  }
  for (int64_t l = 0; l < layers; ++l) {
    Saved& s = saved[l];
    float* h = lstm_forward(w.blocks[l], st.h[l], st.c[l], l == 0 ? nullptr : x, s);
    if (l == dims.attn_layer) attention_forward(w.attn, st, qgate, vgate, h, s);
    x = boom_forward(w.blocks[l], h, s);
  }
  float* dlogits = get(N * 256);
  linear(x, N, d, w.embed, 256, w.dec_bias, dlogits);
  target_prob = get(N);
  SHAZIP_LAUNCH(cross_entropy_kernel, static_cast<unsigned>(N), kRowThreads, 0, stream)(
      dlogits, bytes, T, 1.0f / static_cast<float>(N), target_prob);

  // ---- backward ----
  weight_grad(dlogits, 256, x, d, g.embed, g.dec_bias);
  float* dx = get(N * d);
  input_grad(dlogits, N, 256, w.embed, d, dx);
  float* qgrad = nullptr;
  float* vgrad = nullptr;
  for (int64_t l = layers - 1; l >= 0; --l) {
    const Saved& s = saved[l];
    float* dh = boom_backward(w.blocks[l], g.blocks[l], s, dx);
    if (l == dims.attn_layer) {
      qgrad = get(d);
      vgrad = get(d);
      attention_backward(w.attn, g.attn, s, qgate, vgate, dh, qgrad, vgrad);
    }
    lstm_backward(w.blocks[l], g.blocks[l], s, dh, dx);
  }
  SHAZIP_LAUNCH(embedding_grad_kernel, blocks_for(d, kThreads), kThreads, 0, stream)(dx, bytes, T, N, d, g.embed);
  if (dims.attn_layer >= 0) {
    GatesGrad a{w.attn, g.attn, qgrad, vgrad, get(d), get(2 * d), get(2 * d), d, rsqrt_rn(static_cast<float>(d))};
    SHAZIP_LAUNCH(gates_backward_kernel, 1, kRowThreads, 0, stream)(a);
  }
}

// LayerNorm (of the embedding's rows in the first block, x null), then the
// LSTM over time in (T, B) order; returns its output rows in (B, T) order.
float* TrainPass::Impl::lstm_forward(const train::BlockParams<const float*>& bw, const float* h0, const float* c0,
                                     const float* x, Saved& s) {
  const int64_t B = dims.batch, T = dims.seg, d = dims.dim, N = dims.rows;
  const int64_t n = N * d;
  float* a = get(n);
  LnFwd ln = ln_args(x ? x : embed, bw.ln_start_w, bw.ln_start_b, &s.ln_start, a);
  if (!x) {  // the embedding's rows, gathered by input byte
    ln.bytes = bytes;
    ln.seg = T;
  }
  layer_norm(ln);
  s.a_tb = get(n);
  reorder(a, s.a_tb, true);
  s.hs = get((T + 1) * B * d);
  s.cs = get((T + 1) * B * d);
  s.acts = get(N * 4 * d);
  s.tcs = get(n);
  copy(s.hs, h0, B * d);
  copy(s.cs, c0, B * d);
  for (int64_t t = 0; t < T; ++t) {
    const LstmArgs cell{s.a_tb + t * B * d, s.hs + t * B * d, s.cs + t * B * d, s.cs + (t + 1) * B * d,
                        s.hs + (t + 1) * B * d, s.acts + t * B * 4 * d, s.tcs + t * B * d, B, d,
                        bw.w_ih, bw.w_hh, bw.b_ih, bw.b_hh};
    launch_lstm(cell, tiled, stream);
  }
  float* h = get(n);
  reorder(s.hs + B * d, h, false);
  return h;
}

// LayerNorms for the keys (mh) and the query side (hq), the query, the
// scores over the memory and the segment, their softmax, the mix; h =
// mix * value_gate + hq in place.
void TrainPass::Impl::attention_forward(const train::AttnParams<const float*>& aw, const train::Start& st,
                                        const float* qgate, const float* vgate, float* h, Saved& s) {
  const int64_t B = dims.batch, T = dims.seg, d = dims.dim, N = dims.rows;
  const int64_t P = dims.past, K = dims.keys;
  const float* mh = layer_norm(h, aw.ln_mem_w, aw.ln_mem_b, &s.ln_mem);
  s.hq = layer_norm(h, aw.ln_mid_w, aw.ln_mid_b, &s.ln_mid);
  s.keys = get(B * K * d);
  SHAZIP_LAUNCH(keys_kernel, elementwise_blocks(B * K * d), kRowThreads, 0, stream)(st.mem, st.slots, P, mh, B, T,
                                                                                    K, d, s.keys);
  float* ql = get(N * d);
  linear(s.hq, N, d, aw.q_w, d, aw.q_b, ql);
  s.q0 = get(N * d);
  s.q = get(N * d);
  LnFwd q = ln_args(ql, aw.q_ln_w, aw.q_ln_b, &s.q_ln, s.q0);
  q.post = qgate;
  q.y_post = s.q;
  layer_norm(q);
  s.probs = get(N * K);
  s.mix = get(N * d);
  key_dots(s.keys, s.q, s.probs);
  SHAZIP_LAUNCH(key_softmax_kernel, static_cast<unsigned>(N), kRowThreads, 0, stream)(s.probs, P, T, K);
  key_mix(s.probs, s.keys, s.mix, vgate, s.hq, h);
}

// Boom: base = LN_ff(h), zn = LN_xff(h) in one pass (the same xhat and
// rstd), then u = zn W^T + b, activated, the chunks summed, plus base.
float* TrainPass::Impl::boom_forward(const train::BlockParams<const float*>& bw, const float* h, Saved& s) {
  const int64_t d = dims.dim, N = dims.rows, f = dims.boom;
  float* base = get(N * d);
  s.zn = get(N * d);
  LnFwd both = ln_args(h, bw.ln_ff_w, bw.ln_ff_b, &s.ln_ff, base);
  both.w2 = bw.ln_xff_w;
  both.b2 = bw.ln_xff_b;
  both.y2 = s.zn;
  layer_norm(both);
  s.u = get(N * f);
  s.sig = get(N * f);
  float* out = get(N * d);
  launch_boom(s.zn, base, out, N, d, dims.boom_factor, bw.boom_w, bw.boom_b, s.u, s.sig, tiled, stream);
  return out;
}

// dout: d(the Boom's output). Returns d(its input).
float* TrainPass::Impl::boom_backward(const train::BlockParams<const float*>& bw,
                                      const train::BlockParams<float*>& bg, const Saved& s, const float* dout) {
  const int64_t d = dims.dim, N = dims.rows, f = dims.boom;
  float* du = get(N * f);
  SHAZIP_LAUNCH(boom_backward_kernel, elementwise_blocks(N * f), kRowThreads, 0, stream)(dout, s.u, s.sig, N, d, f,
                                                                                         du);
  float* dzn = get(N * d);
  input_grad(du, N, f, bw.boom_w, d, dzn);
  weight_grad(du, f, s.zn, d, bg.boom_w, bg.boom_b);
  float* dh = get(N * d);
  layer_norm_backward(dzn, s.ln_ff, bw.ln_xff_w, dh, false, bg.ln_xff_w, bg.ln_xff_b);
  layer_norm_backward(dout, s.ln_ff, bw.ln_ff_w, dh, true, bg.ln_ff_w, bg.ln_ff_b);
  return dh;
}

// dh: d(h) for h = mix * vgate + hq, replaced by d(the LSTM's output);
// qgrad and vgrad get d(query gate) and d(value gate).
void TrainPass::Impl::attention_backward(const train::AttnParams<const float*>& aw,
                                         const train::AttnParams<float*>& ag, const Saved& s, const float* qgate,
                                         const float* vgate, float* dh, float* qgrad, float* vgrad) {
  const int64_t T = dims.seg, d = dims.dim, N = dims.rows;
  const int64_t P = dims.past, K = dims.keys;
  const unsigned column_blocks = static_cast<unsigned>(blocks_for(d, kThreads));
  SHAZIP_LAUNCH(column_kernel, column_blocks, kThreads, 0, stream)(dh, s.mix, N, d, vgrad, nullptr);
  float* dmix = get(N * d);
  SHAZIP_LAUNCH(scale_columns_kernel, elementwise_blocks(N * d), kRowThreads, 0, stream)(dh, vgate, N * d, d, dmix);
  float* ds = get(N * K);
  float* dq = get(N * d);
  float* dmh = get(N * d);
  const dim3 over_d(static_cast<unsigned>(blocks_for(d, kThreads)), static_cast<unsigned>(N));
  // mix = p keys; p = softmax(scores): ds = p * (dp - dot(p, dp)); scores =
  // q keys^T: dq = ds keys.
  key_dots(s.keys, dmix, ds);
  SHAZIP_LAUNCH(key_softmax_backward_kernel, static_cast<unsigned>(N), kRowThreads, 0, stream)(s.probs, ds, P, T, K);
  key_mix(ds, s.keys, dq, nullptr, nullptr, nullptr);
  SHAZIP_LAUNCH(segment_keys_grad_kernel, over_d, kThreads, 0, stream)(s.probs, ds, dmix, s.q, P, T, K, d, dmh);
  // q = q0 * qgate.
  SHAZIP_LAUNCH(column_kernel, column_blocks, kThreads, 0, stream)(dq, s.q0, N, d, qgrad, nullptr);
  SHAZIP_LAUNCH(scale_columns_kernel, elementwise_blocks(N * d), kRowThreads, 0, stream)(dq, qgate, N * d, d, dq);
  float* dql = get(N * d);
  layer_norm_backward(dq, s.q_ln, aw.q_ln_w, dql, false, ag.q_ln_w, ag.q_ln_b);
  // ql = hq q_w^T + q_b; hq also passes dh on (the residual).
  float* dhq = get(N * d);
  input_grad(dql, N, d, aw.q_w, d, dhq, dh);
  weight_grad(dql, d, s.hq, d, ag.q_w, ag.q_b);
  layer_norm_backward(dhq, s.ln_mid, aw.ln_mid_w, dh, false, ag.ln_mid_w, ag.ln_mid_b);
  layer_norm_backward(dmh, s.ln_mem, aw.ln_mem_w, dh, true, ag.ln_mem_w, ag.ln_mem_b);
}

// The LSTM back over time, then its LayerNorm: dh (B, T order) is d(h_t);
// writes d(the block's input) to dx.
void TrainPass::Impl::lstm_backward(const train::BlockParams<const float*>& bw, const train::BlockParams<float*>& bg,
                                    const Saved& s, const float* dh, float* dx) {
  const int64_t B = dims.batch, T = dims.seg, d = dims.dim, N = dims.rows;
  float* go = get(N * d);
  reorder(dh, go, true);
  float* dg = get(N * 4 * d);
  float* dh_next = get(B * d);
  float* dc = get(B * d);
  for (float* p : {dh_next, dc}) {
    const cudaError_t e = simt::zero_async(p, static_cast<size_t>(B * d) * sizeof(float), stream);
    if (e != cudaSuccess) throw CudaFailed{e};
  }
  for (int64_t t = T - 1; t >= 0; --t) {
    float* dgt = dg + t * B * 4 * d;
    SHAZIP_LAUNCH(lstm_backward_kernel, elementwise_blocks(B * d), kRowThreads, 0, stream)(
        s.acts + t * B * 4 * d, s.tcs + t * B * d, s.cs + t * B * d, go + t * B * d, dh_next, dc, dgt, B, d);
    if (t > 0) input_grad(dgt, B, 4 * d, bw.w_hh, d, dh_next);
  }
  weight_grad(dg, 4 * d, s.a_tb, d, bg.w_ih, bg.b_ih);
  weight_grad(dg, 4 * d, s.hs, d, bg.w_hh, nullptr);  // h_0 .. h_{T-1}
  copy(bg.b_hh, bg.b_ih, 4 * d);
  float* da_tb = get(N * d);
  input_grad(dg, N, 4 * d, bw.w_ih, d, da_tb);
  float* da = get(N * d);
  reorder(da_tb, da, false);
  layer_norm_backward(da, s.ln_start, bw.ln_start_w, dx, false, bg.ln_start_w, bg.ln_start_b);
}

TrainPass::TrainPass() : impl_(std::make_unique<Impl>()) {}
TrainPass::~TrainPass() = default;

cudaError_t TrainPass::run(const train::Shape& sh, const train::Weights& w, const train::Start& st,
                           const int64_t* bytes, const train::Grads& g, cudaStream_t stream) {
  Impl& m = *impl_;
  const int64_t layers = static_cast<int64_t>(w.blocks.size());
  const int64_t rows = sh.batch * sh.seg;
  if (sh.dim % kLanes != 0 || sh.dim > 8192 || rows <= 0 || rows > 65535 || sh.attn_layer >= layers ||
      static_cast<int64_t>(g.blocks.size()) != layers || static_cast<int64_t>(st.h.size()) != layers) {
    return cudaErrorInvalidValue;
  }
  static_cast<train::Shape&>(m.dims) = sh;
  m.dims.rows = rows;
  m.dims.rows_pad = (rows + kLanes - 1) / kLanes * kLanes;
  m.dims.boom = sh.boom_factor * sh.dim;
  m.dims.past = sh.attn_layer >= 0 ? st.mem_fill : 0;
  m.dims.keys = m.dims.past + sh.seg;
  m.saved.resize(static_cast<size_t>(layers));
  m.next = 0;
  m.stream = stream;
  m.tiled = tiled_products();
  try {
    m.run(w, st, bytes, g);
  } catch (const CudaFailed& f) {
    m.target_prob = nullptr;
    return f.error;
  }
  return simt::last_error();
}

double TrainPass::loss(cudaStream_t stream) {
  Impl& m = *impl_;
  if (!m.target_prob) return std::numeric_limits<double>::quiet_NaN();
  std::vector<float> p(static_cast<size_t>(m.dims.rows));
  if (simt::to_host(p.data(), m.target_prob, p.size() * sizeof(float), stream) != cudaSuccess) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  // As SegmentPass::run: in row order, in double.
  double loss = 0;
  for (const float v : p) loss -= std::log(static_cast<double>(std::max(v, std::numeric_limits<float>::min())));
  return loss / static_cast<double>(m.dims.rows);
}

size_t adam_scratch_floats(int64_t n) {
  const int64_t blocks = (n + train::kNormBlock - 1) / train::kNormBlock;
  return static_cast<size_t>(blocks * (kLanes + 1) + 1);
}

cudaError_t adam_step_device(const train::AdamConfig& cfg, double beta1_pow, double beta2_pow, int64_t n, float* w,
                             float* g, float* m, float* v, float* scratch, cudaStream_t stream) {
  if (!cfg.block_norm) return cudaErrorInvalidValue;
  if (n <= 0) return cudaSuccess;
  const int64_t blocks = (n + train::kNormBlock - 1) / train::kNormBlock;
  float* lanes = scratch;
  float* partial = lanes + blocks * kLanes;
  float* coef = partial + blocks;
  SHAZIP_LAUNCH(norm_lanes_kernel, elementwise_blocks(blocks * kLanes), kRowThreads, 0, stream)(g, n, blocks, lanes);
  SHAZIP_LAUNCH(norm_kernel, 1, kRowThreads, 0, stream)(lanes, blocks, partial, static_cast<float>(cfg.clip), coef);
  // Adam as torch.optim.Adam, each constant rounded once to float (as
  // train::adam_step).
  AdamConstants k;
  k.b1 = static_cast<float>(cfg.beta1);
  k.c1 = static_cast<float>(1.0 - cfg.beta1);
  k.b2 = static_cast<float>(cfg.beta2);
  k.c2 = static_cast<float>(1.0 - cfg.beta2);
  k.step_size = static_cast<float>(cfg.lr / (1.0 - beta1_pow));
  k.bias2_sqrt = static_cast<float>(std::sqrt(1.0 - beta2_pow));
  k.eps = static_cast<float>(cfg.eps);
  SHAZIP_LAUNCH(adam_kernel, elementwise_blocks(n), kRowThreads, 0, stream)(k, coef, n, w, g, m, v);
  return simt::last_error();
}

}  // namespace shazip::model::SHAZIP_CUDA_NS
