// Bitwise context mixing: see context_mix.h for the role of this stage.
//
// Units. Probabilities are 12-bit (p / 4096) inside, "stretched" values are
// ln(p / (1 - p)) * 256 clamped to +-2047, weights are 16.16 fixed point.
#include "model/context_mix.h"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#include "coder/assert.h"

namespace shazip::model {
namespace {

// squash(d) = 4096 / (1 + e^(-d / 256)) at d = -2048, -1920, ..., 2048,
// rounded; squash() interpolates linearly between these points. Integers, so
// that no libm difference can reach the archive.
constexpr int kSquashPoints[33] = {1,    2,    4,    6,    10,   17,   27,   45,   74,   120,  194,
                                   311,  488,  747,  1102, 1546, 2048, 2550, 2994, 3349, 3608, 3785,
                                   3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095};

int squash(int d) {
  d = std::clamp(d, -2047, 2047) + 2048;  // 1..4095
  const int i = d >> 7, w = d & 127;
  return (kSquashPoints[i] * (128 - w) + kSquashPoints[i + 1] * w + 64) >> 7;
}

// stretch = squash^-1 on 0..4095, built once from squash (integers only).
struct StretchTable {
  int16_t v[4096];
  StretchTable() {
    int next = 0;
    for (int d = -2047; d <= 2047; ++d) {
      const int p = squash(d);
      for (; next <= p; ++next) v[next] = static_cast<int16_t>(d);
    }
    for (; next < 4096; ++next) v[next] = 2047;
  }
};
const StretchTable kStretch;
inline int stretch(int p12) { return kStretch.v[p12]; }

inline uint32_t hash32(uint64_t x) {
  x *= 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<uint32_t>(x);
}

int ceil_log2(uint64_t n) {
  int b = 0;
  while (b < 63 && (uint64_t{1} << b) < n) ++b;
  return b;
}

// An adaptive probability in one 32-bit word: the probability in the top 22
// bits (stored XOR 2^21, so that a zeroed word means 1/2) and the number of
// updates, capped, in the low 10 bits. The step is 1 / (n + 1.5): a new
// context learns at once and settles into a slow average.
struct RecipTable {
  int32_t v[1024];
  RecipTable() {
    for (int n = 0; n < 1024; ++n) v[n] = 131072 / (2 * n + 3);  // 65536 / (n + 1.5)
  }
};
const RecipTable kRecip;

struct Counters {
  static int p12(uint32_t e) { return std::clamp(static_cast<int>(((e >> 10) ^ 0x200000) >> 10), 1, 4095); }
  static void update(uint32_t& e, int bit, int limit) {
    const int n = static_cast<int>(e & 1023);
    const int64_t p = static_cast<int64_t>((e >> 10) ^ 0x200000);
    const int64_t target = bit ? (int64_t{1} << 22) - 1 : 0;
    const int64_t q = p + (((target - p) * kRecip.v[n]) >> 16);
    e = ((static_cast<uint32_t>(q) ^ 0x200000) << 10) | static_cast<uint32_t>(n < limit ? n + 1 : n);
  }
};

// Zero-initialised array from calloc, so that pages nobody touches (small
// inputs, short fuzz runs) cost nothing: every structure below is laid out so
// that all-zero memory is its initial state.
template <class T>
class ZeroArray {
 public:
  explicit ZeroArray(size_t n) : data_(n ? static_cast<T*>(std::calloc(n, sizeof(T))) : nullptr) {
    if (n && !data_) throw std::bad_alloc();
  }
  ~ZeroArray() { std::free(data_); }
  ZeroArray(const ZeroArray&) = delete;
  ZeroArray& operator=(const ZeroArray&) = delete;
  ZeroArray(ZeroArray&& o) noexcept : data_(o.data_) { o.data_ = nullptr; }
  ZeroArray& operator=(ZeroArray&& o) noexcept {
    std::swap(data_, o.data_);
    return *this;
  }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  T* data_;
};

// 2^bits counters, indexed modulo their number.
class Table {
 public:
  explicit Table(int bits) : data_(size_t{1} << bits), mask_((uint32_t{1} << bits) - 1) {}
  uint32_t& at(uint32_t i) { return data_[i & mask_]; }

