// See step_kernels.h. Every kernel computes its outputs with the sums of
// model/step_kernels.h, each output's sum in one thread (a dot8's eight lanes
// in eight registers, a chain in one; in the tiled products each lane's
// chain in one thread, the lanes added by another), or, for the row
// statistics, in eight threads of one block (lane l in thread l) reduced by
// thread 0: the order of every floating-point operation is the CPU's, so
// the launch shape changes the speed, never the bits. Elementwise
// arithmetic comes from model/kernel_math.h, which the CPU kernels use too.
#include "model/cuda/step_kernels.h"

#include <atomic>
#include <cmath>

#include "model/cuda/kernels_common.cuh"
#include "model/kernel_math.h"

namespace shazip::model::SHAZIP_CUDA_NS {
namespace {

// --- row statistics: LayerNorm and softmax ---------------------------------

struct LnArgs {
  const float* x;          // rows of d, x_stride apart; or, with gather, embed rows
  int64_t x_stride;
  const int64_t* gather;   // null, or the byte whose embedding row is row r
  const float *w, *b;      // the LayerNorm's weight and bias
  float* y;                // out: rows y_stride apart (may be x)
  int64_t y_stride;
  const float* post;       // null, or a vector y is multiplied by afterwards
  const float *w2, *b2;    // a second LayerNorm of the same rows (w2 null: none)
  float* y2;               // its output, rows of d
  int64_t d;
  float eps;
};

// step::layer_norm of one row per block: mean = sum8 / d, c = x - mean,
// var = dot8(c, c) / d, y = c * (1 / sqrt(var + eps)) * w + b.
__global__ void layer_norm_kernel(LnArgs a) {
  float* c = simt::dynamic_shared<float>();  // the centred row, d floats
  __shared__ float lanes[kLanes];
  __shared__ float stat;
  const int64_t r = blockIdx.x;
  const float* x = a.gather ? a.x + a.gather[r] * a.d : a.x + r * a.x_stride;
  const float fd = static_cast<float>(a.d);
  lane_dot(x, nullptr, a.d, lanes, &stat);
  const float mean = stat / fd;
  for (int64_t i = threadIdx.x; i < a.d; i += blockDim.x) c[i] = x[i] - mean;
  __syncthreads();
  lane_dot(c, c, a.d, lanes, &stat);
  const float rstd = rsqrt_rn(stat / fd + a.eps);
  float* y = a.y + r * a.y_stride;
  for (int64_t i = threadIdx.x; i < a.d; i += blockDim.x) {
    const float v = c[i] * rstd * a.w[i] + a.b[i];
    y[i] = a.post ? v * a.post[i] : v;
    if (a.w2) a.y2[r * a.d + i] = c[i] * rstd * a.w2[i] + a.b2[i];
  }
}

// step::softmax over scores[b][0..n) (rows `stride` apart), one row per
// block: exp(x - max) with det_expf, divided by their sum8. The maximum is
// order-free.
__global__ void softmax_kernel(float* scores, int64_t stride, int64_t n) {
  block_softmax(scores + blockIdx.x * stride, n);
}

// --- products ---------------------------------------------------------------

// The attention's scores: scores[b][s] = dot8(key s of stream b, q_b, d) for
// s < keys (step::dot8_rows; the key's products are the first operands).
__global__ void scores_kernel(const float* mem, int64_t slots, int64_t keys, int64_t d, const float* q,
                              float* scores) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (s >= keys) return;
  const float* key = mem + (b * slots + s) * d;
  const float* qb = q + b * d;
  float lanes[kLanes] = {};
  for (int64_t i = 0; i < d; i += kLanes) {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) lanes[l] = fma_rn(key[i + l], qb[i + l], lanes[l]);
  }
  scores[b * slots + s] = reduce_lanes(lanes);
}

