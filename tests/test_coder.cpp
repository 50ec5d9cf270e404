// Range coder and quantizer tests: round trips under every kind of table,
// garbage and truncated input, exactness of the quantizer.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "coder/quantize.h"
#include "coder/range_coder.h"

using namespace shazip::coder;

namespace {

using Cdf = std::array<uint32_t, kCdfSize>;

Cdf cdf_from_freqs(const std::vector<uint32_t>& freq) {
  Cdf cdf{};
  uint64_t acc = 0;
  for (int i = 0; i < kAlphabet; ++i) {
    acc += freq[i];
    cdf[i + 1] = static_cast<uint32_t>(acc);
  }
  REQUIRE(acc == kFreqTotal);
  return cdf;
}

// Random strictly increasing table: 255 distinct cut points in (0, total).
Cdf random_cdf(std::mt19937_64& rng) {
  std::vector<uint32_t> cuts;
  std::uniform_int_distribution<uint32_t> pick(1, kFreqTotal - 1);
  while (cuts.size() < kAlphabet - 1) {
    cuts.push_back(pick(rng));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  }
  Cdf cdf{};
  for (int i = 0; i < kAlphabet - 1; ++i) cdf[i + 1] = cuts[i];
  cdf[kAlphabet] = kFreqTotal;
  return cdf;
}

// One symbol holds total - 255, every other symbol frequency 1.
Cdf skewed_cdf(int big) {
  std::vector<uint32_t> freq(kAlphabet, 1);
  freq[big] = kFreqTotal - (kAlphabet - 1);
  return cdf_from_freqs(freq);
}

// Draws a symbol from the table's own distribution.
int sample(const Cdf& cdf, std::mt19937_64& rng) {
  const uint32_t u = static_cast<uint32_t>(rng() & (kFreqTotal - 1));
  return static_cast<int>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin()) - 1;
}

double ideal_bits(const Cdf& cdf, int s) {
  return kFreqBits - std::log2(static_cast<double>(cdf[s + 1] - cdf[s]));
}

struct Message {
  std::vector<const Cdf*> tables;
  std::vector<int> symbols;
  double ideal = 0;  // bits
};

std::vector<uint8_t> encode_all(const Message& m) {
  std::vector<uint8_t> out;
  VectorSink<std::vector<uint8_t>> sink(out);
  Encoder enc(sink);
  for (size_t i = 0; i < m.symbols.size(); ++i) enc.encode(m.tables[i]->data(), m.symbols[i]);
  enc.finish();
  REQUIRE(enc.bytes_out() == out.size());
  return out;
}

void check_round_trip(const Message& m) {
  const std::vector<uint8_t> bytes = encode_all(m);
  Decoder dec(bytes.data(), bytes.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < m.symbols.size(); ++i) {
    if (dec.decode(m.tables[i]->data()) != m.symbols[i]) ++mismatches;
  }
  REQUIRE(mismatches == 0);
  REQUIRE_FALSE(dec.corrupt());
  REQUIRE_FALSE(dec.overran());
  // The code length is the ideal one plus at most the final flush.
  const double ideal_bytes = m.ideal / 8;
  CHECK(static_cast<double>(bytes.size()) <= ideal_bytes * 1.0001 + 9);
  CHECK(static_cast<double>(bytes.size()) >= std::floor(ideal_bytes) - 1);
}

}  // namespace

TEST_CASE("empty message round-trips to zero bytes", "[coder]") {
  std::vector<uint8_t> out;
  VectorSink<std::vector<uint8_t>> sink(out);
  Encoder enc(sink);
  enc.finish();
  CHECK(out.empty());
  Decoder dec(out.data(), out.size());
  CHECK_FALSE(dec.overran());
}

TEST_CASE("random tables, 10^6 symbols", "[coder]") {
  std::mt19937_64 rng(1);
  std::vector<Cdf> pool;
  for (int i = 0; i < 64; ++i) pool.push_back(random_cdf(rng));
  Message m;
  for (int i = 0; i < 1000000; ++i) {
    const Cdf& t = pool[rng() % pool.size()];
    const int s = sample(t, rng);
    m.tables.push_back(&t);
    m.symbols.push_back(s);
    m.ideal += ideal_bits(t, s);
  }
  check_round_trip(m);
}

