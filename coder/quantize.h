// Deterministic conversion of a float probability vector into the integer
// cumulative frequency table that the range coder takes.
//
// Encoder and decoder each run this on the floats their copy of the model
// produced; if those floats are bit-identical, so are the tables. Each input is
// rounded exactly once (p * 2^24, an exact scaling, truncated to an integer);
// everything after that is integer arithmetic with a fixed evaluation order, so
// the result is the same on every platform and compiler.
#pragma once

#include <cstdint>

#include "range_coder.h"

namespace shazip::coder {

// probs: kAlphabet floats, ideally summing to 1. Negative values, NaN and
// values above 1 are treated as 0 and 1 respectively, so any input gives a
// valid table. cdf: kCdfSize entries written, cdf[0] == 0, cdf[256] ==
// kFreqTotal, every symbol's frequency >= 1. If all inputs are 0 the table is
// uniform. No allocation.
void quantize_probs(const float* probs, uint32_t* cdf);

// The same table in plain C++ only (quantize_probs takes AVX2 where the CPU
// has it; the tests compare the two).
void quantize_probs_plain(const float* probs, uint32_t* cdf);

// The uniform table (every symbol kFreqTotal / 256).
void uniform_cdf(uint32_t* cdf);

}  // namespace shazip::coder
