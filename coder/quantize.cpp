// Probability quantizer: see quantize.h for the contract.
//
// Method: w_i = floor(clamp(p_i, 0, 1) * 2^24) (the only floating-point step).
// Every symbol first gets frequency 1; the remaining A = 2^24 - 256 units are
// shared in proportion to w_i, rounding down, through a 128-bit fixed-point
// reciprocal of sum(w) so that no division happens per symbol. The few units
// left by rounding down (fewer than 256, i.e. < 1.6e-5 of the mass) go to the
// most probable symbol, lowest index on ties. With AVX2 the same integers
// come eight (or four 64-bit) at a time; quantize_probs_plain is the plain
// C++ definition, which the tests hold the AVX2 version to.
#include "quantize.h"

#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace shazip::coder {

void uniform_cdf(uint32_t* cdf) {
  for (int i = 0; i <= kAlphabet; ++i) {
    cdf[i] = static_cast<uint32_t>(i) * (kFreqTotal / kAlphabet);
  }
}

namespace {

using u128 = unsigned __int128;
constexpr uint64_t kAvailable = kFreqTotal - kAlphabet;

// w_i = floor(clamp(p_i, 0, 1) * 2^24); returns their sum and sets *best to
// the first index of the largest.
uint64_t weights_scalar(const float* probs, uint32_t* w, int* best) {
  uint64_t sum = 0;
  *best = 0;
  for (int i = 0; i < kAlphabet; ++i) {
    const float p = probs[i];
    uint32_t q = 0;
    if (p >= 1.0f) {
      q = kFreqTotal;
    } else if (p > 0.0f) {  // false for NaN and negatives
      q = static_cast<uint32_t>(p * static_cast<float>(kFreqTotal));
    }
    w[i] = q;
    sum += q;
    if (q > w[*best]) *best = i;
  }
  return sum;
}

// freq_i = 1 + share_i, share_i = floor(w_i * scale / 2^64); returns the
// shares' sum.
uint64_t shares_scalar(const uint32_t* w, u128 scale, uint32_t* freq) {
  uint64_t given = 0;
  for (int i = 0; i < kAlphabet; ++i) {
    const uint64_t share = static_cast<uint64_t>((u128{w[i]} * scale) >> 64);
    freq[i] = 1 + static_cast<uint32_t>(share);
    given += share;
  }
  return given;
}

#if defined(__x86_64__)
#define SHAZIP_AVX2 __attribute__((target("avx2")))

// The same integers eight floats at a time: p * 2^24 is exact (a power of
// two) and truncated by cvttps as by the cast (below 2^24 both); p >= 1 and
// p > 0 are ordered compares (false for NaN), as the scalar ifs.
SHAZIP_AVX2 uint64_t weights_avx2(const float* probs, uint32_t* w, int* best) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256 total = _mm256_set1_ps(static_cast<float>(kFreqTotal));
  const __m256i top = _mm256_set1_epi32(static_cast<int>(kFreqTotal));
  __m256i most = _mm256_setzero_si256(), sum = _mm256_setzero_si256();
  for (int i = 0; i < kAlphabet; i += 8) {
    const __m256 p = _mm256_loadu_ps(probs + i);
    const __m256i ge1 = _mm256_castps_si256(_mm256_cmp_ps(p, one, _CMP_GE_OQ));
    const __m256i gt0 = _mm256_castps_si256(_mm256_cmp_ps(p, zero, _CMP_GT_OQ));
    __m256i q = _mm256_and_si256(_mm256_cvttps_epi32(_mm256_mul_ps(p, total)), gt0);
    q = _mm256_blendv_epi8(q, top, ge1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w + i), q);
    most = _mm256_max_epu32(most, q);
    sum = _mm256_add_epi64(sum, _mm256_cvtepu32_epi64(_mm256_castsi256_si128(q)));
    sum = _mm256_add_epi64(sum, _mm256_cvtepu32_epi64(_mm256_extracti128_si256(q, 1)));
  }
  alignas(32) uint32_t m[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(m), most);
  uint32_t largest = 0;
  for (const uint32_t v : m) largest = v > largest ? v : largest;
  const __m256i target = _mm256_set1_epi32(static_cast<int>(largest));
  *best = 0;
  for (int i = 0; i < kAlphabet; i += 8) {
    const __m256i eq = _mm256_cmpeq_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)), target);
    const int mask = _mm256_movemask_ps(_mm256_castsi256_ps(eq));
    if (mask) {
      *best = i + __builtin_ctz(static_cast<unsigned>(mask));
      break;
    }
  }
  alignas(32) uint64_t s[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(s), sum);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// floor(w * scale / 2^64) with scale = s2 2^64 + s1 2^32 + s0 (scale is below
