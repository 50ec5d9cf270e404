// The training step's CPU kernels; see train_kernels.h.
//
// Rows are positions: row r = b * T + t holds stream b's position t (the
// layout of LibTorch's (B, T, d) tensors), except inside the LSTM, which runs
// over time and keeps (T, B) order. Every loop here is plain IEEE float
// arithmetic without fused multiply-adds (-ffp-contract=off), so it gives the
// same bits vectorised or not; the sums are step_kernels.h's dot8 and sum8,
// in a fixed order.
#include "model/train_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "coder/assert.h"
#include "model/kernel_math.h"
#include "model/step_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace shazip::model::train {
namespace {

int64_t round8(int64_t n) { return (n + 7) / 8 * 8; }

#if defined(__x86_64__)
// dst rows [c0, c0 + 8) x columns [r0, r0 + 8) = src's 8 x 8 block at (r0, c0),
// transposed in registers.
__attribute__((target("avx2"))) inline void transpose8x8(const float* src, int64_t cols, float* dst,
                                                         int64_t rows_pad) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * cols);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * rows_pad, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * rows_pad, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

__attribute__((target("avx2"))) void transpose_blocks_avx2(const float* src, int64_t rows8, int64_t cols,
                                                           int64_t rows_pad, float* dst) {
  for (int64_t r = 0; r < rows8; r += 8) {
    for (int64_t c = 0; c < cols; c += 8) transpose8x8(src + r * cols + c, cols, dst + c * rows_pad + r, rows_pad);
  }
}
#endif

// dst (cols x rows_pad) = src (rows x cols) transposed, zeros past `rows`.
// Only moves floats; cols a multiple of 8 for the AVX2 blocks.
void transpose_pad(const float* src, int64_t rows, int64_t cols, int64_t rows_pad, float* dst) {
  int64_t done = 0;
#if defined(__x86_64__)
  if (step::simd() && cols % 8 == 0) {
    done = rows / 8 * 8;
    transpose_blocks_avx2(src, done, cols, rows_pad, dst);
  }
#endif
  for (int64_t c = 0; c < cols; ++c) {
    float* out = dst + c * rows_pad;
    for (int64_t r = done; r < rows; ++r) out[r] = src[r * cols + c];
    std::fill(out + rows, out + rows_pad, 0.0f);
  }
}

// (T, B) order <-> (B, T) order of rows of width d.
void tb_from_bt(const float* bt, int64_t batch, int64_t seg, int64_t d, float* tb) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < seg; ++t) std::memcpy(tb + (t * batch + b) * d, bt + (b * seg + t) * d, d * sizeof(float));
  }
}
void bt_from_tb(const float* tb, int64_t batch, int64_t seg, int64_t d, float* bt) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < seg; ++t) std::memcpy(bt + (b * seg + t) * d, tb + (t * batch + b) * d, d * sizeof(float));
  }
}

// out[i] = the chain over rows r of a[r][i] (* b[r][i]): one running sum per
// column from 0, rows in order, a multiplication and an addition each.
void col_sum(const float* a, int64_t rows, int64_t d, float* out) {
  std::fill(out, out + d, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < d; ++i) out[i] = out[i] + a[r * d + i];
  }
}
void col_dot(const float* a, const float* b, int64_t rows, int64_t d, float* out) {
  std::fill(out, out + d, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < d; ++i) out[i] = out[i] + a[r * d + i] * b[r * d + i];
  }
}

// Row-wise LayerNorm as step::layer_norm, keeping xhat = (x - mean) * rstd
// and rstd for the backward pass: y = xhat * w + b.
void ln_forward(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps, float* xhat,
                float* rstd, float* y) {
  const float fd = static_cast<float>(d);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* hr = xhat + r * d;
    float* yr = y + r * d;
    const float mean = step::sum8(xr, d) / fd;
    for (int64_t i = 0; i < d; ++i) hr[i] = xr[i] - mean;
    const float var = step::dot8(hr, hr, d) / fd;
    const float rs = rsqrt_rn(var + eps);
    rstd[r] = rs;
    for (int64_t i = 0; i < d; ++i) {
      hr[i] = hr[i] * rs;
      yr[i] = hr[i] * w[i] + b[i];
    }
  }
}