 private:
  ZeroArray<uint32_t> data_;
  uint32_t mask_;
};

// Refines a probability given a small context: a piecewise-linear map over
// the stretched input, 33 knots per context, each a 16-bit probability.
// Knot j starts at squash((j - 16) * 128), the identity map; knots are stored
// XOR that start value so that zeroed memory is the initial state.
class Apm {
 public:
  Apm(int contexts, int rate) : t_(static_cast<size_t>(contexts) * 33), rate_(rate) {}
  // Returns a 16-bit probability.
  int refine(int p12, int ctx) {
    const int s = stretch(p12) + 2048;  // 1..4095
    const int lo = s >> 7, w = s & 127;
    const size_t i = static_cast<size_t>(ctx) * 33 + lo;
    const int near = lo + (w >> 6);  // the nearer knot learns
    index_ = i + (w >> 6);
    start_ = kApmStart.v[near];
    return (knot(i, lo) * (128 - w) + knot(i + 1, lo + 1) * w) >> 7;
  }
  void update(int bit) {
    const int target = bit ? 65535 : 0;
    const int v = t_[index_] ^ start_;
    t_[index_] = static_cast<uint16_t>((v + ((target - v) >> rate_)) ^ start_);
  }

 private:
  struct StartTable {
    uint16_t v[33];
    StartTable() {
      for (int j = 0; j < 33; ++j) v[j] = static_cast<uint16_t>(squash((j - 16) * 128) * 16);
    }
  };
  static const StartTable kApmStart;
  int knot(size_t i, int j) const { return t_[i] ^ kApmStart.v[j]; }

  ZeroArray<uint16_t> t_;
  size_t index_ = 0;
  uint16_t start_ = 0;
  int rate_;
};
const Apm::StartTable Apm::kApmStart;

// Gated linear mixing in the logistic domain: one weight vector per context,
// picked anew for every bit; trained by gradient descent on coding cost.
class Mixer {
 public:
  Mixer(int inputs, int contexts) : n_(inputs), w_(static_cast<size_t>(inputs) * contexts, 0) {}
  void set_initial(int input, int32_t weight) {
    for (size_t i = static_cast<size_t>(input); i < w_.size(); i += static_cast<size_t>(n_)) w_[i] = weight;
  }
  // Mixed probability (12-bit) of a 1; also keeps the stretched value.
  int mix(const int* x, int ctx) {
    sel_ = &w_[static_cast<size_t>(ctx) * n_];
    int64_t dot = 0;
    for (int i = 0; i < n_; ++i) dot += static_cast<int64_t>(x[i]) * sel_[i];
    st_ = static_cast<int>(std::clamp<int64_t>(dot >> 16, -2047, 2047));
    p_ = squash(st_);
    return p_;
  }
  int stretched() const { return st_; }
  void update(const int* x, int bit, int lr) {
    const int err = ((bit << 12) - p_) * lr;
    for (int i = 0; i < n_; ++i) sel_[i] += static_cast<int32_t>((static_cast<int64_t>(x[i]) * err + 8192) >> 14);
  }

 private:
  int n_;
  std::vector<int32_t> w_;
  int32_t* sel_ = nullptr;
  int st_ = 0, p_ = 2048;
};

// Inputs to the mixer: the SHA-RNN, order 0 and 1 (direct tables), hashed
// orders 2, 3, 4, 6 and two word contexts, the match model, a bias.
constexpr int kHashed = 8;
constexpr int kInputs = 1 + 2 + kHashed + 1 + 1;
constexpr int kMatchMin = 6;    // bytes hashed to find a match
constexpr int kMatchCap = 31;   // match lengths above this share a counter

struct StreamState {
  uint64_t last8 = 0;       // the last 8 bytes, most recent in the low byte
  uint32_t word = 0;        // hash of the current word's letters (0 between words)
  uint32_t prev_word = 0;   // hash of the word before it
  uint32_t base[kHashed] = {};  // context hashes for the next byte
  std::vector<uint8_t> hist;    // every byte of the stream so far
  ZeroArray<uint32_t> match_table{0};  // hash of kMatchMin bytes -> position after them
  uint32_t match_ptr = 0;   // position in hist of the predicted byte
  uint32_t match_len = 0;   // bytes matched before it; 0: no match
};

}  // namespace

int nn_bit_p12(const uint32_t* cdf, int c0) {
  // c0 = 1 followed by k known bits: the candidates are the 2^(8-k) bytes
  // starting with those bits; the next bit splits them in halves.
  int k = 0;
  while ((c0 >> k) > 1) ++k;
  const int span = 256 >> k;
  const int lo = (c0 - (1 << k)) * span;
  const uint64_t total = cdf[lo + span] - cdf[lo];
  const uint64_t ones = cdf[lo + span] - cdf[lo + span / 2];
  const int p = static_cast<int>((ones * 4096 + total / 2) / total);
  return std::clamp(p, 1, 4095);
}

struct ContextMixer::Impl {
  Impl(int streams, uint64_t stream_len, const MixTuning& t)
      : tuning(t), order0(8), order1(16), apm_order0(256, t.apm_rate), apm_order1(65536, t.apm_rate) {
    SHAZIP_ASSERT(streams >= 1);
    const uint64_t total = stream_len * static_cast<uint64_t>(streams);
    const int bits = std::clamp(ceil_log2(std::max<uint64_t>(total, 1)) + 1, 16, 22);
    for (int i = 0; i < kHashed; ++i) hashed.emplace_back(bits);
    const int match_bits = std::clamp(ceil_log2(std::max<uint64_t>(stream_len, 1)), 10, 22);
    state.resize(static_cast<size_t>(streams));
    for (StreamState& s : state) {
      s.match_table = ZeroArray<uint32_t>(size_t{1} << match_bits);
      s.hist.reserve(stream_len);
      compute_contexts(s);
    }
    match_mask = (uint32_t{1} << match_bits) - 1;
    for (Mixer& mx : layer1) {
      for (int i = 1; i < kInputs; ++i) mx.set_initial(i, t.cm_weight);
      mx.set_initial(0, t.use_nn ? t.nn_weight : 0);
    }
    for (int i = 0; i < kMixers; ++i) layer2.set_initial(i, 65536 / kMixers);
  }

