// shazip's own CPU training step (format 7, ModelConfig::train_kernels).
//
// The training step runs the SHA-RNN teacher-forced over the segment just
// coded (B streams x T positions), the mean cross-entropy's gradient back
// through it, and one Adam step. On LibTorch that was about 150 operator
// calls, each with its dispatch and autograd bookkeeping, on matrices of a
// hundred rows: the calls cost more than the arithmetic. Here the forward
// pass saves what the backward pass needs, the backward pass writes every
// gradient, and the products are step_kernels.h's `linear` (dot8 sums, the
// weights and activations transposed where a product runs over rows), so
// the whole step is defined by shazip's code: it depends neither on the
// BLAS nor on ATen's CPU capability nor on LibTorch's version, and its AVX2
// and plain C++ versions give the same bits. docs/FORMAT.md ("Training
// kernels") gives every operation.
//
// Torch-free: raw, contiguous, row-major float arrays.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shazip::model::train {

// The parameters of the model (or their gradients, with P = float*), laid
// out as LibTorch keeps them (model/sha_rnn.h has their shapes).
template <class P>
struct BlockParams {
  P ln_start_w, ln_start_b;
  P w_ih, w_hh, b_ih, b_hh;  // LSTM (4d, d), (4d, d), (4d), (4d); gates i, f, g, o
  P ln_ff_w, ln_ff_b, ln_xff_w, ln_xff_b;
  P boom_w, boom_b;          // (f, d), (f)
};
template <class P>
struct AttnParams {
  P ln_mem_w, ln_mem_b, ln_mid_w, ln_mid_b;
  P q_w, q_b, q_ln_w, q_ln_b;  // (d, d), (d), (d), (d)
  P qs, ks, vs;                // gates before sigmoid, (d)
  P vq_w, vq_b;                // (2d, d), (2d)
};
template <class P>
struct Params {
  P embed, dec_bias;  // (256, d), (256)
  std::vector<BlockParams<P>> blocks;
  AttnParams<P> attn;  // when attn_layer >= 0
};
using Weights = Params<const float*>;
using Grads = Params<float*>;

struct Shape {
  int64_t batch = 0, seg = 0;  // B streams, T positions
  int64_t dim = 0;             // d, a multiple of 8
  int64_t boom_factor = 0;
  int64_t attn_layer = -1;
  float ln_eps = 0;
};

// Where the segment starts: per layer the LSTM's h and c (B, d), and the
// attention memory (B, slots, d) of which slots [0, mem_fill) are keys.
struct Start {
  std::vector<const float*> h, c;
  const float* mem = nullptr;
  int64_t slots = 0, mem_fill = 0;
};

// The attention's gates from their parameters (FORMAT.md): query gate (d) =
// sigmoid(qs) * sigmoid(ks) * (1 / sqrt(d)); value gate (d) = sigmoid(f) *
// tanh(c) with [c, f] = vq_w sigmoid(vs) + vq_b.
void attention_gates(const AttnParams<const float*>& a, int64_t d, float* query_gate, float* value_gate);

class SegmentPass {
 public:
  // bytes (B, T + 1) row-major, column 0 the byte before the segment. Writes
  // every gradient of the mean cross-entropy of bytes[.][1..T] (overwriting
  // them) and returns that cross-entropy in nats.
  double run(const Shape& shape, const Weights& w, const Start& start, const int64_t* bytes, const Grads& g);

 private:
  struct Ln {
    float* xhat;  // (rows, d)
    float* rstd;  // (rows)
  };
  struct BlockSaved {
    Ln ln_start;
    float *a_tb, *hs, *cs, *acts, *tcs;    // LSTM, in (T, B) order
    Ln ln_mem, ln_mid, q_ln;               // attention
    float *hq, *keys, *q0, *q, *probs, *mix;
    Ln ln_ff, ln_xff;                      // Boom
    float *zn, *u, *sig;
  };
  // The shape, and what follows from it for this run.
  struct Dims : Shape {
    int64_t rows = 0, rows_pad = 0;  // N = B T, and N rounded up to a multiple of 8
    int64_t boom = 0;                // f = boom_factor d
    int64_t past = 0, keys = 0;      // the memory's keys, and all keys per stream
  };