// LayerNorm's backward pass: with g = dy * w, dx = ((g - mean(g)) - xhat *
// mean(g * xhat)) * rstd (the means sum8 / d and dot8 / d), written to dx or,
// with `accumulate`, added to it; dw = the column chain of dy * xhat, db of dy.
void ln_backward(const float* dy, const float* xhat, const float* rstd, int64_t rows, int64_t d, const float* w,
                 float* dx, bool accumulate, float* dw, float* db, float* tmp) {
  const float fd = static_cast<float>(d);
  for (int64_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * d;
    const float* hr = xhat + r * d;
    float* dxr = dx + r * d;
    for (int64_t i = 0; i < d; ++i) tmp[i] = dyr[i] * w[i];
    const float m1 = step::sum8(tmp, d) / fd;
    const float m2 = step::dot8(tmp, hr, d) / fd;
    for (int64_t i = 0; i < d; ++i) {
      const float v = ((tmp[i] - m1) - hr[i] * m2) * rstd[r];
      dxr[i] = accumulate ? dxr[i] + v : v;
    }
  }
  col_dot(dy, xhat, rows, d, dw);
  col_sum(dy, rows, d, db);
}

}  // namespace

void attention_gates(const AttnParams<const float*>& a, int64_t d, float* query_gate, float* value_gate) {
  const float scale = rsqrt_rn(static_cast<float>(d));
  for (int64_t i = 0; i < d; ++i) query_gate[i] = det_sigmoid(a.qs[i]) * det_sigmoid(a.ks[i]) * scale;
  std::vector<float> sv(d), cf(2 * d);
  for (int64_t i = 0; i < d; ++i) sv[i] = det_sigmoid(a.vs[i]);
  step::linear(sv.data(), 1, d, a.vq_w, 2 * d, a.vq_b, cf.data());
  for (int64_t i = 0; i < d; ++i) value_gate[i] = det_sigmoid(cf[d + i]) * det_tanh(cf[i]);
}