TEST_CASE("uniform table, 10^6 symbols, exactly one byte each", "[coder]") {
  std::mt19937_64 rng(2);
  Cdf t{};
  uniform_cdf(t.data());
  Message m;
  for (int i = 0; i < 1000000; ++i) {
    m.tables.push_back(&t);
    m.symbols.push_back(static_cast<int>(rng() & 255));
    m.ideal += 8;
  }
  check_round_trip(m);
  CHECK(encode_all(m).size() <= 1000000 + 1);
}

TEST_CASE("maximally skewed tables, likely and frequency-1 symbols", "[coder]") {
  std::mt19937_64 rng(3);
  std::vector<Cdf> skewed;
  for (int big : {0, 1, 127, 254, 255}) skewed.push_back(skewed_cdf(big));
  Message m;
  for (int i = 0; i < 1000000; ++i) {
    const Cdf& t = skewed[rng() % skewed.size()];
    // Mostly the likely symbol (long runs of tiny code lengths push the
    // carry logic), one in 50 a frequency-1 symbol (24 bits each).
    int s = sample(t, rng);
    if (rng() % 50 == 0) s = static_cast<int>(rng() & 255);
    m.tables.push_back(&t);
    m.symbols.push_back(s);
    m.ideal += ideal_bits(t, s);
  }
  check_round_trip(m);
}

TEST_CASE("only frequency-1 symbols", "[coder]") {
  std::mt19937_64 rng(4);
  const Cdf t = skewed_cdf(200);
  Message m;
  for (int i = 0; i < 200000; ++i) {
    int s = static_cast<int>(rng() & 255);
    if (s == 200) s = 201;
    m.tables.push_back(&t);
    m.symbols.push_back(s);
    m.ideal += ideal_bits(t, s);
  }
  check_round_trip(m);
}

TEST_CASE("runs that produce long carry chains", "[coder]") {
  // Symbols at the very top of a table push low towards the window's end, so
  // 0xFF bytes pile up until a carry resolves them.
  std::vector<uint32_t> freq(kAlphabet, 1);
  freq[255] = kFreqTotal - 255;
  const Cdf top = cdf_from_freqs(freq);
  std::mt19937_64 rng(5);
  Message m;
  for (int i = 0; i < 300000; ++i) {
    const int s = (rng() % 1000 == 0) ? static_cast<int>(rng() % 255) : 255;
    m.tables.push_back(&top);
    m.symbols.push_back(s);
    m.ideal += ideal_bits(top, s);
  }
  check_round_trip(m);
}

TEST_CASE("short messages of every length up to 64 round-trip", "[coder]") {
  std::mt19937_64 rng(6);
  std::vector<Cdf> pool;
  for (int i = 0; i < 8; ++i) pool.push_back(random_cdf(rng));
  pool.push_back(skewed_cdf(7));
  for (int len = 0; len <= 64; ++len) {
    for (int rep = 0; rep < 20; ++rep) {
      Message m;
      for (int i = 0; i < len; ++i) {
        const Cdf& t = pool[rng() % pool.size()];
        const int s = sample(t, rng);
        m.tables.push_back(&t);
        m.symbols.push_back(s);
        m.ideal += ideal_bits(t, s);
      }
      check_round_trip(m);
    }
  }
}

TEST_CASE("decoding random garbage never crashes or hangs", "[coder]") {
  std::mt19937_64 rng(7);
  std::vector<Cdf> pool;
  for (int i = 0; i < 4; ++i) pool.push_back(random_cdf(rng));
  pool.push_back(skewed_cdf(0));
  int flagged = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<uint8_t> junk(rng() % 64);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    Decoder dec(junk.data(), junk.size());
    for (int i = 0; i < 500; ++i) {
      const int s = dec.decode(pool[rng() % pool.size()].data());
      REQUIRE(s >= 0);
      REQUIRE(s < 256);
    }
    flagged += dec.overran() || dec.corrupt();
  }
  // 500 symbols need far more than 64 bytes: every trial must notice.
  CHECK(flagged == 2000);
}