  float* get(int64_t n);  // scratch for this run; contents undefined
  // LayerNorm of the N rows of x into new scratch, keeping xhat and rstd in
  // *saved; and its backward pass (dx written, or added to with `accumulate`).
  float* layer_norm(const float* x, const float* w, const float* b, Ln* saved);
  void layer_norm_backward(const float* dy, const Ln& saved, const float* w, float* dx, bool accumulate, float* dw,
                           float* db);
  // a (rows x cols) transposed into scratch, zero-padded to rows_pad columns.
  float* transposed(const float* a, int64_t rows, int64_t cols, int64_t rows_pad);
  // dw (n x k) = dy^T x over the N rows of dy (N x n) and x (N x k), as
  // step::linear on their transposes zero-padded to rows_pad; db (n, may be
  // null) = the sum8 of each padded column of dy. dy_t (may be null): where
  // the product takes transposes, dy so transposed (n x rows_pad) is kept in
  // *dy_t, made by the first call that needs it and reused by the next.
  void weight_grad(const float* dy, const float** dy_t, int64_t n, const float* x, int64_t k, float* dw, float* db);
  // dx (rows x k) = dy (rows x n) w, w (n x k).
  void input_grad(const float* dy, int64_t rows, int64_t n, const float* w, int64_t k, float* dx);

  float* lstm_forward(const BlockParams<const float*>& bw, const float* h0, const float* c0, const float* x,
                      BlockSaved& s);
  void attention_forward(const AttnParams<const float*>& aw, const Start& st, const float* qgate,
                         const float* vgate, float* h, BlockSaved& s);
  float* boom_forward(const BlockParams<const float*>& bw, const float* h, BlockSaved& s);
  float* boom_backward(const BlockParams<const float*>& bw, const BlockParams<float*>& bg, const BlockSaved& s,
                       const float* dout);
  void attention_backward(const AttnParams<const float*>& aw, const AttnParams<float*>& ag, const BlockSaved& s,
                          const float* qgate, const float* vgate, float* dh, float* qgrad, float* vgrad);
  void lstm_backward(const BlockParams<const float*>& bw, const BlockParams<float*>& bg, const BlockSaved& s,
                     const float* dh, float* dx);
  void gates_backward(const AttnParams<const float*>& aw, const AttnParams<float*>& ag, const float* qgrad,
                      const float* vgrad);

  std::vector<std::vector<float>> scratch_;
  std::size_t next_ = 0;
  std::vector<BlockSaved> saved_;
  Dims dims_;
  float* tmp_ = nullptr;  // a row of scratch for the LayerNorm backward passes
};

// The gradient's global 2-norm for the clip. Formats 7-9: sqrt of one dot8
// over all n floats. With `blocked` (format 10, ModelConfig::block_norm):
// the dot8 of each block of kNormBlock floats (the last one shorter), then
// sqrt of the sum8 of the blocks' results, the same arithmetic in an order
// that a GPU spreads over its threads (model/cuda/train_kernels.h).
constexpr int64_t kNormBlock = 4096;
float grad_norm(const float* g, int64_t n, bool blocked);

// Clips the global 2-norm of the gradient g (n floats) to `clip` and takes one
// Adam step on w with the moments m, v (FORMAT.md, "Training kernels").
// `step` counts from 1; beta1_pow and beta2_pow are beta1^step and
// beta2^step (the caller keeps them, by repeated multiplication). Without
// momentum (beta1 = 0) m is neither read nor written and may be null: the
// first moment is then the clipped gradient (same bits, train_kernels.cpp).
struct AdamConfig {
  double lr, beta1, beta2, eps, clip;
  bool block_norm = false;  // grad_norm()'s `blocked`
};
void adam_step(const AdamConfig& cfg, double beta1_pow, double beta2_pow, int64_t n, float* w, float* g, float* m,
               float* v);

// adam_step in two parts, for threads that share it: the step's constants,
// with the clip's coefficient from the norm of all of g (n floats); then
// elements [begin, end) of the step, any ranges in any order on any thread,
// element by element the same bits, from the weights w into w_out (w itself
// or other floats: at training lag 1 the step path keeps reading w while
// the trainer writes the next weights beside it, KernelPredictor).
struct AdamConstants {
  float coef, b1, c1, b2, c2, step_size, bias2_sqrt, eps;
  // Without it (b1 = 0: beta1 = 0, or too small for a float) c1 is 1.
  bool momentum() const { return b1 != 0.0f; }
};
AdamConstants adam_constants(const AdamConfig& cfg, double beta1_pow, double beta2_pow, int64_t n, const float* g);
void adam_range(const AdamConstants& k, int64_t begin, int64_t end, const float* w, float* w_out, float* g, float* m,
                float* v);

// out[i] = s[i] / c, correctly rounded, for s[i] >= 0 (or NaN) and c in
// (0, 1]: the Adam step's sqrt(v) / bias2_sqrt, as adam_range computes it
// (in AVX2, two FMA corrections of s[i] * RN(1 / c) instead of a division).
// For the tests.
void divide_by_bias2(const float* s, int64_t n, float c, float* out);

}  // namespace shazip::model::train