  void compute_contexts(StreamState& s) {
    const uint64_t h = s.last8;
    s.base[0] = hash32((h & 0xFFFF) | uint64_t{2} << 56);
    s.base[1] = hash32((h & 0xFFFFFF) | uint64_t{3} << 56);
    s.base[2] = hash32((h & 0xFFFFFFFF) | uint64_t{4} << 56);
    s.base[3] = hash32((h & 0xFFFFFFFFFFFF) | uint64_t{6} << 56);
    s.base[4] = hash32((uint64_t{s.word} << 8 | (h & 0xFF)) ^ uint64_t{7} << 56);
    s.base[5] = hash32((uint64_t{s.word} << 32 | s.prev_word) ^ uint64_t{8} << 58);
    s.base[6] = hash32((h & 0xFFFFFFFFFF) | uint64_t{5} << 56);
    s.base[7] = hash32((h & 0xFFFF00) | uint64_t{9} << 56);
  }

  void end_byte(StreamState& s, int byte) {
    s.hist.push_back(static_cast<uint8_t>(byte));
    s.last8 = s.last8 << 8 | static_cast<uint64_t>(byte);
    int lower = byte;
    if (lower >= 'A' && lower <= 'Z') lower += 'a' - 'A';
    if ((lower >= 'a' && lower <= 'z') || byte >= 128) {
      s.word = (s.word + static_cast<uint32_t>(lower) + 1) * 0x2E1B5A3Du;
    } else if (s.word != 0) {
      s.prev_word = s.word;
      s.word = 0;
    }
    // Match model: extend the current match or look one up.
    if (s.match_len > 0 && s.hist[s.match_ptr] == byte) {
      s.match_len = std::min<uint32_t>(s.match_len + 1, 65535);
      ++s.match_ptr;
    } else {
      s.match_len = 0;
    }
    const uint64_t n64 = s.hist.size();
    const uint32_t n = static_cast<uint32_t>(n64);  // bytes in hist
    // Positions are 32-bit: past 4 GiB in one stream the match model just
    // keeps the matches it has.
    if (n >= kMatchMin && n64 < 0xFFFFFFFFull) {
      const uint32_t slot = hash32((s.last8 & 0xFFFFFFFFFFFF) | uint64_t{1} << 60) & match_mask;
      if (s.match_len == 0) {
        const uint32_t cand = s.match_table[slot];
        if (cand > 0) {
          uint32_t len = 0;
          while (len < 64 && len < cand && s.hist[cand - 1 - len] == s.hist[n - 1 - len]) ++len;
          if (len >= kMatchMin) {
            s.match_len = len;
            s.match_ptr = cand;
          }
        }
      }
      s.match_table[slot] = n;
    }
    compute_contexts(s);
  }

  MixTuning tuning;
  Table order0, order1;
  std::vector<Table> hashed;
  std::vector<StreamState> state;
  uint32_t match_mask = 0;
  uint32_t match_counters[2 * (kMatchCap + 1)] = {};
  // Layer 1 picks weights by the partial byte, by the match state and by the
  // SHA-RNN's confidence; layer 2 mixes their outputs.
  static constexpr int kMixers = 3;
  Mixer layer1[kMixers] = {Mixer(kInputs, 256), Mixer(kInputs, 4 * 8 * 2), Mixer(kInputs, 16 * 8)};
  Mixer layer2{kMixers, 8};
  int x2[kMixers] = {};
  Apm apm_order0, apm_order1;