float* SegmentPass::get(int64_t n) {
  if (next_ == scratch_.size()) scratch_.emplace_back();
  std::vector<float>& v = scratch_[next_++];
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

float* SegmentPass::transposed(const float* a, int64_t rows, int64_t cols, int64_t rows_pad) {
  float* t = get(cols * rows_pad);
  transpose_pad(a, rows, cols, rows_pad, t);
  return t;
}

float* SegmentPass::layer_norm(const float* x, const float* w, const float* b, Ln* saved) {
  const int64_t d = dims_.dim, n = dims_.rows;
  *saved = {get(n * d), get(n)};
  float* y = get(n * d);
  ln_forward(x, n, d, w, b, dims_.ln_eps, saved->xhat, saved->rstd, y);
  return y;
}

void SegmentPass::layer_norm_backward(const float* dy, const Ln& saved, const float* w, float* dx, bool accumulate,
                                      float* dw, float* db) {
  ln_backward(dy, saved.xhat, saved.rstd, dims_.rows, dims_.dim, w, dx, accumulate, dw, db, tmp_);
}

// Up to this many rows (N = B T, padded) weight_grad runs step::linear_tn on
// dy and x as they are; above it, step::linear on their transposes. The same
// bits either way; at N = 8 and 16 (the few-stream inputs) linear_tn takes
// half the time, at 32 about as long, at 64 and more its strided rows make it
// the slower (RESULTS.md, "Weight gradients without transposes"). With
// AVX-512 it also takes the rows that linear_tn's AVX-512 kernel holds in
// registers (step::linear_tn_in_registers: up to 64 unpadded rows), and
// input_grad takes step::linear_nn on w as it is up to kNnRowsAvx512 rows,
// where its copy of w's column blocks costs less than the transpose; above,
// the transpose's cost is spread over enough rows that linear's faster
// product wins (RESULTS.md, "Gradients without transposes in AVX-512").
constexpr int64_t kDirectRows = 32;
constexpr int64_t kNnRowsAvx512 = 64;

void SegmentPass::weight_grad(const float* dy, const float** dy_t, int64_t n, const float* x, int64_t k, float* dw,
                              float* db) {
  const int64_t rows = dims_.rows, np = dims_.rows_pad;
  if (np <= kDirectRows || step::linear_tn_in_registers(rows, np)) {
    step::linear_tn(dy, x, rows, np, n, k, dw);
    if (db) step::col_sum8(dy, rows, np, n, db);
    return;
  }
  const float* dyt = dy_t && *dy_t ? *dy_t : transposed(dy, rows, n, np);
  if (dy_t) *dy_t = dyt;
  step::linear(dyt, n, np, transposed(x, rows, k, np), k, nullptr, dw);
  if (db) {
    for (int64_t j = 0; j < n; ++j) db[j] = step::sum8(dyt + j * np, np);
  }
}

void SegmentPass::input_grad(const float* dy, int64_t rows, int64_t n, const float* w, int64_t k, float* dx) {
  if (step::avx512() && rows <= kNnRowsAvx512) return step::linear_nn(dy, rows, n, w, k, dx);
  step::linear(dy, rows, n, transposed(w, n, k, n), k, nullptr, dx);
}

double SegmentPass::run(const Shape& sh, const Weights& w, const Start& st, const int64_t* bytes, const Grads& g) {
  next_ = 0;
  const int64_t B = sh.batch, T = sh.seg, d = sh.dim;
  const int64_t N = B * T;
  const int64_t layers = static_cast<int64_t>(w.blocks.size());
  SHAZIP_ASSERT(d % 8 == 0 && N > 0 && static_cast<int64_t>(g.blocks.size()) == layers);
  SHAZIP_ASSERT(sh.attn_layer < layers && static_cast<int64_t>(st.h.size()) == layers);
  static_cast<Shape&>(dims_) = sh;
  dims_.rows = N;
  dims_.rows_pad = round8(N);
  dims_.boom = sh.boom_factor * d;
  dims_.past = sh.attn_layer >= 0 ? st.mem_fill : 0;
  dims_.keys = dims_.past + T;
  saved_.resize(static_cast<size_t>(layers));

  // ---- forward ----
  float* x = get(N * d);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t byte = bytes[b * (T + 1) + t];
      SHAZIP_ASSERT(byte >= 0 && byte < 256);
      std::memcpy(x + (b * T + t) * d, w.embed + byte * d, d * sizeof(float));
    }
  }
  float* qgate = nullptr;
  float* vgate = nullptr;
  if (sh.attn_layer >= 0) {
    qgate = get(d);
    vgate = get(d);
    attention_gates(w.attn, d, qgate, vgate);
  }
  for (int64_t l = 0; l < layers; ++l) {
    BlockSaved& s = saved_[l];
    float* h = lstm_forward(w.blocks[l], st.h[l], st.c[l], x, s);
    if (l == sh.attn_layer) attention_forward(w.attn, st, qgate, vgate, h, s);
    x = boom_forward(w.blocks[l], h, s);
  }

  // Decoder (the embedding, tied) and the cross-entropy: dlogits = (softmax -
  // one-hot) * (1 / N).
  float* dlogits = get(N * 256);
  step::linear(x, N, d, w.embed, 256, w.dec_bias, dlogits);
  double loss = 0;
  const float inv_n = 1.0f / static_cast<float>(N);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      float* p = dlogits + (b * T + t) * 256;
      const int64_t target = bytes[b * (T + 1) + t + 1];
      SHAZIP_ASSERT(target >= 0 && target < 256);
      step::softmax(p, 256);
      // For reporting only: the gradient does not use it.
      loss -= std::log(static_cast<double>(std::max(p[target], std::numeric_limits<float>::min())));
      for (int64_t j = 0; j < 256; ++j) p[j] = (j == target ? p[j] - 1.0f : p[j]) * inv_n;
    }
  }

  // ---- backward ----
  tmp_ = get(std::max<int64_t>(dims_.boom, 4 * d));
  weight_grad(dlogits, nullptr, 256, x, d, g.embed, g.dec_bias);
  float* dx = get(N * d);
  input_grad(dlogits, N, 256, w.embed, d, dx);
  float* qgrad = nullptr;
  float* vgrad = nullptr;
  for (int64_t l = layers - 1; l >= 0; --l) {
    const BlockSaved& s = saved_[l];
    float* dh = boom_backward(w.blocks[l], g.blocks[l], s, dx);
    if (l == sh.attn_layer) {
      qgrad = get(d);
      vgrad = get(d);
      attention_backward(w.attn, g.attn, s, qgate, vgate, dh, qgrad, vgrad);
    }
    lstm_backward(w.blocks[l], g.blocks[l], s, dh, dx);
  }

  // The embedding's rows, in row order.
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      float* row = g.embed + bytes[b * (T + 1) + t] * d;
      const float* src = dx + (b * T + t) * d;
      for (int64_t i = 0; i < d; ++i) row[i] = row[i] + src[i];
    }
  }
  if (sh.attn_layer >= 0) gates_backward(w.attn, g.attn, qgrad, vgrad);
  return loss / static_cast<double>(N);
}