TEST_CASE("a truncated stream is reported", "[coder]") {
  std::mt19937_64 rng(8);
  Cdf t{};
  uniform_cdf(t.data());
  Message m;
  for (int i = 0; i < 1000; ++i) {
    m.tables.push_back(&t);
    m.symbols.push_back(static_cast<int>(rng() & 255));
  }
  std::vector<uint8_t> bytes = encode_all(m);
  for (size_t cut : {size_t{0}, size_t{1}, bytes.size() / 2, bytes.size() - 10}) {
    Decoder dec(bytes.data(), cut);
    for (size_t i = 0; i < m.symbols.size(); ++i) dec.decode(t.data());
    CHECK(dec.overran());
  }
}

TEST_CASE("binary decisions, interleaved with byte symbols, at every probability", "[coder]") {
  // Probabilities from the extremes (1 and 2^16 - 1) through the middle;
  // bits drawn from those probabilities, so the size can be checked against
  // the ideal code length.
  std::mt19937_64 rng(10);
  const Cdf t = random_cdf(rng);
  std::vector<uint32_t> ps;
  std::vector<int> bits;
  std::vector<int> symbols;
  double ideal = 0;
  for (int i = 0; i < 400000; ++i) {
    uint32_t p;
    switch (i % 4) {
      case 0: p = 1 + static_cast<uint32_t>(rng() % 63); break;                 // near 0
      case 1: p = kBitTotal - 1 - static_cast<uint32_t>(rng() % 63); break;     // near 1
      default: p = 1 + static_cast<uint32_t>(rng() % (kBitTotal - 1)); break;  // anywhere
    }
    const int bit = (rng() & (kBitTotal - 1)) < p ? 1 : 0;
    ps.push_back(p);
    bits.push_back(bit);
    ideal += -std::log2((bit ? p : kBitTotal - p) / double{kBitTotal});
    if (i % 16 == 0) {
      symbols.push_back(sample(t, rng));
      ideal += ideal_bits(t, symbols.back());
    }
  }
  std::vector<uint8_t> out;
  VectorSink<std::vector<uint8_t>> sink(out);
  Encoder enc(sink);
  for (size_t i = 0, s = 0; i < bits.size(); ++i) {
    enc.encode_bit(bits[i], ps[i]);
    if (i % 16 == 0) enc.encode(t.data(), symbols[s++]);
  }
  enc.finish();
  Decoder dec(out.data(), out.size());
  size_t mismatches = 0;
  for (size_t i = 0, s = 0; i < bits.size(); ++i) {
    mismatches += dec.decode_bit(ps[i]) != bits[i];
    if (i % 16 == 0) mismatches += dec.decode(t.data()) != symbols[s++];
  }
  CHECK(mismatches == 0);
  CHECK_FALSE(dec.corrupt());
  CHECK_FALSE(dec.overran());
  CHECK(static_cast<double>(out.size()) <= ideal / 8 * 1.0001 + 9);
  CHECK(static_cast<double>(out.size()) >= std::floor(ideal / 8) - 1);
}

TEST_CASE("binary decoding of garbage and of all-0xFF input stays sane", "[coder]") {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<uint8_t> junk(rng() % 32, trial % 2 ? 0xFF : 0);
    if (trial % 4 == 0)
      for (auto& b : junk) b = static_cast<uint8_t>(rng());
    Decoder dec(junk.data(), junk.size());
    for (int i = 0; i < 2000; ++i) {
      const int bit = dec.decode_bit(1 + static_cast<uint32_t>(rng() % (kBitTotal - 1)));
      REQUIRE((bit == 0 || bit == 1));
    }
    // 2000 decisions at random probabilities need more than 32 bytes.
    CHECK((dec.overran() || dec.corrupt()));
  }
}