  // The byte in progress.
  StreamState* cur = nullptr;
  int c0 = 1;
  int bitpos = 0;  // bits of the current byte coded so far
  int last_byte = 0;
  uint64_t updates = 0;
  // The bit in progress.
  uint32_t* slots[2 + kHashed] = {};
  uint32_t* match_slot = nullptr;
  int x[kInputs] = {};
  int mix_p12 = 2048;
};

ContextMixer::ContextMixer(int streams, uint64_t stream_len, const MixTuning& tuning)
    : impl_(std::make_unique<Impl>(streams, stream_len, tuning)) {}
ContextMixer::~ContextMixer() = default;

int ContextMixer::c0() const { return impl_->c0; }
int ContextMixer::byte() const { return impl_->last_byte; }

void ContextMixer::begin(int stream) {
  Impl& m = *impl_;
  SHAZIP_ASSERT(stream >= 0 && static_cast<size_t>(stream) < m.state.size() && m.bitpos == 0);
  m.cur = &m.state[static_cast<size_t>(stream)];
  m.c0 = 1;
}

uint32_t ContextMixer::predict(int nn_p12) {
  Impl& m = *impl_;
  StreamState& s = *m.cur;
  const int c0 = m.c0;
  const uint32_t c1 = static_cast<uint32_t>(s.last8 & 0xFF);
  const uint32_t spread = static_cast<uint32_t>(c0) * 0x9E3779B1u;  // distinct low bits per c0
  m.slots[0] = &m.order0.at(static_cast<uint32_t>(c0));
  m.slots[1] = &m.order1.at(c1 << 8 | static_cast<uint32_t>(c0));
  for (int i = 0; i < kHashed; ++i) m.slots[2 + i] = &m.hashed[i].at(s.base[i] ^ spread);

  int* x = m.x;
  x[0] = m.tuning.use_nn ? stretch(std::clamp(nn_p12, 1, 4095)) : 0;
  for (int i = 0; i < 2 + kHashed; ++i) x[1 + i] = stretch(Counters::p12(*m.slots[i]));
  // Match model: the next bit of the predicted byte, while the byte so far agrees.
  m.match_slot = nullptr;
  x[3 + kHashed] = 0;
  if (s.match_len > 0) {
    const int predicted = s.hist[s.match_ptr] | 256;
    if ((predicted >> (8 - m.bitpos)) == c0) {
      const int expected = (predicted >> (7 - m.bitpos)) & 1;
      const uint32_t len = std::min<uint32_t>(s.match_len, kMatchCap);
      m.match_slot = &m.match_counters[len * 2 + static_cast<uint32_t>(expected)];
      x[3 + kHashed] = stretch(Counters::p12(*m.match_slot));
    }
  }
  x[4 + kHashed] = 256;

  const int match_bucket = s.match_len == 0 ? 0 : s.match_len < 16 ? 1 : s.match_len < 32 ? 2 : 3;
  const int match_ctx = (match_bucket * 8 + m.bitpos) * 2 + (m.match_slot != nullptr);
  const int nn_ctx = ((x[0] + 2048) >> 8) * 8 + m.bitpos;
  m.layer1[0].mix(x, c0);
  m.layer1[1].mix(x, match_ctx);
  m.layer1[2].mix(x, nn_ctx);
  for (int i = 0; i < Impl::kMixers; ++i) m.x2[i] = m.layer1[i].stretched();
  m.mix_p12 = m.layer2.mix(m.x2, m.bitpos);

  const int a0 = m.apm_order0.refine(m.mix_p12, c0);
  const int a1 = m.apm_order1.refine(m.mix_p12, static_cast<int>(c1 << 8) | c0);
  const int p16 = (m.mix_p12 * 16 + a0 + 2 * a1 + 2) >> 2;
  return static_cast<uint32_t>(std::clamp(p16, static_cast<int>(kMinP16), static_cast<int>(65536 - kMinP16)));
}

void ContextMixer::update(int bit) {
  Impl& m = *impl_;
  SHAZIP_ASSERT(m.cur != nullptr && (bit == 0 || bit == 1));
  const int limit = m.tuning.counter_limit;
  for (uint32_t* slot : m.slots) Counters::update(*slot, bit, limit);
  if (m.match_slot) Counters::update(*m.match_slot, bit, 1023);
  m.apm_order0.update(bit);
  m.apm_order1.update(bit);

  // Mixer: gradient step on coding cost, the rate falling from mixer_lr to
  // mixer_lr_min.
  const int lr = std::max<int64_t>(m.tuning.mixer_lr_min,
                                   m.tuning.mixer_lr - static_cast<int64_t>(m.updates >> m.tuning.mixer_decay));
  for (Mixer& mx : m.layer1) mx.update(m.x, bit, static_cast<int>(lr));
  m.layer2.update(m.x2, bit, m.tuning.mixer2_lr);
  ++m.updates;

  m.c0 = m.c0 << 1 | bit;
  if (++m.bitpos == 8) {
    m.last_byte = m.c0 & 0xFF;
    m.end_byte(*m.cur, m.last_byte);
    m.bitpos = 0;
    m.c0 = 1;
    m.cur = nullptr;
  }
}

}  // namespace shazip::model
