// Range coder benchmark: coded size against the ideal code length, and speed.
//
// Draws 10^7 symbols from a pool of skewed distributions shaped like a byte
// language model's outputs (softmax of Zipf-ranked logits over a random
// permutation, temperatures giving entropies from ~0.1 to ~6 bits), quantizes
// each distribution once, and reports
//   - coded bytes vs the quantized ideal  sum -log2(freq / 2^24)
//   - coded bytes vs the float ideal      sum -log2(p)
//   - encode and decode speed in MB/s of symbols (one symbol = one byte).
// Usage: bench_coder [symbols] [seed]
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "coder/quantize.h"
#include "coder/range_coder.h"

using namespace shazip::coder;

namespace {

// Small enough that the tables stay in cache, as in the real pipeline where the
// table is written by the quantizer just before it is coded.
constexpr int kPool = 256;

struct Dist {
  std::array<float, kAlphabet> p;
  std::array<uint32_t, kCdfSize> cdf;
};

void make_dist(Dist& d, std::mt19937_64& rng) {
  std::array<int, kAlphabet> perm;
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  // Sharpness from flat-ish to nearly deterministic.
  const double sharp = std::exp(std::uniform_real_distribution<double>(-1.5, 3.0)(rng));
  double sum = 0;
  std::array<double, kAlphabet> w;
  for (int r = 0; r < kAlphabet; ++r) sum += (w[r] = std::exp(-sharp * std::log(1.0 + r)));
  for (int r = 0; r < kAlphabet; ++r) d.p[perm[r]] = static_cast<float>(w[r] / sum);
  quantize_probs(d.p.data(), d.cdf.data());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10000000;
  const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  std::mt19937_64 rng(seed);

  std::vector<Dist> pool(kPool);
  for (auto& d : pool) make_dist(d, rng);

  std::vector<const uint32_t*> tables(n);
  std::vector<uint8_t> symbols(n);
  double ideal_quant = 0, ideal_float = 0, entropy = 0;
  for (size_t i = 0; i < n; ++i) {
    const Dist& d = pool[rng() % kPool];
    // Sample from the float distribution (what a real model's data does).
    double u = std::uniform_real_distribution<double>(0, 1)(rng), acc = 0;
    int s = kAlphabet - 1;
    for (int k = 0; k < kAlphabet; ++k) {
      acc += d.p[k];
      if (u < acc) { s = k; break; }
    }
    if (d.p[s] <= 0) s = static_cast<int>(std::max_element(d.p.begin(), d.p.end()) - d.p.begin());
    tables[i] = d.cdf.data();
    symbols[i] = static_cast<uint8_t>(s);
    ideal_quant += kFreqBits - std::log2(static_cast<double>(d.cdf[s + 1] - d.cdf[s]));
    ideal_float += -std::log2(static_cast<double>(d.p[s]));
  }
  for (const auto& d : pool)
    for (float p : d.p) entropy += p > 0 ? -p * std::log2(p) / kPool : 0;

  std::vector<uint8_t> out;
  out.reserve(n);
  VectorSink<std::vector<uint8_t>> sink(out);
  auto t0 = std::chrono::steady_clock::now();
  {
    Encoder enc(sink);
    for (size_t i = 0; i < n; ++i) enc.encode(tables[i], symbols[i]);
    enc.finish();
  }
  const double enc_s = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  Decoder dec(out.data(), out.size());
  size_t errors = 0;
  for (size_t i = 0; i < n; ++i) errors += dec.decode(tables[i]) != symbols[i];
  const double dec_s = seconds_since(t0);

  // The quantizer runs once per coded symbol in the real pipeline.
  std::array<uint32_t, kCdfSize> scratch;
  const size_t quant_reps = std::min<size_t>(n, 2000000);
  uint64_t checksum = 0;
  t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < quant_reps; ++i) {
    quantize_probs(pool[i % kPool].p.data(), scratch.data());
    checksum += scratch[1 + (i & 127)];
  }
  const double quant_s = seconds_since(t0);

  const double coded_bits = 8.0 * out.size();
  std::printf("symbols                 %zu (pool of %d distributions, mean entropy %.3f bits)\n",
              n, kPool, entropy);
  std::printf("coded bytes             %zu (%.4f bits/symbol)\n", out.size(), coded_bits / n);
  std::printf("quantized ideal bytes   %.1f\n", ideal_quant / 8);
  std::printf("float ideal bytes       %.1f\n", ideal_float / 8);
  std::printf("overhead vs quantized   %+.5f%%\n", 100.0 * (coded_bits / ideal_quant - 1));
  std::printf("overhead vs float       %+.5f%%\n", 100.0 * (coded_bits / ideal_float - 1));
  std::printf("encode                  %.1f MB/s\n", n / enc_s / 1e6);
  std::printf("decode                  %.1f MB/s\n", n / dec_s / 1e6);
  std::printf("quantize                %.2f M tables/s (checksum %llu)\n", quant_reps / quant_s / 1e6,
              static_cast<unsigned long long>(checksum % 1000));
  std::printf("round trip              %s\n", errors == 0 && !dec.corrupt() && !dec.overran() ? "ok" : "FAILED");
  return errors == 0 ? 0 : 1;
}
