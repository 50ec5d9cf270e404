// Probability quantizer: see quantize.h for the contract.
//
// Method: w_i = floor(clamp(p_i, 0, 1) * 2^24) (the only floating-point step).
// Every symbol first gets frequency 1; the remaining A = 2^24 - 256 units are
// shared in proportion to w_i, rounding down, through a 128-bit fixed-point
// reciprocal of sum(w) so that no division happens per symbol. The few units
// left by rounding down (fewer than 256, i.e. < 1.6e-5 of the mass) go to the
// most probable symbol, lowest index on ties.
#include "quantize.h"

#include <cmath>

namespace shazip::coder {

void uniform_cdf(uint32_t* cdf) {
  for (int i = 0; i <= kAlphabet; ++i) {
    cdf[i] = static_cast<uint32_t>(i) * (kFreqTotal / kAlphabet);
  }
}

void quantize_probs(const float* probs, uint32_t* cdf) {
  using u128 = unsigned __int128;
  constexpr uint64_t kAvailable = kFreqTotal - kAlphabet;

  uint32_t w[kAlphabet];
  uint64_t sum = 0;
  int best = 0;
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
    if (q > w[best]) best = i;
  }
  if (sum == 0) {
    uniform_cdf(cdf);
    return;
  }

  // scale = floor(A * 2^64 / sum); share_i = floor(w_i * scale / 2^64) is at
  // most w_i * A / sum, so the shares never exceed A.
  const u128 scale = (u128{kAvailable} << 64) / sum;
  uint32_t freq[kAlphabet];
  uint64_t given = 0;
  for (int i = 0; i < kAlphabet; ++i) {
    const uint64_t share = static_cast<uint64_t>((u128{w[i]} * scale) >> 64);
    freq[i] = 1 + static_cast<uint32_t>(share);
    given += share;
  }
  freq[best] += static_cast<uint32_t>(kAvailable - given);

  uint32_t acc = 0;
  cdf[0] = 0;
  for (int i = 0; i < kAlphabet; ++i) {
    acc += freq[i];
    cdf[i + 1] = acc;
  }
}

}  // namespace shazip::coder
