// The coding loop, as short as lpaq1's: predict, code, observe.
#include "src/driver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "src/errors.h"

namespace shazip {
namespace {

// Shared walk over positions. code(at, cdf) codes or decodes the byte at
// offset `at` of the input with table `cdf` and returns it.
template <class CodeFn>
CodingStats walk(uint64_t n, const CodingParams& params, CodeFn code,
                 const ProgressFn& progress, uint64_t progress_every) {
  CodingStats stats;
  const auto t0 = std::chrono::steady_clock::now();
  if (n == 0) return stats;
  const int streams = params.streams;
  const uint64_t len = (n + streams - 1) / streams;
  model::Predictor predictor(params.model, streams, params.runtime);
  std::vector<uint32_t> cdfs(static_cast<size_t>(streams) * coder::kCdfSize);
  std::vector<uint8_t> bytes(streams, 0);
  uint64_t done = 0, next_report = progress_every;
  for (uint64_t i = 0; i < len; ++i) {
    predictor.predict(cdfs.data());
    const float* probs = predictor.probs();
    for (int b = 0; b < streams; ++b) {
      const uint64_t at = b * len + i;
      if (at >= n) {
        bytes[b] = 0;  // filler for a stream that has ended
        continue;
      }
      const uint8_t byte = code(at, cdfs.data() + static_cast<size_t>(b) * coder::kCdfSize);
      bytes[b] = byte;
      stats.model_bits -= std::log2(static_cast<double>(probs[b * 256 + byte]));
      ++done;
    }
    predictor.observe(bytes.data());
    if (progress && progress_every && done >= next_report) {
      progress(done, stats.model_bits);
      next_report = done + progress_every;
    }
  }
  if (progress) progress(done, stats.model_bits);
  stats.predict_seconds = predictor.predict_seconds();
  stats.train_seconds = predictor.train_seconds();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

}  // namespace

int choose_streams(uint64_t n, int max_streams) {
  const uint64_t by_size = std::max<uint64_t>(1, n / kMinStreamBytes);
  return static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(std::max(1, max_streams)), by_size));
}

CodingStats encode_neural(const uint8_t* data, uint64_t n, const CodingParams& params,
                          coder::ByteSink& sink, const ProgressFn& progress,
                          uint64_t progress_every) {
  coder::Encoder enc(sink);
  CodingStats stats = walk(
      n, params,
      [&](uint64_t at, const uint32_t* cdf) {
        enc.encode(cdf, data[at]);
        return data[at];
      },
      progress, progress_every);
  enc.finish();
  stats.coded_bytes = enc.bytes_out();
  return stats;
}

CodingStats decode_neural(const uint8_t* payload, size_t size, uint64_t n,
                          const CodingParams& params, uint8_t* out,
                          const ProgressFn& progress, uint64_t progress_every) {
  coder::Decoder dec(payload, size);
  CodingStats stats = walk(
      n, params,
      [&](uint64_t at, const uint32_t* cdf) {
        const uint8_t byte = static_cast<uint8_t>(dec.decode(cdf));
        out[at] = byte;
        return byte;
      },
      progress, progress_every);
  if (dec.overran()) throw Error(ErrorCode::kTruncated, "truncated archive: the coded data ends early");
  if (dec.corrupt()) throw Error(ErrorCode::kCorrupt, "corrupt archive: the coded data is damaged");
  stats.coded_bytes = size;
  return stats;
}

}  // namespace shazip
