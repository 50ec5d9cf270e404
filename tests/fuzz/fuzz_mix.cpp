// libFuzzer target: the binary range coder driven by the context-mixing stage
// (torch-free, fast). The first input byte picks the mode:
//   even: the rest is a *plaintext*, coded in interleaved streams and
//         decoded again; the round trip must be exact;
//   odd:  the rest is a *payload*, decoded as up to 512 bytes of output; any input
//         must decode to some bytes without a crash, a hang or a sanitizer report.
// Bits 1-2 of the first byte pick 1..4 streams, bits 3-7 the mix level (1 to 3)
// and whether the stream contexts (format 12), the class contexts (format 13),
// the own rates (format 14) and the one-sided inputs (format 15) are on; the
// input's size modulo 4 whether the nibble groups (format 16) are (not at 0).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "coder/quantize.h"
#include "coder/range_coder.h"
#include "model/context_mix.h"
#include "src/driver.h"

namespace {

// A fixed stand-in for the SHA-RNN's table: a Zipf-like distribution.
const std::array<uint32_t, shazip::coder::kCdfSize>& nn_table() {
  static const auto table = [] {
    std::array<float, 256> p;
    for (int i = 0; i < 256; ++i) p[i] = 1.0f / static_cast<float>(1 + (i ^ 0x20));
    std::array<uint32_t, shazip::coder::kCdfSize> cdf;
    shazip::coder::quantize_probs(p.data(), cdf.data());
    return cdf;
  }();
  return table;
}

// Codes (or decodes) n bytes in `streams` interleaved streams, position-major.
template <class BitFn>
std::vector<uint8_t> walk(size_t n, int streams, const shazip::model::MixTuning& tuning, BitFn bit_fn) {
  const size_t len = shazip::stream_length(n, streams);
  shazip::model::ContextMixer mixer(streams, len, tuning);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < len; ++i) {
    for (int s = 0; s < streams; ++s) {
      const size_t at = s * len + i;
      if (at >= n) continue;
      mixer.begin(s);
      for (int k = 0; k < 8; ++k) {
        const uint32_t p = mixer.predict(shazip::model::nn_bit_p12(nn_table().data(), mixer.c0()));
        mixer.update(bit_fn(at, k, p));
      }
      out[at] = static_cast<uint8_t>(mixer.byte());
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const uint8_t* rest = data + 1;
  const size_t n = size - 1;
  const int streams = 1 + (mode >> 1) % 4;
  const int pick = (mode >> 3) % 6;
  shazip::model::MixTuning tuning = shazip::model::MixTuning::for_level(1 + pick % 3);  // mix levels 1 to 3
  tuning.stream_contexts = pick >= 3;
  tuning.class_contexts = ((mode >> 3) / 6) % 2 == 0;  // mostly on, as shazip writes
  tuning.own_rates = ((mode >> 3) / 12) % 2 == 0;       // the same
  tuning.one_sided = ((mode >> 3) / 24) % 2 == 0;       // the same
  shazip::model::set_nibble_groups(tuning, size % 4 != 0);  // the same
  tuning.text_contexts = size % 3 != 0;                      // the same
  tuning.table_shapes = size % 5 != 0;                       // the same
  tuning.long_matches = size % 7 != 0;                       // the same
  tuning.scope_context = size % 11 != 0;                     // the same
  tuning.more_runs = size % 13 != 0;                         // the same
  tuning.word_indirect = size % 17 != 0;                     // the same
  tuning.mixer_selectors = size % 19 != 0;                   // the same
  tuning.layer2_inputs = size % 23 != 0;                     // the same
  tuning.shape_contexts = size % 29 != 0;                    // the same
  if (mode % 2 == 0) {
    std::vector<uint8_t> coded;
    shazip::coder::VectorSink<std::vector<uint8_t>> sink(coded);
    {
      shazip::coder::Encoder enc(sink);
      walk(n, streams, tuning, [&](size_t at, int k, uint32_t p) {
        const int b = (rest[at] >> (7 - k)) & 1;
        enc.encode_bit(b, p);
        return b;
      });
      enc.finish();
    }
    shazip::coder::Decoder dec(coded.data(), coded.size());
    const std::vector<uint8_t> back =
        walk(n, streams, tuning, [&](size_t, int, uint32_t p) { return dec.decode_bit(p); });
    if (!std::equal(back.begin(), back.end(), rest) || dec.corrupt() || dec.overran()) std::abort();
  } else {
    shazip::coder::Decoder dec(rest, n);
    walk(std::min<size_t>(512, n * 8 + 16), streams, tuning,
         [&](size_t, int, uint32_t p) { return dec.decode_bit(p); });
  }
  return 0;
}
