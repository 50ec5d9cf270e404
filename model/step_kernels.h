// shazip's own CPU kernels for the step path (format 6, ModelConfig::step_kernels).
//
// The step path runs one position of B streams: a few products of a (B x d)
// matrix with a weight matrix, each far too small for a BLAS to pay for its
// packing, and a few dozen more LibTorch calls, each with its dispatch
// overhead. These kernels do the whole step in plain loops over raw arrays,
// reading the weights where LibTorch keeps them, and define every sum's
// order, so that the result does not depend on the BLAS, on ATen's CPU
// capability or on the thread count. Two sums:
//
//   dot8   eight running sums, lane l taking the products of the elements
//          i = l, l + 8, l + 16, ... in order, each with one fused
//          multiply-add (fmaf: rounded once), then
//          ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7));
//          sum8 is the same with additions
//   chain  one running sum from 0, a fused multiply-add per term, in order
//
// With AVX2 and FMA the kernels run eight lanes at a time, elsewhere plain
// C++ with std::fmaf; the two give the same bits (tested), so an archive does
// not depend on which one ran. docs/FORMAT.md ("Step kernels") gives the whole
// step in these terms.
//
// The elementwise parts (det_expf, the lane reduction, the LSTM cell, the
// activation) are model/kernel_math.h's, which the CUDA step kernels
// (model/cuda/step_kernels.h) share. Torch-free: raw, contiguous, row-major
// float arrays.
#pragma once

#include <cstdint>
#include <vector>

#include "model/kernel_math.h"
#include "model/train_kernels.h"

