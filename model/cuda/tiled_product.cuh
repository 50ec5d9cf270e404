// The tiled product: C = A B^T with every output a dot8 (model/step_kernels.h:
// lane l sums the products p = l, l + 8, l + 16, ... in order, one fma each,
// and reduce_lanes adds the eight lanes in its fixed order), so that it
// computes the bits of step::linear and of the plain product kernels of
// kernels_common.cuh, which give each output's eight lanes to one thread.
//
// Those read two operands from the L1 cache for every fused multiply-add
// (a weight and a row's element), so they wait on loads rather than
// arithmetic (40 loads for 32 fmas). Here a block of 256 threads computes a
// 32 x 64 tile of C, staging 32 of the summed index at a time in shared
// memory (each element read once from global memory per tile), and each
// thread keeps an 8 x 8 sub-tile for one lane: 64 fmas for four 128-bit
// shared loads. The LSTM's cell can be the product's last step, so that a
// position of the recurrence stays one launch.
// The eight lanes are eight warps (all threads of a warp read the same row
// of each staged tile: broadcasts, no bank conflicts); at the end they meet
// in shared memory and one thread per output adds them with reduce_lanes.
// Every lane's chain still runs in one thread, in order, from 0.0f: the
// tiles change the speed, never the bits (test_simt compares both kernels
// with the CPU's).
//
// Private to the kernels' .cu files, as kernels_common.cuh.
#pragma once

#include <cstdint>

#include "model/cuda/simt.h"
#include "model/kernel_math.h"