// 2^89: s2 below 2^25) in 64-bit lanes: w s2 + floor((w s1 + floor(w s0 /
// 2^32)) / 2^32), every product below 2^57. Exact: the floors nest.
SHAZIP_AVX2 inline __m256i shares4(__m128i w4, __m256i s0, __m256i s1, __m256i s2) {
  const __m256i w = _mm256_cvtepu32_epi64(w4);
  const __m256i t = _mm256_add_epi64(_mm256_mul_epu32(w, s1), _mm256_srli_epi64(_mm256_mul_epu32(w, s0), 32));
  return _mm256_add_epi64(_mm256_mul_epu32(w, s2), _mm256_srli_epi64(t, 32));
}

SHAZIP_AVX2 uint64_t shares_avx2(const uint32_t* w, u128 scale, uint32_t* freq) {
  const __m256i s0 = _mm256_set1_epi64x(static_cast<int64_t>(static_cast<uint64_t>(scale) & 0xFFFFFFFFu));
  const __m256i s1 = _mm256_set1_epi64x(static_cast<int64_t>(static_cast<uint64_t>(scale >> 32) & 0xFFFFFFFFu));
  const __m256i s2 = _mm256_set1_epi64x(static_cast<int64_t>(static_cast<uint64_t>(scale >> 64)));
  const __m256i ones = _mm256_set1_epi32(1);
  __m256i given = _mm256_setzero_si256();
  for (int i = 0; i < kAlphabet; i += 8) {
    const __m256i w8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i));
    const __m256i lo = shares4(_mm256_castsi256_si128(w8), s0, s1, s2);
    const __m256i hi = shares4(_mm256_extracti128_si256(w8, 1), s0, s1, s2);
    given = _mm256_add_epi64(given, _mm256_add_epi64(lo, hi));
    // The low halves of the eight 64-bit shares (each below 2^24), in order.
    const __m256 packed = _mm256_shuffle_ps(_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi), _MM_SHUFFLE(2, 0, 2, 0));
    const __m256i shares = _mm256_permute4x64_epi64(_mm256_castps_si256(packed), _MM_SHUFFLE(3, 1, 2, 0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(freq + i), _mm256_add_epi32(shares, ones));
  }
  alignas(32) uint64_t g[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(g), given);
  return (g[0] + g[1]) + (g[2] + g[3]);
}

bool use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#else
bool use_avx2() { return false; }
#endif

void quantize(const float* probs, uint32_t* cdf, bool simd) {
  uint32_t w[kAlphabet];
  int best = 0;
  uint64_t sum = 0;
#if defined(__x86_64__)
  sum = simd ? weights_avx2(probs, w, &best) : weights_scalar(probs, w, &best);
#else
  sum = weights_scalar(probs, w, &best);
#endif
  if (sum == 0) {
    uniform_cdf(cdf);
    return;
  }

  // scale = floor(A * 2^64 / sum); share_i = floor(w_i * scale / 2^64) is at
  // most w_i * A / sum, so the shares never exceed A.
  const u128 scale = (u128{kAvailable} << 64) / sum;
  uint32_t freq[kAlphabet];
  uint64_t given = 0;
#if defined(__x86_64__)
  given = simd ? shares_avx2(w, scale, freq) : shares_scalar(w, scale, freq);
#else
  given = shares_scalar(w, scale, freq);
#endif
  freq[best] += static_cast<uint32_t>(kAvailable - given);

  uint32_t acc = 0;
  cdf[0] = 0;
  for (int i = 0; i < kAlphabet; ++i) {
    acc += freq[i];
    cdf[i + 1] = acc;
  }
}

}  // namespace

void quantize_probs(const float* probs, uint32_t* cdf) { quantize(probs, cdf, use_avx2()); }

void quantize_probs_plain(const float* probs, uint32_t* cdf) { quantize(probs, cdf, false); }

}  // namespace shazip::coder