TEST_CASE("quantizer: valid tables for any input", "[coder]") {
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::array<float, kAlphabet> p{};
  Cdf cdf{};
  auto check_valid = [&] {
    REQUIRE(cdf[0] == 0);
    REQUIRE(cdf[kAlphabet] == kFreqTotal);
    for (int i = 0; i < kAlphabet; ++i) REQUIRE(cdf[i + 1] > cdf[i]);
  };
  for (int trial = 0; trial < 1000; ++trial) {
    float sum = 0;
    for (auto& x : p) sum += (x = std::pow(u(rng), 8.0f));
    for (auto& x : p) x /= sum;
    quantize_probs(p.data(), cdf.data());
    check_valid();
  }
  p.fill(0.0f);
  quantize_probs(p.data(), cdf.data());
  check_valid();
  Cdf uni{};
  uniform_cdf(uni.data());
  CHECK(cdf == uni);

  p.fill(std::numeric_limits<float>::quiet_NaN());
  p[3] = 0.5f;
  p[4] = -1.0f;
  p[5] = std::numeric_limits<float>::infinity();
  quantize_probs(p.data(), cdf.data());
  check_valid();
  CHECK(cdf[6] - cdf[5] > kFreqTotal / 2);  // inf counts as 1, 0.5 as 0.5

  p.fill(0.0f);
  p[42] = 1.0f;
  quantize_probs(p.data(), cdf.data());
  check_valid();
  CHECK(cdf[43] - cdf[42] == kFreqTotal - 255);
}

TEST_CASE("quantizer: the AVX2 tables equal the plain C++ ones bit for bit", "[coder]") {
  // quantize_probs takes AVX2 where the CPU has it (on others both calls
  // below are the plain code): encoder and decoder on different CPUs must
  // agree on every table, the edge cases' included.
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::array<float, kAlphabet> p{};
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), -1.0f, -0.0f, 2.0f,
                            std::numeric_limits<float>::infinity(), 1.0f, tiny, 0.99999994f};
  for (int trial = 0; trial < 20000; ++trial) {
    const float sharpness = 32.0f * u(rng);  // from flat to one symbol taking nearly all
    float sum = 0;
    for (auto& x : p) sum += (x = std::exp(sharpness * u(rng)));
    for (auto& x : p) x /= sum;
    switch (trial % 6) {
      case 1:  // zeros among them
        for (auto& x : p) x = rng() % 3 == 0 ? 0.0f : x;
        break;
      case 2:  // specials among them
        for (auto& x : p) x = rng() % 4 == 0 ? specials[rng() % 8] : x;
        break;
      case 3:  // subnormals only, some zero
        for (auto& x : p) x = tiny * static_cast<float>(rng() % 64);
        break;
      case 4:  // one symbol, another with a subnormal
        p.fill(0.0f);
        p[rng() % kAlphabet] = u(rng);
        p[rng() % kAlphabet] = tiny;
        break;
      case 5:  // ties for the largest
        for (auto& x : p) x = rng() % 2 ? 0.25f : 0.125f;
        break;
      default:
        break;
    }
    Cdf a{}, b{};
    quantize_probs(p.data(), a.data());
    quantize_probs_plain(p.data(), b.data());
    INFO("trial " << trial);
    REQUIRE(a == b);
  }
}

TEST_CASE("quantizer: close to the floats and exactly reproducible", "[coder]") {
  std::mt19937_64 rng(10);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::array<float, kAlphabet> p{};
  double float_bits = 0, quant_bits = 0;
  for (int trial = 0; trial < 200; ++trial) {
    float sum = 0;
    for (auto& x : p) sum += (x = std::exp(8.0f * u(rng)));
    for (auto& x : p) x /= sum;
    Cdf a{}, b{};
    quantize_probs(p.data(), a.data());
    quantize_probs(p.data(), b.data());
    REQUIRE(a == b);
    for (int s = 0; s < kAlphabet; ++s) {
      float_bits += -p[s] * std::log2(static_cast<double>(p[s]));
      quant_bits += -p[s] * std::log2((a[s + 1] - a[s]) / static_cast<double>(kFreqTotal));
    }
  }
  // Expected cost under the true distribution grows by well under 0.01%.
  CHECK(quant_bits <= float_bits * 1.0001);
}