namespace shazip::model::SHAZIP_CUDA_NS {
namespace {

constexpr int kTileM = 32;         // rows of C per block
constexpr int kTileN = 64;         // columns of C per block
constexpr int kTileK = 32;         // summed index staged per round, a multiple of kLanes
constexpr int kTileThreads = 256;  // kLanes warps
constexpr int kStrideM = kTileM + 4;  // staged rows padded so that the stores
constexpr int kStrideN = kTileN + 4;  // of a row-major operand miss each other's banks
constexpr int kTileShared = kLanes * (kTileM / 2) * kTileN;  // the lanes' sums of half a tile
static_assert(kTileK * (kStrideM + kStrideN) <= kTileShared, "the staged tiles share the sums' memory");
static_assert(kTileThreads == kLanes * 32, "one warp per lane");

// One operand: element (i, p), i a row of A or a column of C for B, p the
// summed index. Row-major: data[i * ld + p], and with data2, p >= split
// reads data2[i * ld2 + p - split] (an LSTM's [x, h] against [W_ih, W_hh]);
// with gates = d, row i is the matrix's row (i % 4) d + i / 4 (the LSTM's
// four gates of element i / 4 side by side). Column-major: data[p * ld + i]
// (a transposed read: the input and weight gradients).
struct TileOperand {
  const float* data = nullptr;
  int64_t ld = 0;
  bool row_major = true;
  const float* data2 = nullptr;
  int64_t ld2 = 0;
  int64_t split = INT64_MAX;
  int64_t gates = 0;
};

// The LSTM cell as the product's last step (c_out non-null): C's columns
// are the gates of element j = column / 4 (B with gates = d), and the block
// applies lstm_cell to them, plus (bias[q d + j] + bias2[q d + j]), with
// c_prev (rows, d): c and h to c_out (may be c_prev) and h_out, and with
// acts non-null the activated gates (rows, 4d) and tanh(c) (rows, d), as
// lstm_kernel does.
struct TileLstm {
  const float* c_prev = nullptr;
  float *c_out = nullptr, *h_out = nullptr, *acts = nullptr, *tanh_c = nullptr;
  int64_t d = 0;
};

struct TiledProduct {
  TileOperand a, b;
  int64_t m = 0, n = 0;  // C is m x n
  int64_t k = 0;         // the summed length, a multiple of kLanes
  int64_t valid = 0;     // p >= valid reads zeros (the CPU's padded rows); k for none
  const float* bias = nullptr;   // c = sum + bias[j], or with bias2
  const float* bias2 = nullptr;  // c = sum + (bias[j] + bias2[j])
  const float* add = nullptr;    // or c = sum + add[i * ldc + j] (may not be c)
  float* c = nullptr;
  int64_t ldc = 0;
  TileLstm lstm;                 // or the LSTM cell (c unused)
  // Several products of one shape side by side (the attention's, one per
  // stream): product z (blockIdx.z) reads A, B and writes C these many
  // floats further on.
  int64_t batch = 1, batch_a = 0, batch_b = 0, batch_c = 0;
  // With mask_past >= 0, C[i][j] = 0 for j >= mask_past + i + 1 (the keys
  // row i of a segment does not see, as the plain key_dots_kernel writes).
  int64_t mask_past = -1;
};
static_assert(kTileThreads == (kTileM / 2) * (kTileN / 4), "the cell: one thread per row and element");

// Stages rows [i0, i0 + Rows) x sums [k0, k0 + kTileK) of an operand with
// `rows` rows as tile[p][i] (rows Stride apart), zeros outside. A row-major
// operand is read by each warp as 4 rows x 8 sums (32-byte runs), a
// column-major one as 32 consecutive rows of one sum.
template <int Rows, int Stride>
__device__ __forceinline__ void stage_tile(const TileOperand& o, int64_t rows, int64_t i0, int64_t k0, int64_t valid,
                                           float* tile) {
  const int t = threadIdx.x;
  constexpr int kPer = Rows * kTileK / kTileThreads;
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    int il, pl;
    if (o.row_major) {
      pl = 8 * (e % 4) + t % 8;
      il = t / 8 + 32 * (e / 4);
    } else {
      const int idx = e * kTileThreads + t;
      il = idx % Rows;
      pl = idx / Rows;
    }
    const int64_t i = i0 + il, p = k0 + pl;
    float v = 0.0f;
    if (i < rows && p < valid) {
      if (!o.row_major) {
        v = o.data[p * o.ld + i];
      } else {
        const int64_t row = o.gates ? i % 4 * o.gates + i / 4 : i;
        v = p < o.split ? o.data[row * o.ld + p] : o.data2[row * o.ld2 + (p - o.split)];
      }
    }
    tile[pl * Stride + il] = v;
  }
}

// out[0..3] = p[0..3], p 16-byte aligned: one 128-bit shared load on a GPU.
__device__ __forceinline__ void load4(const float* p, float* out) {
#if defined(__CUDA_ARCH__)
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
#else
  for (int i = 0; i < 4; ++i) out[i] = p[i];
#endif
}

// The LSTM cell of rows i0 + [0, 16) and elements j0 + [0, 16), one per
// thread, from their gates' lanes in sums[lane][row][4 element + gate].
__device__ __forceinline__ void lstm_epilogue(const TiledProduct& a, const float* sums, int64_t i0, int64_t j0) {
  const TileLstm& o = a.lstm;
  const int64_t d = o.d;
  const int rl = threadIdx.x / 16, el = threadIdx.x % 16;
  const int64_t i = i0 + rl, j = j0 + el;
  if (i >= a.m || j >= d) return;
  float pre[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    float lanes[kLanes];
#pragma unroll
    for (int l = 0; l < kLanes; ++l) lanes[l] = sums[(l * (kTileM / 2) + rl) * kTileN + 4 * el + q];
    pre[q] = reduce_lanes(lanes) + (a.bias[q * d + j] + a.bias2[q * d + j]);
  }
  const int64_t k = i * d + j;
  const LstmCell cell = lstm_cell(pre[0], pre[1], pre[2], pre[3], o.c_prev[k]);
  o.c_out[k] = cell.c;
  o.h_out[k] = cell.h;
  if (o.acts) {
    float* g = o.acts + i * 4 * d + j;
    g[0] = cell.i;
    g[d] = cell.f;
    g[2 * d] = cell.g;
    g[3 * d] = cell.o;
    o.tanh_c[k] = cell.tanh_c;
  }
}

__global__ void __launch_bounds__(kTileThreads, 2) tiled_product_kernel(TiledProduct a) {
  // Every row of the staged tiles starts 16-byte aligned (kStrideM and
  // kStrideN are multiples of 4), and so does every sub-tile's run of four.
  __shared__ __align__(16) float shared[kTileShared];
  float* as = shared;                       // kTileK x kStrideM
  float* bs = shared + kTileK * kStrideM;   // kTileK x kStrideN
  const int t = threadIdx.x;
  const int lane = t / 32;
  // This thread's sub-tile: rows 4 gm + {0..3} and 16 + 4 gm + {0..3},
  // columns 4 gn + {0..3} and 32 + 4 gn + {0..3}.
  const int gm = t % 32 / 8, gn = t % 8;
  const int64_t m0 = blockIdx.y * static_cast<int64_t>(kTileM);
  const int64_t n0 = blockIdx.x * static_cast<int64_t>(kTileN);
  float acc[8][8] = {};
  TileOperand oa = a.a, ob = a.b;
  oa.data += blockIdx.z * a.batch_a;
  ob.data += blockIdx.z * a.batch_b;
  float* const c = a.c + blockIdx.z * a.batch_c;
  for (int64_t k0 = 0; k0 < a.k; k0 += kTileK) {
    stage_tile<kTileM, kStrideM>(oa, a.m, m0, k0, a.valid, as);
    stage_tile<kTileN, kStrideN>(ob, a.n, n0, k0, a.valid, bs);
    __syncthreads();
    // Only whole groups of eight below k: no product past the CPU's end.
    const int steps = static_cast<int>(a.k - k0 < kTileK ? a.k - k0 : kTileK) / kLanes;
    for (int s = 0; s < steps; ++s) {
      const float* ar = as + (s * kLanes + lane) * kStrideM;
      const float* br = bs + (s * kLanes + lane) * kStrideN;
      float av[8], bv[8];
      load4(ar + 4 * gm, av);
      load4(ar + 16 + 4 * gm, av + 4);
      load4(br + 4 * gn, bv);
      load4(br + 32 + 4 * gn, bv + 4);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fma_rn(av[i], bv[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
  // The lanes meet in shared memory, half the tile's rows at a time:
  // sums[lane][row][column], then one thread per output.
  float* sums = shared;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float* row = sums + (lane * (kTileM / 2) + 4 * gm + i) * kTileN;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        row[4 * gn + j] = acc[4 * h + i][j];
        row[32 + 4 * gn + j] = acc[4 * h + i][4 + j];
      }
    }
    __syncthreads();
    if (a.lstm.c_out) {
      lstm_epilogue(a, sums, m0 + 16 * h, n0 / 4);
      __syncthreads();
      continue;
    }
    for (int o = t; o < (kTileM / 2) * kTileN; o += kTileThreads) {
      const int rl = o / kTileN, cl = o % kTileN;
      const int64_t i = m0 + 16 * h + rl, j = n0 + cl;
      if (i >= a.m || j >= a.n) continue;
      float lanes[kLanes];
#pragma unroll
      for (int l = 0; l < kLanes; ++l) lanes[l] = sums[(l * (kTileM / 2) + rl) * kTileN + cl];
      float v = reduce_lanes(lanes);
      if (a.bias2) {
        v = v + (a.bias[j] + a.bias2[j]);
      } else if (a.bias) {
        v = v + a.bias[j];
      } else if (a.add) {
        v = v + a.add[i * a.ldc + j];
      }
      if (a.mask_past >= 0 && j >= a.mask_past + i + 1) v = 0.0f;
      c[i * a.ldc + j] = v;
    }
    __syncthreads();
  }
}

void tiled_product(const TiledProduct& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.n + kTileN - 1) / kTileN),
                  static_cast<unsigned>((a.m + kTileM - 1) / kTileM), static_cast<unsigned>(a.batch));
  SHAZIP_LAUNCH(tiled_product_kernel, grid, kTileThreads, 0, stream)(a);
}

