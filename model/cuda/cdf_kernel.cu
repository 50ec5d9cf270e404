// See cdf_kernel.h. One block of 256 threads per row, thread i owns symbol i.
// All reductions are fixed-shape trees in shared memory: the same inputs give
// the same bits on every run, whatever the scheduling.
#include "model/cuda/cdf_kernel.h"

#include "model/kernel_math.h"

namespace shazip::model::SHAZIP_CUDA_NS {
namespace {

constexpr int kSymbols = 256;
constexpr uint32_t kFreqTotal = uint32_t{1} << 24;     // coder::kFreqTotal
constexpr uint64_t kAvailable = kFreqTotal - kSymbols;  // after one unit each

// Quantizes the probability held by thread i (p) into row `cdf`. Matches
// coder::quantize_probs() exactly; see coder/quantize.cpp for the method.
__device__ void quantize_row(float p, uint32_t* cdf) {
  __shared__ uint64_t sum[kSymbols];
  __shared__ uint32_t best_w[kSymbols];
  __shared__ int best_i[kSymbols];
  __shared__ uint64_t scale_hi, scale_lo;
  __shared__ uint32_t freq[kSymbols];
  const int i = threadIdx.x;

  uint32_t q = 0;
  if (p >= 1.0f) {
    q = kFreqTotal;
  } else if (p > 0.0f) {  // false for NaN and negatives
    q = static_cast<uint32_t>(p * static_cast<float>(kFreqTotal));
  }
  sum[i] = q;
  best_w[i] = q;
  best_i[i] = i;
  __syncthreads();
  // Sum (exact in integers) and the first index of the maximum.
  for (int stride = kSymbols / 2; stride > 0; stride >>= 1) {
    if (i < stride) {
      sum[i] += sum[i + stride];
      const uint32_t w2 = best_w[i + stride];
      const int i2 = best_i[i + stride];
      if (w2 > best_w[i] || (w2 == best_w[i] && i2 < best_i[i])) {
        best_w[i] = w2;
        best_i[i] = i2;
      }
    }
    __syncthreads();
  }
  const uint64_t total = sum[0];
  const int best = best_i[0];
  if (total == 0) {  // uniform table
    cdf[i] = static_cast<uint32_t>(i) * (kFreqTotal / kSymbols);
    if (i == 0) cdf[kSymbols] = kFreqTotal;
    return;
  }
  if (i == 0) {
    // scale = floor(A * 2^64 / total), up to 88 bits: kept as hi:lo.
    const unsigned __int128 scale = (static_cast<unsigned __int128>(kAvailable) << 64) / total;
    scale_hi = static_cast<uint64_t>(scale >> 64);
    scale_lo = static_cast<uint64_t>(scale);
  }
  __syncthreads();
  // share = floor(q * scale / 2^64) = q * hi + high64(q * lo), exactly.
  const uint64_t share = q * scale_hi + __umul64hi(q, scale_lo);
  __syncthreads();  // sum[] is reused below
  sum[i] = share;
  __syncthreads();
  for (int stride = kSymbols / 2; stride > 0; stride >>= 1) {
    if (i < stride) sum[i] += sum[i + stride];
    __syncthreads();
  }
  const uint64_t given = sum[0];
  freq[i] = 1 + static_cast<uint32_t>(share) + (i == best ? static_cast<uint32_t>(kAvailable - given) : 0u);
  __syncthreads();
  // Inclusive scan (Hillis-Steele; integers, so exact in any order).
  uint32_t acc = freq[i];
  for (int offset = 1; offset < kSymbols; offset <<= 1) {
    const uint32_t add = i >= offset ? freq[i - offset] : 0;
    __syncthreads();
    acc += add;
    freq[i] = acc;
    __syncthreads();
  }
  if (i == 0) cdf[0] = 0;
  cdf[i + 1] = acc;
}

__global__ void quantize_kernel(const float* probs, uint32_t* cdf) {
  const int row = blockIdx.x;
  quantize_row(probs[row * kSymbols + threadIdx.x], cdf + static_cast<size_t>(row) * (kSymbols + 1));
}

// The maximum of the row's 256 logits (thread i holding x), by a fixed tree
// in red[], for every thread; order-free, so both softmaxes' maximum.
__device__ float row_max(float x, float* red) {
  const int i = threadIdx.x;
  red[i] = x;
  __syncthreads();
  for (int stride = kSymbols / 2; stride > 0; stride >>= 1) {
    if (i < stride) red[i] = fmaxf(red[i], red[i + stride]);
    __syncthreads();
  }
  const float max = red[0];
  __syncthreads();
  return max;
}

__global__ void softmax_quantize_kernel(const float* logits, float* probs, uint32_t* cdf) {
  __shared__ float red[kSymbols];
  const int row = blockIdx.x, i = threadIdx.x;
  const float x = logits[static_cast<size_t>(row) * kSymbols + i];
  const float max = row_max(x, red);
  const float e = expf(x - max);  // no --use_fast_math: the accurate expf
  red[i] = e;
  __syncthreads();
  for (int stride = kSymbols / 2; stride > 0; stride >>= 1) {
    if (i < stride) red[i] = __fadd_rn(red[i], red[i + stride]);  // no contraction
    __syncthreads();
  }
  const float p = __fdiv_rn(e, red[0]);
  if (probs) probs[static_cast<size_t>(row) * kSymbols + i] = p;
  __syncthreads();
  quantize_row(p, cdf + static_cast<size_t>(row) * (kSymbols + 1));
}

// step::softmax of one row: the maximum (order-free), e = det_expf(x - max),
// and their sum8 (lane l, thread l, summing e[l], e[l + 8], ... in order,
// then the fixed reduction).
__global__ void det_softmax_quantize_kernel(const float* logits, float* probs, uint32_t* cdf) {
  __shared__ float red[kSymbols];
  __shared__ float lanes[kLanes];
  const int row = blockIdx.x, i = threadIdx.x;
  const float x = logits[static_cast<size_t>(row) * kSymbols + i];
  const float max = row_max(x, red);
  const float e = det_expf(x - max);
  red[i] = e;
  __syncthreads();
  if (i < kLanes) {
    float acc = 0.0f;
    for (int k = i; k < kSymbols; k += kLanes) acc = acc + red[k];
    lanes[i] = acc;
  }
  __syncthreads();
  const float p = e / reduce_lanes(lanes);
  if (probs) probs[static_cast<size_t>(row) * kSymbols + i] = p;
  __syncthreads();
  quantize_row(p, cdf + static_cast<size_t>(row) * (kSymbols + 1));
}

}  // namespace

cudaError_t quantize_probs_device(const float* probs, uint32_t* cdf, int rows, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  SHAZIP_LAUNCH(quantize_kernel, rows, kSymbols, 0, stream)(probs, cdf);
  return simt::last_error();
}

cudaError_t softmax_quantize_device(const float* logits, float* probs, uint32_t* cdf, int rows,
                                    cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  SHAZIP_LAUNCH(softmax_quantize_kernel, rows, kSymbols, 0, stream)(logits, probs, cdf);
  return simt::last_error();
}

cudaError_t det_softmax_quantize_device(const float* logits, float* probs, uint32_t* cdf, int rows,
                                        cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  SHAZIP_LAUNCH(det_softmax_quantize_kernel, rows, kSymbols, 0, stream)(logits, probs, cdf);
  return simt::last_error();
}

}  // namespace shazip::model::SHAZIP_CUDA_NS
