// The coding loop: predict, code (whole bytes, or bit by bit through the
// mixing stage), observe.
#include "src/driver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <vector>

#include "model/context_mix.h"

#include "src/errors.h"

namespace shazip {
namespace {

// Shared walk over positions. The Side codes or decodes:
//   int byte(at, cdf):      the byte at offset `at` with the SHA-RNN's table;
//   int bit(at, k, p16):    bit k (0 = most significant) of that byte with
//                           probability p16 / 2^16 of a 1 (mixing stage).
template <class Side>
CodingStats walk(uint64_t n, const CodingParams& params, Side& side, const ProgressFn& progress,
                 uint64_t progress_every) {
  CodingStats stats;
  const auto t0 = std::chrono::steady_clock::now();
  if (n == 0) return stats;
  const int streams = params.streams;
  const uint64_t len = (n + streams - 1) / streams;
  model::Predictor predictor(params.model, streams, params.runtime);
  std::unique_ptr<model::ContextMixer> mixer;
  if (params.model.mix) {
    mixer = std::make_unique<model::ContextMixer>(streams, len, model::MixTuning::for_level(params.model.mix));
  }
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
      const uint32_t* cdf = cdfs.data() + static_cast<size_t>(b) * coder::kCdfSize;
      uint8_t byte;
      if (mixer) {
        mixer->begin(b);
        for (int k = 0; k < 8; ++k) {
          const uint32_t p16 = mixer->predict(model::nn_bit_p12(cdf, mixer->c0()));
          const int bit = side.bit(at, k, p16);
          stats.model_bits -= std::log2((bit ? p16 : coder::kBitTotal - p16) / double{coder::kBitTotal});
          mixer->update(bit);
        }
        byte = static_cast<uint8_t>(mixer->byte());
      } else {
        byte = static_cast<uint8_t>(side.byte(at, cdf));
        stats.model_bits -= std::log2(static_cast<double>(cdf[byte + 1] - cdf[byte]) / coder::kFreqTotal);
      }
      bytes[b] = byte;
      stats.nn_bits -= std::log2(static_cast<double>(probs[b * 256 + byte]));
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

struct EncodeSide {
  const uint8_t* data;
  coder::Encoder& enc;
  int byte(uint64_t at, const uint32_t* cdf) {
    enc.encode(cdf, data[at]);
    return data[at];
  }
  int bit(uint64_t at, int k, uint32_t p16) {
    const int b = (data[at] >> (7 - k)) & 1;
    enc.encode_bit(b, p16);
    return b;
  }
};

struct DecodeSide {
  coder::Decoder& dec;
  uint8_t* out;
  int byte(uint64_t at, const uint32_t* cdf) {
    out[at] = static_cast<uint8_t>(dec.decode(cdf));
    return out[at];
  }
  int bit(uint64_t at, int k, uint32_t p16) {
    const int b = dec.decode_bit(p16);
    if (k == 0) out[at] = 0;
    out[at] = static_cast<uint8_t>(out[at] | b << (7 - k));
    return b;
  }
};

}  // namespace

int choose_streams(uint64_t n, int max_streams, uint64_t min_stream_bytes) {
  const uint64_t by_size = std::max<uint64_t>(1, n / std::max<uint64_t>(1, min_stream_bytes));
  return static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(std::max(1, max_streams)), by_size));
}

CodingStats encode_neural(const uint8_t* data, uint64_t n, const CodingParams& params,
                          coder::ByteSink& sink, const ProgressFn& progress,
                          uint64_t progress_every) {
  coder::Encoder enc(sink);
  EncodeSide side{data, enc};
  CodingStats stats = walk(n, params, side, progress, progress_every);
  enc.finish();
  stats.coded_bytes = enc.bytes_out();
  return stats;
}

CodingStats decode_neural(const uint8_t* payload, size_t size, uint64_t n,
                          const CodingParams& params, uint8_t* out,
                          const ProgressFn& progress, uint64_t progress_every) {
  coder::Decoder dec(payload, size);
  DecodeSide side{dec, out};
  CodingStats stats = walk(n, params, side, progress, progress_every);
  // The container has already checked that the payload is complete, so a
  // decoder that runs past its end was led there by damaged data.
  if (dec.overran()) throw Error(ErrorCode::kCorrupt, "corrupt archive: the coded data is damaged (it ends too early)");
  if (dec.corrupt()) throw Error(ErrorCode::kCorrupt, "corrupt archive: the coded data is damaged");
  stats.coded_bytes = size;
  return stats;
}

}  // namespace shazip