namespace shazip::model::step {

// One position of B streams on the GPU's step kernels
// (model/cuda/step_kernels.h): the model's shape, and the streams'
// recurrent state there (device pointers: per layer h and c (B, d), and the
// memory (B, S, d)), which the step updates in place. ShaRnn::step_shape()
// and step_state() fill them.
struct Shape {
  int64_t batch = 0;        // B streams
  int64_t dim = 0;          // d, a multiple of 8, at most 8192
  int64_t boom_factor = 0;  // the Boom's width f = boom_factor * d
  int64_t attn_layer = -1;  // the block with attention, or -1
  int64_t slots = 0;        // the memory's slots S (mem_len + 1) when attn_layer >= 0
  float ln_eps = 0;
};
struct State {
  std::vector<float*> h, c;
  float* mem = nullptr;
};

// The Boom's activation is x * sigmoid(kGeluScale * x) (the reference's GELU
// approximation; model/kernel_math.h).
using model::kGeluScale;

float sum8(const float* a, int64_t n);
float dot8(const float* a, const float* b, int64_t n);
// out[r] = dot8(rows + r * stride, v, n) for r < count.
void dot8_rows(const float* rows, int64_t count, int64_t stride, const float* v, int64_t n, float* out);

// y (rows x n) = x (rows x k) W^T + bias: y[r][j] = dot8(x_r, W_j, k) + bias[j],
// with W (n x k, row-major) as LibTorch stores a Linear's weight. k and n
// multiples of 8; bias may be null (no addition); y must not overlap the inputs.
void linear(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* bias,
            float* y);

// The same over two inputs side by side, as the LSTM's gates: y[r][j] =
// dot8([x_r, h_r], [wx_j, wh_j], 2k) + bias[j], x and h (rows x k), wx and
// wh (n x k).
void linear2(const float* x, const float* h, int64_t rows, int64_t k, const float* wx, const float* wh,
             int64_t n, const float* bias, float* y);

// y (n x k) = a^T b over the rows, a (rows x n) and b (rows x k) row-major:
// y[j][i] = dot8 of column j of a and column i of b, both zero-padded to
// rows_pad rows (a multiple of 8, at least rows). The bits of `linear` on the
// padded transposes (linear(a^T, n, rows_pad, b^T, k, nullptr, y)), without
// making them: the training step's weight gradients over few rows. n and k
// multiples of 8.
void linear_tn(const float* a, const float* b, int64_t rows, int64_t rows_pad, int64_t n, int64_t k, float* y);
// Whether linear_tn runs its AVX-512 kernel on these rows: where `avx512()`,
// for 1 to 64 rows without padding (rows == rows_pad), which it takes at
// 0.4-0.6x the time of `linear` on the transposes.
bool linear_tn_in_registers(int64_t rows, int64_t rows_pad);

// y (rows x k) = x (rows x n) w, w (n x k) row-major: y[r][i] = dot8 of row r
// of x and column i of w, the bits of `linear` on w's transpose
// (linear(x, rows, n, w^T, k, nullptr, y)) without making it: the training
// step's input gradients. An AVX-512 kernel where `avx512()`; elsewhere the
// plain definition, slower than transposing (the training step transposes
// there). n and k multiples of 8.
void linear_nn(const float* x, int64_t rows, int64_t n, const float* w, int64_t k, float* y);

// y[j] = sum8 of column j of a (rows x n), zero-padded to rows_pad rows (the
// bits of sum8 on the padded transpose's row j). n a multiple of 8.
void col_sum8(const float* a, int64_t rows, int64_t rows_pad, int64_t n, float* y);

// y (n) = the chain over i < count of weights[i] * rows[i][j], rows (count x n);
// n a multiple of 8. (The attention's mix of its keys.)
void weighted_sum(const float* weights, int64_t count, const float* rows, int64_t n, float* y);

// Row-wise LayerNorm of x (rows x d) into y (may be x): mean = sum8 / d,
// c = x - mean, var = dot8(c, c) / d, y = c * (1 / sqrt(var + eps)) * w + b.
void layer_norm(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps,
                float* y);

// In place over n > 0 entries: exp(x - max) with det_expf, divided by their sum8.
void softmax(float* x, int64_t n);

// In place: x * (1 / (1 + det_expf(-(x * 1.702f)))), the Boom's activation.
void gelu(float* x, int64_t n);

// y[i] = 1 / (1 + det_expf(-(x[i] * scale))) (the training step keeps the
// Boom's sigmoid for its backward pass; scale 1 is the plain sigmoid).
void sigmoid(const float* x, int64_t n, float scale, float* y);

// The LSTM cell's pointwise pass for a batch (the step path and the training
// step's fused layer, model/lstm.h): gates (B, 4d) pre-activations in the
// order i, f, g, o (both projections and both biases already added), c_prev
// (B, d); writes c = f * c_prev + i * g and h = o * tanh(c) (B, d), with
// sigmoid(x) = 1 / (1 + det_expf(-x)) and tanh(x) = 2 / (1 + det_expf(-2x)) - 1.
// With `saved_acts` / `saved_tanh_c` non-null also the activated gates (B, 4d)
// and tanh(c) (B, d) for the backward pass. c may be c_prev (in place).
void lstm_pointwise(const float* gates, const float* c_prev, float* c, float* h, float* saved_acts,
                    float* saved_tanh_c, int64_t batch, int64_t d);

// One position of B streams on these kernels (format 6 on; docs/FORMAT.md,
// "Step kernels"): bytes (B) the streams' previous bytes, w the weights (as
// the training kernels take them), the attention's cached gates
// (train::attention_gates; null without attention). Updates the state in
// place, with *mem_pos and *mem_fill when the model has attention, and
// writes the logits (B, 256). `scratch` is resized as needed.
void forward(const Shape& shape, const train::Weights& w, const float* query_gate, const float* value_gate,
             const State& state, int64_t* mem_pos, int64_t* mem_fill, const int64_t* bytes,
             std::vector<float>& scratch, float* logits);

// Whether the AVX2 + FMA versions are used (when the CPU has them). For the
// tests, which compare the two; returns whether they are now used.
bool set_simd(bool on);
bool simd();

// Whether linear's products (linear, linear2, the training step's) use the
// AVX-512 kernel, which holds two rows' eight lanes in one register: the same
// lanes, chains and reduction as the AVX2 kernel, so the same bits. Used
// where the CPU has AVX-512F and AVX-512DQ (and AVX2 is in use), unless the
// environment sets SHAZIP_NO_AVX512 (for comparisons). For the tests and
// benchmarks; returns whether it is now used.
bool set_avx512(bool on);
bool avx512();

}  // namespace shazip::model::step