// LayerNorm, then the LSTM over time in (T, B) order, from the segment's
// starting state; returns its output rows in (B, T) order.
float* SegmentPass::lstm_forward(const BlockParams<const float*>& bw, const float* h0, const float* c0,
                                 const float* x, BlockSaved& s) {
  const int64_t B = dims_.batch, T = dims_.seg, d = dims_.dim, N = dims_.rows;
  const float* a = layer_norm(x, bw.ln_start_w, bw.ln_start_b, &s.ln_start);
  s.a_tb = get(N * d);
  tb_from_bt(a, B, T, d, s.a_tb);
  s.hs = get((T + 1) * B * d);
  s.cs = get((T + 1) * B * d);
  s.acts = get(N * 4 * d);
  s.tcs = get(N * d);
  std::memcpy(s.hs, h0, B * d * sizeof(float));
  std::memcpy(s.cs, c0, B * d * sizeof(float));
  float* bias = get(4 * d);
  for (int64_t j = 0; j < 4 * d; ++j) bias[j] = bw.b_ih[j] + bw.b_hh[j];
  float* gates = get(B * 4 * d);
  for (int64_t t = 0; t < T; ++t) {
    step::linear2(s.a_tb + t * B * d, s.hs + t * B * d, B, d, bw.w_ih, bw.w_hh, 4 * d, bias, gates);
    step::lstm_pointwise(gates, s.cs + t * B * d, s.cs + (t + 1) * B * d, s.hs + (t + 1) * B * d,
                         s.acts + t * B * 4 * d, s.tcs + t * B * d, B, d);
  }
  float* h = get(N * d);
  bt_from_tb(s.hs + B * d, B, T, d, h);
  return h;
}

// h = mix * vgate + hq, in place.
void SegmentPass::attention_forward(const AttnParams<const float*>& aw, const Start& st, const float* qgate,
                                    const float* vgate, float* h, BlockSaved& s) {
  const int64_t B = dims_.batch, T = dims_.seg, d = dims_.dim, N = dims_.rows;
  const int64_t P = dims_.past, K = dims_.keys;
  const float* mh = layer_norm(h, aw.ln_mem_w, aw.ln_mem_b, &s.ln_mem);
  s.hq = layer_norm(h, aw.ln_mid_w, aw.ln_mid_b, &s.ln_mid);
  // Keys per stream: the memory's first P slots, then the segment.
  s.keys = get(B * K * d);
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(s.keys + b * K * d, st.mem + b * st.slots * d, P * d * sizeof(float));
    std::memcpy(s.keys + (b * K + P) * d, mh + b * T * d, T * d * sizeof(float));
  }
  float* ql = get(N * d);
  step::linear(s.hq, N, d, aw.q_w, d, aw.q_b, ql);
  s.q0 = layer_norm(ql, aw.q_ln_w, aw.q_ln_b, &s.q_ln);
  s.q = get(N * d);
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t i = 0; i < d; ++i) s.q[r * d + i] = s.q0[r * d + i] * qgate[i];
  }
  // Position t sees the memory and positions 0..t of its segment.
  s.probs = get(N * K);
  s.mix = get(N * d);
  for (int64_t b = 0; b < B; ++b) {
    const float* keys = s.keys + b * K * d;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = b * T + t, count = P + t + 1;
      float* p = s.probs + r * K;
      step::dot8_rows(keys, count, d, s.q + r * d, d, p);
      step::softmax(p, count);
      std::fill(p + count, p + K, 0.0f);
      step::weighted_sum(p, count, keys, d, s.mix + r * d);
    }
  }
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t i = 0; i < d; ++i) h[r * d + i] = s.mix[r * d + i] * vgate[i] + s.hq[r * d + i];
  }
}

// Boom: base = LN_ff(h); u = LN_xff(h) W^T + b; out = the chunks of
// u * sigmoid(1.702 u) summed in order, plus base.
float* SegmentPass::boom_forward(const BlockParams<const float*>& bw, const float* h, BlockSaved& s) {
  const int64_t d = dims_.dim, f = dims_.boom, N = dims_.rows;
  const float* base = layer_norm(h, bw.ln_ff_w, bw.ln_ff_b, &s.ln_ff);
  s.zn = layer_norm(h, bw.ln_xff_w, bw.ln_xff_b, &s.ln_xff);
  s.u = get(N * f);
  s.sig = get(N * f);
  step::linear(s.zn, N, d, bw.boom_w, f, bw.boom_b, s.u);
  step::sigmoid(s.u, N * f, step::kGeluScale, s.sig);
  float* out = get(N * d);
  for (int64_t r = 0; r < N; ++r) {
    const float* u = s.u + r * f;
    const float* sg = s.sig + r * f;
    float* o = out + r * d;
    for (int64_t i = 0; i < d; ++i) o[i] = u[i] * sg[i];
    for (int64_t c = 1; c < dims_.boom_factor; ++c) {
      for (int64_t i = 0; i < d; ++i) o[i] = o[i] + u[c * d + i] * sg[c * d + i];
    }
    for (int64_t i = 0; i < d; ++i) o[i] = o[i] + base[r * d + i];
  }
  return out;
}