// The tiled chain product: the attention's weighted sums of its keys
// (step::weighted_sum), C[i][j] = the chain over s < past + i + 1 of
// w[i][s] * v[s][j], one fma each, in order, from 0.0f: one sum per output,
// no lanes, so the block's threads take different outputs. A block of 256
// threads computes a 32 x 256 tile of one stream's C from 16 keys at a time
// staged in shared memory, each thread 8 rows x 4 columns (32 fmas for
// three 128-bit shared loads); a warp's threads share their rows, so the
// chains' different lengths never split a warp. With gate non-null, also
// out2[i][j] = C[i][j] * gate[j] + add[i][j] (the attention's output).
constexpr int kChainM = 32, kChainN = 256, kChainK = 16;
constexpr int kChainStrideM = kChainM + 4, kChainStrideN = kChainN + 4;
static_assert(kChainK * (kChainStrideM + kChainStrideN) <= kTileShared, "the chain's tiles fit the same memory");
static_assert(kTileThreads == (kChainM / 8) * (kChainN / 4), "8 x 4 outputs per thread");

struct ChainProduct {
  const float* w = nullptr;  // m x K per stream, row-major (ld K)
  const float* v = nullptr;  // K x n per stream, row-major (ld n)
  int64_t m = 0, n = 0, keys = 0, past = 0;
  float* c = nullptr;        // m x n per stream
  const float* gate = nullptr;
  const float* add = nullptr;
  float* out2 = nullptr;
  int64_t batch = 1;         // streams: blockIdx.z; each m K, K n and m n floats on
};