// The attention's output for element j of stream b: step::weighted_sum (a
// chain over the keys in storage order), times the value gate, plus the
// query side's LayerNorm: out = mix * value_gate + hq.
__global__ void mix_kernel(const float* mem, int64_t slots, int64_t keys, int64_t d, const float* scores,
                           const float* __restrict__ value_gate, const float* hq, float* out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (j >= d) return;
  const float* key = mem + b * slots * d + j;
  const float* wt = scores + b * slots;
  float acc = 0.0f;
  for (int64_t s = 0; s < keys; ++s) acc = fma_rn(wt[s], key[s * d], acc);
  out[b * d + j] = acc * value_gate[j] + hq[b * d + j];
}

// train::attention_gates, in two passes: sv = sigmoid(vs) and the query gate;
// then [c, f] = vq_w sv + vq_b (step::linear, one row) and the value gate
// sigmoid(f) * tanh(c).
__global__ void gates_kernel(const float* qs, const float* ks, const float* vs, float scale, int64_t d, float* sv,
                             float* query_gate) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= d) return;
  query_gate[i] = det_sigmoid(qs[i]) * det_sigmoid(ks[i]) * scale;
  sv[i] = det_sigmoid(vs[i]);
}

__global__ void value_gate_kernel(const float* sv, int64_t d, const float* __restrict__ vq_w,
                                  const float* __restrict__ vq_b, float* value_gate) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= d) return;
  const float* x[1] = {sv};
  float lc[1][kLanes] = {}, lf[1][kLanes] = {};
  dot8_accumulate(x, vq_w + i * d, d, lc);
  dot8_accumulate(x, vq_w + (d + i) * d, d, lf);
  const float cv = reduce_lanes(lc[0]) + vq_b[i];
  const float fv = reduce_lanes(lf[0]) + vq_b[d + i];
  value_gate[i] = det_sigmoid(fv) * det_tanh(cv);
}

// --- launches ---------------------------------------------------------------

void layer_norm(const LnArgs& a, int64_t rows, cudaStream_t stream) {
  const size_t shared = static_cast<size_t>(a.d) * sizeof(float);
  SHAZIP_LAUNCH(layer_norm_kernel, static_cast<unsigned>(rows), kRowThreads, shared, stream)(a);
}

LnArgs ln_args(const float* x, const float* w, const float* b, float* y, const StepShape& s) {
  LnArgs a{};
  a.x = x;
  a.x_stride = s.dim;
  a.w = w;
  a.b = b;
  a.y = y;
  a.y_stride = s.dim;
  a.d = s.dim;
  a.eps = s.ln_eps;
  return a;
}

std::atomic<bool> g_tiled{true};

}  // namespace

void set_tiled_products(bool on) { g_tiled = on; }
bool tiled_products() { return g_tiled; }

size_t step_scratch_floats(const StepShape& s) {
  // x, hn, hq, q, x2, base, h (B, d), the scores (B, S), and the tiled
  // Boom's product (B, f).
  return static_cast<size_t>(s.batch) * ((7 + s.boom_factor) * s.dim + (s.attn_layer >= 0 ? s.slots : 0));
}