// dout: d(the Boom's output). Returns d(its input).
float* SegmentPass::boom_backward(const BlockParams<const float*>& bw, const BlockParams<float*>& bg,
                                  const BlockSaved& s, const float* dout) {
  const int64_t d = dims_.dim, f = dims_.boom, N = dims_.rows;
  float* du = get(N * f);
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t c = 0; c < dims_.boom_factor; ++c) {
      for (int64_t i = 0; i < d; ++i) {
        const int64_t k = r * f + c * d + i;
        const float sg = s.sig[k];
        du[k] = dout[r * d + i] * (sg + ((s.u[k] * step::kGeluScale) * sg) * (1.0f - sg));
      }
    }
  }
  float* dzn = get(N * d);
  input_grad(du, N, f, bw.boom_w, d, dzn);
  weight_grad(du, nullptr, f, s.zn, d, bg.boom_w, bg.boom_b);
  float* dh = get(N * d);
  layer_norm_backward(dzn, s.ln_xff, bw.ln_xff_w, dh, false, bg.ln_xff_w, bg.ln_xff_b);
  layer_norm_backward(dout, s.ln_ff, bw.ln_ff_w, dh, true, bg.ln_ff_w, bg.ln_ff_b);
  return dh;
}

// dh: d(h) for h = mix * vgate + hq, replaced by d(the LSTM's output);
// qgrad and vgrad get d(query gate) and d(value gate).
void SegmentPass::attention_backward(const AttnParams<const float*>& aw, const AttnParams<float*>& ag,
                                     const BlockSaved& s, const float* qgate, const float* vgate, float* dh,
                                     float* qgrad, float* vgrad) {
  const int64_t B = dims_.batch, T = dims_.seg, d = dims_.dim, N = dims_.rows;
  const int64_t P = dims_.past, K = dims_.keys;
  col_dot(dh, s.mix, N, d, vgrad);
  float* dmix = get(N * d);
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t i = 0; i < d; ++i) dmix[r * d + i] = dh[r * d + i] * vgate[i];
  }
  float* dq = get(N * d);
  float* dmh = get(N * d);
  float* ds = get(N * K);
  float* dp = get(K);
  float* col = get(2 * T);
  float* part = get(d);
  for (int64_t b = 0; b < B; ++b) {
    const float* keys = s.keys + b * K * d;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = b * T + t, count = P + t + 1;
      const float* p = s.probs + r * K;
      float* dsr = ds + r * K;
      // mix = p keys; p = softmax(s): ds = p * (dp - dot(p, dp)).
      step::dot8_rows(keys, count, d, dmix + r * d, d, dp);
      const float pdp = step::dot8(p, dp, count);
      for (int64_t j = 0; j < count; ++j) dsr[j] = p[j] * (dp[j] - pdp);
      std::fill(dsr + count, dsr + K, 0.0f);
      // s = q keys^T: dq = ds keys.
      step::weighted_sum(dsr, count, keys, d, dq + r * d);
    }
    // The segment's keys (the memory's take no gradient): key P + j is seen
    // by positions t >= j, through p (times dmix) and through s (times q);
    // two chains over t, added.
    for (int64_t j = 0; j < T; ++j) {
      const int64_t n = T - j;
      for (int64_t t = j; t < T; ++t) {
        col[t - j] = s.probs[(b * T + t) * K + P + j];
        col[T + t - j] = ds[(b * T + t) * K + P + j];
      }
      float* out = dmh + (b * T + j) * d;
      step::weighted_sum(col, n, dmix + (b * T + j) * d, d, out);
      step::weighted_sum(col + T, n, s.q + (b * T + j) * d, d, part);
      for (int64_t i = 0; i < d; ++i) out[i] = out[i] + part[i];
    }
  }
  // q = q0 * qgate.
  col_dot(dq, s.q0, N, d, qgrad);
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t i = 0; i < d; ++i) dq[r * d + i] = dq[r * d + i] * qgate[i];
  }
  float* dql = get(N * d);
  layer_norm_backward(dq, s.q_ln, aw.q_ln_w, dql, false, ag.q_ln_w, ag.q_ln_b);
  // ql = hq q_w^T + q_b; hq also passes dh on (the residual).
  float* dhq = get(N * d);
  input_grad(dql, N, d, aw.q_w, d, dhq);
  for (int64_t i = 0; i < N * d; ++i) dhq[i] = dhq[i] + dh[i];
  weight_grad(dql, nullptr, d, s.hq, d, ag.q_w, ag.q_b);
  layer_norm_backward(dhq, s.ln_mid, aw.ln_mid_w, dh, false, ag.ln_mid_w, ag.ln_mid_b);
  layer_norm_backward(dmh, s.ln_mem, aw.ln_mem_w, dh, true, ag.ln_mem_w, ag.ln_mem_b);
}