__global__ void __launch_bounds__(kTileThreads, 2) chain_product_kernel(ChainProduct a) {
  __shared__ __align__(16) float shared[kTileShared];
  float* ws = shared;                              // kChainK x kChainStrideM: ws[s][i]
  float* vs = shared + kChainK * kChainStrideM;    // kChainK x kChainStrideN: vs[s][j]
  const int t = threadIdx.x;
  const int rg = t / 64, cg = t % 64;  // rows 8 rg + {0..7}, columns 4 cg + {0..3}
  const int64_t z = blockIdx.z;
  const float* w = a.w + z * a.m * a.keys;
  const float* v = a.v + z * a.keys * a.n;
  const int64_t zc = z * a.m * a.n;  // this stream's outputs
  const int64_t i0 = blockIdx.y * static_cast<int64_t>(kChainM);
  const int64_t j0 = blockIdx.x * static_cast<int64_t>(kChainN);
  float acc[8][4] = {};
  // The longest chain in the tile: its last row's.
  const int64_t last = (i0 + kChainM < a.m ? i0 + kChainM : a.m) - 1;
  const int64_t longest = a.past + last + 1;
  for (int64_t k0 = 0; k0 < longest; k0 += kChainK) {
    // w: a warp reads 4 rows x 8 keys (32-byte runs); v: a row of 256 columns.
#pragma unroll
    for (int e = 0; e < kChainM * kChainK / kTileThreads; ++e) {
      const int sl = 8 * e + t % 8, il = t / 8;
      const int64_t i = i0 + il, s = k0 + sl;
      ws[sl * kChainStrideM + il] = i < a.m && s < a.keys ? w[i * a.keys + s] : 0.0f;
    }
#pragma unroll
    for (int e = 0; e < kChainN * kChainK / kTileThreads; ++e) {
      const int idx = e * kTileThreads + t;
      const int jl = idx % kChainN, sl = idx / kChainN;
      const int64_t j = j0 + jl, s = k0 + sl;
      vs[sl * kChainStrideN + jl] = j < a.n && s < a.keys ? v[s * a.n + j] : 0.0f;
    }
    __syncthreads();
    const int steps = static_cast<int>(longest - k0 < kChainK ? longest - k0 : kChainK);
    for (int sl = 0; sl < steps; ++sl) {
      const int64_t s = k0 + sl;
      float wv[8], vv[4];
      load4(ws + sl * kChainStrideM + 8 * rg, wv);
      load4(ws + sl * kChainStrideM + 8 * rg + 4, wv + 4);
      load4(vs + sl * kChainStrideN + 4 * cg, vv);
#pragma unroll
      for (int r = 0; r < 8; ++r) {
        if (s >= a.past + i0 + 8 * rg + r + 1) continue;  // past this row's keys
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[r][q] = fma_rn(wv[r], vv[q], acc[r][q]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 8; ++r) {
    const int64_t i = i0 + 8 * rg + r;
    if (i >= a.m) break;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t j = j0 + 4 * cg + q;
      if (j >= a.n) break;
      const int64_t o = zc + i * a.n + j;
      a.c[o] = acc[r][q];
      if (a.gate) a.out2[o] = acc[r][q] * a.gate[j] + a.add[o];
    }
  }
}

void chain_product(const ChainProduct& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.n + kChainN - 1) / kChainN),
                  static_cast<unsigned>((a.m + kChainM - 1) / kChainM), static_cast<unsigned>(a.batch));
  SHAZIP_LAUNCH(chain_product_kernel, grid, kTileThreads, 0, stream)(a);
}

// The three products of the model, as the plain kernels take them.
// y (rows x n) = x (rows x k) W^T (W: n x k) + bias: step::linear.
TiledProduct linear_product(const float* x, int64_t rows, int64_t k, const float* w, int64_t n, const float* bias,
                            float* y) {
  TiledProduct p;
  p.a = {x, k};
  p.b = {w, k};
  p.m = rows;
  p.n = n;
  p.k = p.valid = k;
  p.bias = bias;
  p.c = y;
  p.ldc = n;
  return p;
}

// dx (rows x k) = dy (rows x n) W (W: n x k) + add: the input gradient.
TiledProduct input_grad_product(const float* dy, int64_t rows, int64_t n, const float* w, int64_t k,
                                const float* add, float* dx) {
  TiledProduct p;
  p.a = {dy, n};
  p.b = {w, k, false};
  p.m = rows;
  p.n = k;
  p.k = p.valid = n;
  p.add = add;
  p.c = dx;
  p.ldc = k;
  return p;
}

// dW (n x k) = dy^T x over rows_pad rows, those from `rows` on zeros: the
// weight gradient over the CPU's transposed, zero-padded copies.
TiledProduct weight_grad_product(const float* dy, int64_t n, const float* x, int64_t k, int64_t rows,
                                 int64_t rows_pad, float* dw) {
  TiledProduct p;
  p.a = {dy, n, false};
  p.b = {x, k, false};
  p.m = n;
  p.n = k;
  p.k = rows_pad;
  p.valid = rows;
  p.c = dw;
  p.ldc = k;
  return p;
}

}  // namespace
}  // namespace shazip::model::SHAZIP_CUDA_NS