cudaError_t step_device(const StepShape& s, const train::Weights& w, const float* query_gate,
                        const float* value_gate, const StepState& st, int64_t write_slot, int64_t keys,
                        const int64_t* bytes, float* scratch, float* logits, cudaStream_t stream) {
  const int64_t B = s.batch, d = s.dim;
  if (B <= 0) return cudaSuccess;
  if (d % kLanes != 0 || d > 8192) return cudaErrorInvalidValue;
  float* x = scratch;         // the block's LayerNormed input
  float* hn = x + B * d;      // the LSTM's new h, then the attention's output
  float* hq = hn + B * d;     // the attention's query-side LayerNorm
  float* q = hq + B * d;      // the query
  float* x2 = q + B * d;      // the Boom's LayerNormed input
  float* base = x2 + B * d;   // the Boom's residual (its other LayerNorm)
  float* h = base + B * d;    // the block's output
  float* scores = h + B * d;  // (B, S)
  float* u = scores + (s.attn_layer >= 0 ? B * s.slots : 0);  // the tiled Boom's product (B, f)
  const bool tiled = tiled_products();
  for (size_t l = 0; l < w.blocks.size(); ++l) {
    const train::BlockParams<const float*>& blk = w.blocks[l];
    LnArgs start = ln_args(h, blk.ln_start_w, blk.ln_start_b, x, s);
    if (l == 0) {  // the embedding's rows, gathered by byte
      start.x = w.embed;
      start.gather = bytes;
    }
    layer_norm(start, B, stream);
    const LstmArgs cell{x, st.h[l], st.c[l], st.c[l], hn, nullptr, nullptr,
                        B, d, blk.w_ih, blk.w_hh, blk.b_ih, blk.b_hh};
    launch_lstm(cell, tiled, stream);
    const cudaError_t copied = simt::copy_async(st.h[l], hn, static_cast<size_t>(B * d) * sizeof(float), stream);
    if (copied != cudaSuccess) return copied;
    if (static_cast<int64_t>(l) == s.attn_layer) {
      const train::AttnParams<const float*>& a = w.attn;
      // The current position joins the memory first: it is its own key too.
      LnArgs to_mem = ln_args(hn, a.ln_mem_w, a.ln_mem_b, st.mem + write_slot * d, s);
      to_mem.y_stride = s.slots * d;
      layer_norm(to_mem, B, stream);
      layer_norm(ln_args(hn, a.ln_mid_w, a.ln_mid_b, hq, s), B, stream);
      launch_linear(hq, B, d, a.q_w, d, a.q_b, q, tiled, stream);
      LnArgs q_ln = ln_args(q, a.q_ln_w, a.q_ln_b, q, s);
      q_ln.post = query_gate;
      layer_norm(q_ln, B, stream);
      const dim3 key_blocks(static_cast<unsigned>(blocks_for(keys, kThreads)), static_cast<unsigned>(B));
      SHAZIP_LAUNCH(scores_kernel, key_blocks, kThreads, 0, stream)(st.mem, s.slots, keys, d, q, scores);
      SHAZIP_LAUNCH(softmax_kernel, static_cast<unsigned>(B), kRowThreads, 0, stream)(scores, s.slots, keys);
      const dim3 dim_blocks(static_cast<unsigned>(blocks_for(d, kThreads)), static_cast<unsigned>(B));
      SHAZIP_LAUNCH(mix_kernel, dim_blocks, kThreads, 0, stream)(st.mem, s.slots, keys, d, scores, value_gate, hq, hn);
    }
    // Boom: both LayerNorms of the block's h in one pass (the same mean and
    // deviation), then d -> f, activated, chunks summed, plus the residual.
    LnArgs both = ln_args(hn, blk.ln_ff_w, blk.ln_ff_b, base, s);
    both.w2 = blk.ln_xff_w;
    both.b2 = blk.ln_xff_b;
    both.y2 = x2;
    layer_norm(both, B, stream);
    launch_boom(x2, base, h, B, d, s.boom_factor, blk.boom_w, blk.boom_b, u, nullptr, tiled, stream);
  }
  launch_linear(h, B, d, w.embed, 256, w.dec_bias, logits, tiled, stream);
  return simt::last_error();
}

cudaError_t attention_gates_device(const train::AttnParams<const float*>& a, int64_t d, float* scratch,
                                   float* query_gate, float* value_gate, cudaStream_t stream) {
  const float scale = rsqrt_rn(static_cast<float>(d));  // as train::attention_gates
  const unsigned blocks = static_cast<unsigned>(blocks_for(d, kThreads));
  SHAZIP_LAUNCH(gates_kernel, blocks, kThreads, 0, stream)(a.qs, a.ks, a.vs, scale, d, scratch, query_gate);
  SHAZIP_LAUNCH(value_gate_kernel, blocks, kThreads, 0, stream)(scratch, d, a.vq_w, a.vq_b, value_gate);
  return simt::last_error();
}

}  // namespace shazip::model::SHAZIP_CUDA_NS