// The LSTM back over time, then its LayerNorm: dh (B, T order) is d(h_t);
// writes d(the block's input) to dx.
void SegmentPass::lstm_backward(const BlockParams<const float*>& bw, const BlockParams<float*>& bg,
                                const BlockSaved& s, const float* dh, float* dx) {
  const int64_t B = dims_.batch, T = dims_.seg, d = dims_.dim, N = dims_.rows;
  float* go = get(N * d);
  tb_from_bt(dh, B, T, d, go);
  float* dg = get(N * 4 * d);
  float* dh_next = get(B * d);
  float* dc = get(B * d);
  std::fill(dh_next, dh_next + B * d, 0.0f);
  std::fill(dc, dc + B * d, 0.0f);
  const float* whh_t = transposed(bw.w_hh, 4 * d, d, 4 * d);
  for (int64_t t = T - 1; t >= 0; --t) {
    const float* act = s.acts + t * B * 4 * d;
    const float* tc = s.tcs + t * B * d;
    const float* cp = s.cs + t * B * d;
    const float* gh = go + t * B * d;
    float* dgt = dg + t * B * 4 * d;
    for (int64_t b = 0; b < B; ++b) {
      const float* ab = act + b * 4 * d;
      float* row = dgt + b * 4 * d;
      for (int64_t j = 0; j < d; ++j) {
        const int64_t k = b * d + j;
        const float ig = ab[j], fg = ab[d + j], gg = ab[2 * d + j], og = ab[3 * d + j];
        const float dhk = gh[k] + dh_next[k];
        const float dct = dc[k] + dhk * og * (1.0f - tc[k] * tc[k]);
        row[j] = dct * gg * ig * (1.0f - ig);
        row[d + j] = dct * cp[k] * fg * (1.0f - fg);
        row[2 * d + j] = dct * ig * (1.0f - gg * gg);
        row[3 * d + j] = dhk * tc[k] * og * (1.0f - og);
        dc[k] = dct * fg;
      }
    }
    if (t > 0) step::linear(dgt, B, 4 * d, whh_t, d, nullptr, dh_next);
  }
  const float* dgt = nullptr;  // dg transposed by the first product that takes transposes, for both
  weight_grad(dg, &dgt, 4 * d, s.a_tb, d, bg.w_ih, bg.b_ih);
  weight_grad(dg, &dgt, 4 * d, s.hs, d, bg.w_hh, nullptr);  // h_0 .. h_{T-1}
  std::memcpy(bg.b_hh, bg.b_ih, 4 * d * sizeof(float));
  float* da_tb = get(N * d);
  input_grad(dg, N, 4 * d, bw.w_ih, d, da_tb);
  float* da = get(N * d);
  bt_from_tb(da_tb, B, T, d, da);
  layer_norm_backward(da, s.ln_start, bw.ln_start_w, dx, false, bg.ln_start_w, bg.ln_start_b);
}

// The gates' parameters, from d(query gate) and d(value gate).
void SegmentPass::gates_backward(const AttnParams<const float*>& aw, const AttnParams<float*>& ag,
                                 const float* qgrad, const float* vgrad) {
  const int64_t d = dims_.dim;
  const float scale = rsqrt_rn(static_cast<float>(d));
  for (int64_t i = 0; i < d; ++i) {
    const float sq = det_sigmoid(aw.qs[i]), sk = det_sigmoid(aw.ks[i]);
    ag.qs[i] = qgrad[i] * (sk * scale) * (sq * (1.0f - sq));
    ag.ks[i] = qgrad[i] * (sq * scale) * (sk * (1.0f - sk));
  }
  float* sv = get(d);
  float* cf = get(2 * d);
  float* dcf = get(2 * d);
  for (int64_t i = 0; i < d; ++i) sv[i] = det_sigmoid(aw.vs[i]);
  step::linear(sv, 1, d, aw.vq_w, 2 * d, aw.vq_b, cf);
  for (int64_t i = 0; i < d; ++i) {
    const float tc = det_tanh(cf[i]), sf = det_sigmoid(cf[d + i]);
    dcf[i] = vgrad[i] * sf * (1.0f - tc * tc);
    dcf[d + i] = vgrad[i] * tc * (sf * (1.0f - sf));
  }
  std::memcpy(ag.vq_b, dcf, 2 * d * sizeof(float));
  for (int64_t j = 0; j < 2 * d; ++j) {
    for (int64_t i = 0; i < d; ++i) ag.vq_w[j * d + i] = dcf[j] * sv[i];
  }
  float* dsv = get(d);
  step::weighted_sum(dcf, 2 * d, aw.vq_w, d, dsv);
  for (int64_t i = 0; i < d; ++i) ag.vs[i] = dsv[i] * (sv[i] * (1.0f - sv[i]));
}

namespace {

// One element of the Adam step (adam_step below). Without momentum (beta1 =
// 0, the presets' setting) the first moment is the clipped gradient and m is
// neither read nor written: torch.optim.Adam's 0 * m + 1 * g is g but for the
// sign of a zero (+0 where g is -0 and m is not negative), and a zero m / denom
// of either sign leaves every weight but a -0 as it was, while no weight is
// ever -0 (init_values draws none, and w - x is -0 only for w = -0). A NaN in m
// comes with one in v, and w is then NaN either way (the subtraction keeps
// w's). So the steps are the same bits; m was a quarter of Adam's memory
// traffic (RESULTS.md, "Adam without momentum and without the divider").
inline void adam_element(const AdamConstants& k, const float* w, float* w_out, float* g, float* m, float* v,
                         int64_t i) {
  const float gi = k.coef < 1.0f ? g[i] * k.coef : g[i];
  g[i] = gi;
  float mi = gi;
  if (k.momentum()) m[i] = mi = k.b1 * m[i] + k.c1 * gi;
  v[i] = k.b2 * v[i] + k.c2 * (gi * gi);
  w_out[i] = w[i] - k.step_size * (mi / (std::sqrt(v[i]) / k.bias2_sqrt + k.eps));
}

#if defined(__x86_64__)
// sqrt(v) / c, correctly rounded, for s = sqrt(v) >= 0 and the bias
// correction c in (0, 1] with its reciprocal y = RN(1 / c), without the
// divider (the step's divisions and square root had bound it in cache): q1 =
// RN(s y) is within 1.5 ulp of s / c, so one correction q + RN(s - c q) y
// (the remainder by FMA) leaves q2 within 0.5 ulp + 2^-22 ulp, a faithful
// quotient, and by Markstein's theorem (y within 2^-24 of 1 / c, relative;
// s, c and the remainders normal or zero) the second correction rounds to
// RN(s / c) itself. s = +inf or NaN passes through, as its quotient by c
// would. Tested against the division (all of a binade for some c).
__attribute__((target("avx2,fma"))) inline __m256 div_by_bias2(__m256 s, __m256 c, __m256 y) {
  __m256 q = _mm256_mul_ps(s, y);
  q = _mm256_fmadd_ps(_mm256_fnmadd_ps(c, q, s), y, q);
  q = _mm256_fmadd_ps(_mm256_fnmadd_ps(c, q, s), y, q);
  return _mm256_blendv_ps(q, s, _mm256_cmp_ps(s, _mm256_set1_ps(std::numeric_limits<float>::infinity()), _CMP_NLT_UQ));
}

__attribute__((target("avx2,fma"))) void divide_by_bias2_avx2(const float* s, int64_t n, float c, float* out) {
  const __m256 cv = _mm256_set1_ps(c), y = _mm256_set1_ps(1.0f / c);
  for (int64_t i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, div_by_bias2(_mm256_loadu_ps(s + i), cv, y));
}

// The same operations on eight lanes: IEEE multiply, add, divide and square
// root are exact per lane, and div_by_bias2 is the division, so every element
// equals adam_element's.
template <bool kMomentum>
__attribute__((target("avx2,fma"))) void adam_avx2(const AdamConstants& k, int64_t n, const float* w, float* w_out,
                                                   float* g, float* m, float* v) {
  const __m256 coef = _mm256_set1_ps(k.coef), b1 = _mm256_set1_ps(k.b1), c1 = _mm256_set1_ps(k.c1);
  const __m256 b2 = _mm256_set1_ps(k.b2), c2 = _mm256_set1_ps(k.c2), step = _mm256_set1_ps(k.step_size);
  const __m256 bias2 = _mm256_set1_ps(k.bias2_sqrt), inv_bias2 = _mm256_set1_ps(1.0f / k.bias2_sqrt);
  const __m256 eps = _mm256_set1_ps(k.eps);
  const bool clip = k.coef < 1.0f;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 gv = _mm256_loadu_ps(g + i);
    if (clip) {
      gv = _mm256_mul_ps(gv, coef);
      _mm256_storeu_ps(g + i, gv);
    }
    __m256 mv = gv;
    if (kMomentum) {
      mv = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, gv));
      _mm256_storeu_ps(m + i, mv);
    }
    const __m256 vv =
        _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(c2, _mm256_mul_ps(gv, gv)));
    _mm256_storeu_ps(v + i, vv);
    const __m256 denom = _mm256_add_ps(div_by_bias2(_mm256_sqrt_ps(vv), bias2, inv_bias2), eps);
    _mm256_storeu_ps(w_out + i,
                     _mm256_sub_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(step, _mm256_div_ps(mv, denom))));
  }
  for (; i < n; ++i) adam_element(k, w, w_out, g, m, v, i);
}
#endif

}  // namespace

float grad_norm(const float* g, int64_t n, bool blocked) {
  if (!blocked) return std::sqrt(step::dot8(g, g, n));
  const int64_t blocks = (n + kNormBlock - 1) / kNormBlock;
  std::vector<float> partial(static_cast<size_t>(blocks));
  for (int64_t k = 0; k < blocks; ++k) {
    const float* b = g + k * kNormBlock;
    partial[k] = step::dot8(b, b, std::min(kNormBlock, n - k * kNormBlock));
  }
  return std::sqrt(step::sum8(partial.data(), blocks));
}

void adam_step(const AdamConfig& cfg, double beta1_pow, double beta2_pow, int64_t n, float* w, float* g, float* m,
               float* v) {
  adam_range(adam_constants(cfg, beta1_pow, beta2_pow, n, g), 0, n, w, w, g, m, v);
}

AdamConstants adam_constants(const AdamConfig& cfg, double beta1_pow, double beta2_pow, int64_t n, const float* g) {
  // Clipping as clip_grad_norm_: the coefficient min(clip / (norm + 1e-6), 1).
  AdamConstants k;
  const float norm = grad_norm(g, n, cfg.block_norm);
  k.coef = static_cast<float>(cfg.clip) / (norm + 1e-6f);
  // Adam as torch.optim.Adam, each constant rounded once to float.
  k.b1 = static_cast<float>(cfg.beta1);
  k.c1 = static_cast<float>(1.0 - cfg.beta1);
  k.b2 = static_cast<float>(cfg.beta2);
  k.c2 = static_cast<float>(1.0 - cfg.beta2);
  k.step_size = static_cast<float>(cfg.lr / (1.0 - beta1_pow));
  k.bias2_sqrt = static_cast<float>(std::sqrt(1.0 - beta2_pow));
  k.eps = static_cast<float>(cfg.eps);
  return k;
}

void divide_by_bias2(const float* s, int64_t n, float c, float* out) {
  int64_t i = 0;
#if defined(__x86_64__)
  if (step::simd()) {
    divide_by_bias2_avx2(s, n, c, out);
    i = n / 8 * 8;
  }
#endif
  for (; i < n; ++i) out[i] = s[i] / c;
}

void adam_range(const AdamConstants& k, int64_t begin, int64_t end, const float* w, float* w_out, float* g, float* m,
                float* v) {
#if defined(__x86_64__)
  if (step::simd()) {
    if (k.momentum()) return adam_avx2<true>(k, end - begin, w + begin, w_out + begin, g + begin, m + begin, v + begin);
    return adam_avx2<false>(k, end - begin, w + begin, w_out + begin, g + begin, nullptr, v + begin);
  }
#endif
  for (int64_t i = begin; i < end; ++i) adam_element(k, w, w_out, g, m, v, i);
}

}  // namespace shazip::model::train
