// Bitwise context mixing: see context_mix.h for the role of this stage.
//
// Units. Probabilities are 12-bit (p / 4096) inside, "stretched" values are
// ln(p / (1 - p)) * 256 clamped to +-2047, weights are 16.16 fixed point.
#include "model/context_mix.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <new>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "coder/assert.h"

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// The mixers' dot products and updates are straight-line loops that coverage
// instrumentation only slows down (fourfold in the fuzz_mix target at level 2).
#if defined(__clang__)
#define SHAZIP_NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define SHAZIP_NO_COVERAGE
#endif

namespace shazip::model {
namespace {

// squash(d) = 4096 / (1 + e^(-d / 256)) at d = -2048, -1920, ..., 2048,
// rounded; squash_interpolated() interpolates linearly between these points
// and squash() looks its results up. Integers, so that no libm difference can
// reach the archive.
constexpr int kSquashPoints[33] = {1,    2,    4,    6,    10,   17,   27,   45,   74,   120,  194,
                                   311,  488,  747,  1102, 1546, 2048, 2550, 2994, 3349, 3608, 3785,
                                   3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095};

int squash_interpolated(int d) {
  d += 2048;  // 1..4095
  const int i = d >> 7, w = d & 127;
  return (kSquashPoints[i] * (128 - w) + kSquashPoints[i + 1] * w + 64) >> 7;
}

// squash() for every clamped d, looked up (the mixers and APMs squash a
// dozen times a bit; 8 KB, in L1).
struct SquashTable {
  int16_t v[4095];
  SquashTable() {
    for (int d = -2047; d <= 2047; ++d) v[d + 2047] = static_cast<int16_t>(squash_interpolated(d));
  }
};
const SquashTable kSquash;

inline int squash(int d) { return kSquash.v[std::clamp(d, -2047, 2047) + 2047]; }

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

// Bit histories (level 2): a state in one byte stands for a pair of counts
// (zeros, ones) seen in a context, each capped at 34; a bit adds to its own
// count and, when the other count is above 2, halves the excess of the other
// (recent bits weigh more). The 248 reachable pairs are numbered in
// breadth-first order from (0, 0) = state 0, so zeroed memory is "nothing seen".
struct BitHistory {
  static constexpr int kCap = 34;
  uint8_t next[256][2] = {};
  uint8_t zeros[256] = {}, ones[256] = {};
  int states = 0;
  BitHistory() {
    int index[kCap + 1][kCap + 1];
    for (auto& row : index) for (int& v : row) v = -1;
    int queue[256][2];
    index[0][0] = 0;
    queue[0][0] = queue[0][1] = 0;
    states = 1;
    for (int head = 0; head < states; ++head) {
      const int a = queue[head][0], b = queue[head][1];
      zeros[head] = static_cast<uint8_t>(a);
      ones[head] = static_cast<uint8_t>(b);
      for (int y = 0; y < 2; ++y) {
        int na = a, nb = b;
        if (y) {
          nb = std::min(nb + 1, kCap);
          if (na > 2) na = 2 + (na - 2) / 2;
        } else {
          na = std::min(na + 1, kCap);
          if (nb > 2) nb = 2 + (nb - 2) / 2;
        }
        if (index[na][nb] < 0) {
          SHAZIP_ASSERT(states < 256);
          index[na][nb] = states;
          queue[states][0] = na;
          queue[states][1] = nb;
          ++states;
        }
        next[head][y] = static_cast<uint8_t>(index[na][nb]);
      }
    }
  }
};
const BitHistory kHistory;

// Level 2's hashed slot, one 32-bit word per context and bit position: a
// 16-bit probability (stored XOR 2^15: zero means 1/2) in the top half, the
// bit-history state in bits 8-15 and an 8-bit check of the context hash in the
// low byte, so that a slot that belongs to another context is noticed and
// taken over instead of trusted. The probability adapts at 1 / (n + 1.5) with
// n the history's count (capped): a surprise shortens the history, so the
// counter speeds up again.
struct Slot {
  static int p12(uint32_t e) { return std::clamp(static_cast<int>(((e >> 16) ^ 0x8000) >> 4), 1, 4095); }
  static int state(uint32_t e) { return static_cast<int>((e >> 8) & 255); }
  static int count(uint32_t e) { return kHistory.zeros[state(e)] + kHistory.ones[state(e)]; }
  static uint32_t check(uint32_t e) { return e & 255; }
  static void update(uint32_t& e, int bit, int limit) {
    const int st = state(e);
    const int n = std::min(count(e), limit);
    const int p = static_cast<int>((e >> 16) ^ 0x8000);
    const int target = bit ? 65535 : 0;
    const int q = p + static_cast<int>((static_cast<int64_t>(target - p) * kRecip.v[n]) >> 16);
    e = static_cast<uint32_t>(q ^ 0x8000) << 16 | static_cast<uint32_t>(kHistory.next[st][bit]) << 8 | check(e);
  }
};

// Zero-initialised array whose pages nobody touches (small inputs, short fuzz
// runs) cost nothing: every structure below is laid out so that all-zero
// memory is its initial state. Arrays of 64 KiB and more (the tables) are
// mapped on Linux, so that a thread of their own faults their pages in ahead
// (Prefaulter), and those of 2 MiB and more asked for transparent huge pages:
// their reads are random, and with 4 KiB pages most of them also missed the
// TLB (on dickens, level 2's mixing stage runs about 1.25x faster with huge
// pages, level 3's 1.27x; RESULTS.md).
// The mixers' weights are mapped too, on plain pages, and written a set at
// a time as the sets are first used (Mixer). Only speed depends on this,
// never a value.
std::atomic<uint64_t> g_mapped_table_bytes{0};
std::atomic<uint64_t> g_mapped_other_bytes{0};  // the mixers' weights

// A mapped array's memory (see ZeroArray).
struct Region {
  void* data = nullptr;
  size_t bytes = 0;
};

// Whether this kernel can fault pages in without touching them (Linux 5.14
// and later), asked once.
bool can_populate() {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  static const bool yes = [] {
    const size_t page = 4096;
    void* p = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    const bool ok = madvise(p, page, MADV_POPULATE_WRITE) == 0;
    munmap(p, page);
    return ok;
  }();
  return yes;
#else
  return false;
#endif
}
std::atomic<bool> g_prefault{true};  // set_table_prefault's setting

// Faults the mapped tables' pages in on a thread of its own while the coder
// starts. The kernel zeroes a page at its first touch, and on a virtual
// machine whose host has taken the guest's free memory back that costs some
// 4 s per 740 MB, a third of the default preset's mixing time on a 768 KB
// file (RESULTS.md, "Tables faulted in ahead"). MADV_POPULATE_WRITE maps a
// page as a write would but writes nothing, so it never races with the
// coder's own writes: whichever comes first maps the page, zeroed. And a
// page mapped so is never the shared zero page first, whose copy on the
// coder's first write would flush the other core's TLB (ZeroArray).
// Only speed depends on this, never a value.
class Prefaulter {
 public:
  Prefaulter() = default;
  ~Prefaulter() {
    stop_ = true;
    wait();
  }
  Prefaulter(const Prefaulter&) = delete;
  Prefaulter& operator=(const Prefaulter&) = delete;

  // Starts on `regions` (where prefaulting is on and the kernel can).
  void start(const std::vector<Region>& regions) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
    if (regions.empty() || !g_prefault.load() || !can_populate()) return;
    try {
      thread_ = std::thread([this, regions] {
        for (const Region& r : regions) {
          for (size_t at = 0; at < r.bytes; at += kChunk) {
            if (stop_.load(std::memory_order_relaxed)) return;
            char* from = static_cast<char*>(r.data) + at;
            // On an error (out of memory, a fatal signal) the coder faults the rest in.
            if (madvise(from, std::min(kChunk, r.bytes - at), MADV_POPULATE_WRITE) != 0) return;
          }
        }
      });
    } catch (const std::system_error&) {
      // No thread to be had: the coder faults the pages in itself.
    }
#else
    (void)regions;
#endif
  }
  // Until every page is in (or the thread gave up).
  void wait() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  static constexpr size_t kChunk = size_t{2} << 20;  // a huge page: stops soon when asked
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

template <class T>
class ZeroArray {
 public:
  // `table`: one of the stage's tables, on huge pages from 2 MiB and counted
  // by mapped_table_bytes(); else memory that is meant to be touched
  // sparsely (the mixers' weights), on plain pages.
  explicit ZeroArray(size_t n, bool table = true) : bytes_(n * sizeof(T)), table_(table) {
    if (n == 0) return;
#if defined(__linux__)
    if (bytes_ >= kMapBytes) {
      void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      if (table_ && bytes_ >= kHugeBytes) madvise(p, bytes_, MADV_HUGEPAGE);  // advice: where THP is off, plain pages
      data_ = static_cast<T*>(p);
      mapped_ = true;
      (table_ ? g_mapped_table_bytes : g_mapped_other_bytes) += bytes_;
      return;
    }
#endif
    data_ = static_cast<T*>(std::calloc(n, sizeof(T)));
    if (!data_) throw std::bad_alloc();
  }
  ~ZeroArray() { release(); }
  ZeroArray(const ZeroArray&) = delete;
  ZeroArray& operator=(const ZeroArray&) = delete;
  ZeroArray(ZeroArray&& o) noexcept : data_(o.data_), bytes_(o.bytes_), table_(o.table_), mapped_(o.mapped_) {
    o.data_ = nullptr;
    o.mapped_ = false;
  }
  ZeroArray& operator=(ZeroArray&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    std::swap(table_, o.table_);
    std::swap(mapped_, o.mapped_);
    return *this;
  }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  // The mapped memory (nothing where the array lives on the heap).
  Region region() const { return mapped_ ? Region{data_, bytes_} : Region{}; }

 private:
  // Mapped from 64 KiB: on the heap, a table's pages were first read as the
  // shared zero page and then copied on the first write, and each such copy
  // flushed the page from the other core's TLB (an IPI, which on a virtual
  // machine exits to the host): 2,000-4,000 flushes on an input of 40-110 KB,
  // whose tables of 0.25-2 MiB mapped and prefaulted code 5-19% faster
  // (RESULTS.md, "Adam without momentum and without the divider; small
  // tables faulted in ahead").
  static constexpr size_t kMapBytes = size_t{64} << 10;
  static constexpr size_t kHugeBytes = size_t{2} << 20;  // a huge page and up
  void release() {
#if defined(__linux__)
    if (mapped_) {
      munmap(data_, bytes_);
      (table_ ? g_mapped_table_bytes : g_mapped_other_bytes) -= bytes_;
      return;
    }
#endif
    std::free(data_);
  }

  T* data_ = nullptr;
  size_t bytes_;
  bool table_;
  bool mapped_ = false;
};

// 2^bits counters, indexed modulo their number.
class Table {
 public:
  explicit Table(int bits) : data_(size_t{1} << bits), mask_((uint32_t{1} << bits) - 1) {}
  uint32_t& at(uint32_t i) { return data_[i & mask_]; }
  Region region() const { return data_.region(); }

 private:
  ZeroArray<uint32_t> data_;
  uint32_t mask_;
};

// Refines a probability given a small context: a piecewise-linear map over
// the stretched input, 33 knots per context, each a 16-bit probability.
// Knot j starts at squash((j - 16) * 128), the identity map; knots are stored
// XOR that start value so that zeroed memory is the initial state.
//
// With `counted` (the own rates, format 14) each knot also counts its updates:
// the n-th moves it by (target - knot) / (n + kApmFirstDivisor), truncated,
// until the divisor reaches 2^rate; from then on, and without `counted`
// always, by (target - knot) >> rate. A new context's knots so learn its
// first bits quickly instead of at the slow rate meant for settled ones.
// The counts (a byte each) sit in the knots' row, after them, in rows of 128
// bytes: a refinement and its update touch two cache lines, as without them.
constexpr int kApmFirstDivisor = 24;  // 1.8091 bits per byte on 17 small files, 1.8094
                                      // with 12, 1.8095 with 40 (RESULTS.md, "Own rates")
class Apm {
 public:
  Apm(int contexts, int rate, bool counted = false)
      : stride_(counted ? kCountedStride : kKnots),
        t_(static_cast<size_t>(contexts) * static_cast<size_t>(stride_)),
        counted_(counted),
        rate_(rate) {
    SHAZIP_ASSERT(!counted || (rate >= kMinCountedApmRate && rate <= kMaxCountedApmRate));
  }
  Region region() const { return t_.region(); }
  // Returns a 16-bit probability.
  int refine(int p12, int ctx) {
    const int s = stretch(p12) + 2048;  // 1..4095
    const int lo = s >> 7, w = s & 127;
    row_ = &t_[static_cast<size_t>(ctx) * static_cast<size_t>(stride_)];
    knot_ = lo + (w >> 6);  // the nearer knot learns
    start_ = kApmStart.v[knot_];
    return (knot(lo) * (128 - w) + knot(lo + 1) * w) >> 7;
  }
  // Asks for the cache lines of context ctx's knots (and counts), ahead of
  // refine().
  void prefetch(int ctx) const {
    const uint16_t* row = &t_[static_cast<size_t>(ctx) * static_cast<size_t>(stride_)];
    __builtin_prefetch(row);
    __builtin_prefetch(row + 32);
  }
  void update(int bit) {
    const int target = bit ? 65535 : 0;
    uint16_t& k = row_[knot_];
    const int v = k ^ start_;
    if (counted_) {
      uint8_t& n = reinterpret_cast<uint8_t*>(row_ + kKnots)[knot_];
      if (n < (1 << rate_) - kApmFirstDivisor) {
        k = static_cast<uint16_t>((v + (target - v) / (n + kApmFirstDivisor)) ^ start_);
        ++n;
        return;
      }
    }
    k = static_cast<uint16_t>((v + ((target - v) >> rate_)) ^ start_);
  }
  // Bytes of `contexts` rows.
  static uint64_t bytes(int contexts, bool counted) {
    return static_cast<uint64_t>(contexts) * (counted ? kCountedStride : kKnots) * sizeof(uint16_t);
  }

 private:
  static constexpr int kKnots = 33;
  static constexpr int kCountedStride = 64;  // uint16s a row: 33 knots, 33 count bytes, padding
  static_assert(kKnots * 3 <= kCountedStride * 2, "the counts fit the row");
  struct StartTable {
    uint16_t v[33];
    StartTable() {
      for (int j = 0; j < 33; ++j) v[j] = static_cast<uint16_t>(squash((j - 16) * 128) * 16);
    }
  };
  static const StartTable kApmStart;
  int knot(int j) const { return row_[j] ^ kApmStart.v[j]; }

  int stride_;              // uint16s a row
  ZeroArray<uint16_t> t_;   // rows of knots (and counts)
  bool counted_;
  uint16_t* row_ = nullptr;  // the row and knot of the last refine()
  int knot_ = 0;
  uint16_t start_ = 0;
  int rate_;
};
const Apm::StartTable Apm::kApmStart;

// The mixers' inner loops over their weights, in exact integer arithmetic:
// a dot product summed in 64 bits, and the weight step
// (x * err + 2^(shift-1)) >> shift, shift 14 (levels 1, 2) or 15 (level 3).
// Integer sums do not depend on their order, so the AVX2 versions give the
// scalar loops' results bit for bit (tested); they are picked at run time, so
// the build itself needs no -mavx2. Weight vectors are padded to a multiple of
// kLanes with zero inputs, which add nothing to a dot product and give their
// zero weights a zero step.
constexpr int kLanes = 8;
constexpr int padded(int n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Every mixer input is a stretched probability or the bias: |x| <= 2047.
constexpr int kMaxMixerInput = 2047;
// Up to this |err| the step's product and rounding term fit in 32 bits.
constexpr int64_t kMaxErr32 = (int64_t{INT32_MAX} - (1 << (kMaxMixerShift - 1))) / kMaxMixerInput;

SHAZIP_NO_COVERAGE int64_t dot_scalar(const int* x, const int32_t* w, int n) {
  int64_t dot = 0;
  for (int i = 0; i < n; ++i) dot += static_cast<int64_t>(x[i]) * w[i];
  return dot;
}

SHAZIP_NO_COVERAGE void train_scalar(const int* x, int32_t* w, int n, int err, int shift) {
  const int64_t half = int64_t{1} << (shift - 1);
  for (int i = 0; i < n; ++i) w[i] += static_cast<int32_t>((static_cast<int64_t>(x[i]) * err + half) >> shift);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) SHAZIP_NO_COVERAGE int64_t dot_avx2(const int* x, const int32_t* w, int n) {
  __m256i acc = _mm256_setzero_si256();
  for (int i = 0; i < n; i += kLanes) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i));
    // Signed 32 x 32 -> 64-bit products of the even lanes, then of the odd.
    const __m256i even = _mm256_mul_epi32(xv, wv);
    const __m256i odd = _mm256_mul_epi32(_mm256_srli_epi64(xv, 32), _mm256_srli_epi64(wv, 32));
    acc = _mm256_add_epi64(acc, _mm256_add_epi64(even, odd));
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

// Only for |err| <= kMaxErr32 (the caller checks).
__attribute__((target("avx2"))) SHAZIP_NO_COVERAGE void train_avx2(const int* x, int32_t* w, int n, int err,
                                                                     int shift) {
  const __m256i e = _mm256_set1_epi32(err);
  const __m256i half = _mm256_set1_epi32(1 << (shift - 1));
  const __m128i count = _mm_cvtsi32_si128(shift);
  for (int i = 0; i < n; i += kLanes) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    __m256i wv = _mm256_loadu_si256(reinterpret_cast<__m256i*>(w + i));
    const __m256i step = _mm256_sra_epi32(_mm256_add_epi32(_mm256_mullo_epi32(xv, e), half), count);
    wv = _mm256_add_epi32(wv, step);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(w + i), wv);
  }
}

bool cpu_has_avx2() { return __builtin_cpu_supports("avx2"); }
#else
bool cpu_has_avx2() { return false; }
#endif

std::atomic<bool> g_simd{cpu_has_avx2()};

// The own rates' half-life: a weight set's rate is half its start after this
// many updates (before the APMs' own rates, 1.8114 bits per byte on 17 small
// files with 2048, 1.8117 with 1024, 1.8132 with 4096; RESULTS.md, "Own
// rates").
constexpr int kSetRateHalf = 2048;

// Gated linear mixing in the logistic domain: one weight vector per context,
// picked anew for every bit; trained by gradient descent on coding cost.
// Inputs are read from arrays of at least padded(inputs) ints, zero past the
// last input.
class Mixer {
 public:
  // Every weight set starts as `initial` (one weight per input); `counted`:
  // each set counts its updates (the own rates). A set is written at its
  // first use, so that the sets no context picks are never touched (tens
  // of MB of weights at levels 2 and 3, most of them unused on a small
  // input): on 4 KiB pages, which only the sets used fault in.
  Mixer(int inputs, int contexts, const std::vector<int32_t>& initial, bool counted = false)
      : n_(inputs),
        stride_(padded(inputs)),
        initial_(initial),
        w_(static_cast<size_t>(stride_) * static_cast<size_t>(contexts), /*table=*/false),
        ready_((static_cast<size_t>(contexts) + 63) / 64, 0),
        updates_(counted ? contexts : 0, 0),
        counted_(counted) {
    SHAZIP_ASSERT(initial.size() == static_cast<size_t>(inputs));
    initial_.resize(static_cast<size_t>(stride_), 0);  // the padding's weights stay 0
  }
  // Picks the weight set of context `ctx` for the next mix() and update(),
  // and asks for its cache lines (or writes its initial weights): predict()
  // picks the sets whose contexts are known before the slots' lookups, so
  // that their loads overlap those.
  void select(int ctx) {
    sel_ = &w_[static_cast<size_t>(ctx) * stride_];
    uint64_t& ready = ready_[static_cast<size_t>(ctx) >> 6];
    const uint64_t bit = uint64_t{1} << (ctx & 63);
    if ((ready & bit) == 0) {
      std::copy(initial_.begin(), initial_.end(), sel_);
      ready |= bit;
    } else {
      const uintptr_t end = reinterpret_cast<uintptr_t>(sel_ + stride_);
      for (uintptr_t line = reinterpret_cast<uintptr_t>(sel_) & ~uintptr_t{63}; line < end; line += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(line));
      }
    }
    if (counted_) {
      sel_updates_ = &updates_[static_cast<size_t>(ctx)];
      __builtin_prefetch(sel_updates_);
    }
  }
  // Mixed probability (12-bit) of a 1 with the selected weight set; also
  // keeps the stretched value.
  int mix(const int* x) {
#if defined(__x86_64__)
    const int64_t dot = g_simd.load(std::memory_order_relaxed) ? dot_avx2(x, sel_, stride_) : dot_scalar(x, sel_, n_);
#else
    const int64_t dot = dot_scalar(x, sel_, n_);
#endif
    st_ = static_cast<int>(std::clamp<int64_t>(dot >> 16, -2047, 2047));
    p_ = squash(st_);
    return p_;
  }
  int stretched() const { return st_; }
  Region region() const { return w_.region(); }  // the weights' mapped memory
  // The own rates (format 14): the rate of the selected weight set's next
  // update, lr0 * kSetRateHalf / (kSetRateHalf + n) after n updates, never
  // below `floor`. Counts the update; a set's count stops where the rate
  // reaches the floor.
  int set_rate(int lr0, int floor) {
    SHAZIP_ASSERT(counted_);
    const int r = static_cast<int>(int64_t{lr0} * kSetRateHalf / (kSetRateHalf + int64_t{*sel_updates_}));
    if (r <= floor) return floor;
    ++*sel_updates_;
    return r;
  }
  // lr in units of 2^-shift.
  void update(const int* x, int bit, int lr, int shift) {
    const int err = ((bit << 12) - p_) * lr;
#if defined(__x86_64__)
    if (g_simd.load(std::memory_order_relaxed) && std::abs(static_cast<int64_t>(err)) <= kMaxErr32) {
      train_avx2(x, sel_, stride_, err, shift);
      return;
    }
#endif
    train_scalar(x, sel_, n_, err, shift);
  }

 private:
  int n_, stride_;
  std::vector<int32_t> initial_;  // a set's first weights, padded
  ZeroArray<int32_t> w_{0};
  std::vector<uint64_t> ready_;   // a bit per set: written
  std::vector<uint32_t> updates_;  // per weight set (the own rates), else none
  bool counted_;
  int32_t* sel_ = nullptr;
  uint32_t* sel_updates_ = nullptr;
  int st_ = 0, p_ = 2048;
};

// Contexts. Level 1: orders 2, 3, 4, 6, word + previous byte, word +
// previous word, order 5, bytes 2-3 (sparse), each hashed, besides orders 0
// and 1 in direct tables. Level 2 adds 15 hashed contexts (the class
// contexts put three others in the places of three of them), the text
// contexts 6 more, the scope context 1, the word's indirect context 1, the
// shape context 1 and the stream contexts 4 more, in this order
// (compute_contexts).
constexpr int kLevel1Hashed = 8;
constexpr int kLevel2Hashed = 23;
constexpr int kTextHashed = 6;
constexpr int kStreamHashed = 4;
constexpr int kMaxHashed = kLevel2Hashed + kTextHashed + 1 + 1 + 1 + kStreamHashed;

// Level 2's indirect contexts remember the two bytes that followed each c2c1
// and each c1: in direct tables shared by the streams, or with the stream
// contexts one history per stream, in hashed tables of 2^bits (c2c1; the
// hashed contexts' size) and 2^kStreamIndirect1Bits (c1) entries.
constexpr int kStreamIndirect1Bits = 18;

// Hashed contexts of a mixing stage.
int hashed_contexts(int streams, const MixTuning& t) {
  if (t.level < 2) return kLevel1Hashed;
  return kLevel2Hashed + (uses_text_contexts(t) ? kTextHashed : 0) + (uses_scope_context(t) ? 1 : 0) +
         (uses_word_indirect(t) ? 1 : 0) + (uses_shape_contexts(t) ? 1 : 0) +
         (uses_stream_contexts(streams, t) ? kStreamHashed : 0);
}
// Level 2's run maps: the byte that last followed orders 3, 4 and word +
// previous byte, and with the more run maps (format 21) the word with the
// previous word, order 8 and the word trigram (indices into the hashed
// contexts). The three were picked one at a time over format 20's stage
// (RESULTS.md, "More run maps and the word's indirect context"): orders 6
// and 12 and a fourth map gained less.
constexpr int kMaxRuns = 6;
constexpr int kRunContext[kMaxRuns] = {1, 2, 4, 5, 9, 8};
constexpr int kFirstRuns = 3;  // level 2's own; the others are the more run maps'
// The more run maps' tables, and the word's indirect context's byte
// histories, hold an entry per coded byte: 2^-kByteTableShrink of the
// hashed tables' slots (four per byte): a quarter of the memory for 0.01-0.03%
// of size at levels 2 and 3 (RESULTS.md, "More run maps and the word's
// indirect context").
constexpr int kByteTableShrink = 2;
int run_maps(const MixTuning& t) {
  if (t.level < 2) return 0;
  return uses_more_runs(t) ? kMaxRuns : kFirstRuns;
}
// Run map k's table: 2^bits entries, `bits` the hashed contexts' (level 2's
// own maps), or a quarter of that (the more run maps).
int run_table_bits(int k, int bits) { return k < kFirstRuns ? bits : bits - kByteTableShrink; }
// Mixer inputs: 0 the SHA-RNN, 1 bias, 2 match model, 3-4 orders 0 and 1,
// then one per hashed context; level 2 then adds one bit-history input per
// hashed context and one per run map, and the one-sided inputs one more per
// hashed context.
constexpr int kFirstCounter = 3;
constexpr int kMaxInputs = kFirstCounter + 2 + 3 * kMaxHashed + kMaxRuns;
// The one-sided inputs' value: +kOneSided for a bit history of ones only,
// -kOneSided for zeros only (1.80095 bits per byte on 17 small files; 1.80182
// with 384, 1.80126 with 768; RESULTS.md, "One-sided inputs").
constexpr int kOneSided = 512;
constexpr int kMaxMixers = 9;   // layer-1 mixers at level 3 with the class contexts (8 without;
                                // 7 or 8 at level 2, 3 at level 1)
// The layer-2 inputs (format 23): the first layer's inputs that layer 2 also
// weighs itself (their weights start at 0): the SHA-RNN's, the bias, the
// match model's and order 1's; and the rate at which layer 2's weight sets
// start, in units of mixer2_lr (falling to 1 as the first layer's own rates
// do). Picked over format 22's stage on benchmarks/mix_sets.sh: 4 inputs
// against 2 or 6 (RESULTS.md, "Layer-2 inputs").
constexpr int kLayer2Direct = 4;
constexpr int kLayer2DirectInputs[kLayer2Direct] = {0, 1, 2, kFirstCounter + 1};
constexpr int kLayer2RateStart = 6;
constexpr int kMatchMin = 6;    // bytes hashed to find a match
constexpr int kMatchCap = 31;   // match lengths above this share a counter
// The long matches (format 20): the second table's context length (12
// bytes 1.38382 bits per byte on the large set, 8 1.38485, 16 and 10
// 1.38388, 20 1.38432; RESULTS.md, "Long matches and the scope context"),
// its entries (half the 6-byte table's), and the match length from which a
// mispredicted byte does not end a match (1: 1.38431, 2: 1.38398, 8:
// 1.38387, 16: 1.38376 on the large set; 1.78609, 1.78599, 1.78702, 1.78774
// on the small).
constexpr int kLongMatchMin = 12;
constexpr int kLongTableShrink = 1;
constexpr uint32_t kRecoverFrom = 2;

// The class contexts' character classes (context_mix.h), 3 bits each.
constexpr int kClassBits = 3;
constexpr int kClassHistory = 12;  // the classes of this many bytes make a context
constexpr uint64_t kClassMask = (uint64_t{1} << (kClassBits * kClassHistory)) - 1;
constexpr int kLastClass = (1 << kClassBits) - 1;          // of the last byte: picks layer 2's set
constexpr int kLastClasses4 = (1 << (4 * kClassBits)) - 1;  // of the last 4: picks a layer-1 mixer's
constexpr int kLastClasses3 = (1 << (3 * kClassBits)) - 1;  // of the last 3: the shape contexts' layer-2 set
// The shape context (format 24): the last two bytes with the classes of the
// six before them (the last byte with the classes of the last 8, 5 or 12
// bytes gained less; RESULTS.md, "Shape contexts").
constexpr uint64_t kShapeClassMask = (uint64_t{1} << (6 * kClassBits)) - 1;
int char_class(int c) {
  if (c >= 'a' && c <= 'z') return 0;
  if (c >= 'A' && c <= 'Z') return 1;
  if (c >= '0' && c <= '9') return 2;
  if (c == ' ') return 3;
  if (c == '\n') return 4;
  if (c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?') return 5;
  if (c >= 128) return 6;
  return 7;
}

struct StreamState {
  uint64_t last8 = 0;       // the last 8 bytes, most recent in the low byte
  // The last kClassHistory bytes' classes, most recent in the low bits
  // (class 7 before the first byte, as for byte 0) (the class contexts only).
  uint64_t classes = kClassMask;
  uint32_t word = 0;        // hash of the current word's letters (0 between words)
  uint32_t prev_word = 0;   // hash of the word before it
  uint32_t prev_word2 = 0;  // ... and of the one before that (level 2)
  uint64_t line_start = 0, prev_line_start = 0;  // where the last two lines start in hist (level 2)
  uint32_t column = 0;      // bytes since the line start (level 2)
  uint32_t markup = 0;      // the last two markup characters ([]{}<>|=';&) (level 2)
  // The text contexts (format 18): the word three back; the open brackets
  // ( [ { < innermost in the low byte, and how many are open; the first two
  // bytes of the line; where the last space and the last punctuation or
  // newline are in hist (one past them).
  uint32_t prev_word3 = 0;
  uint64_t nest = 0;
  uint32_t nest_depth = 0;
  uint32_t line_head = 0;
  uint64_t after_space = 0, after_punct = 0;
  // The scope context (format 20): the hash of the last tag name opened by
  // '<' (and of the one being read, while in_tag), and of the first word of
  // the sentence (the next word to end is one where new_sentence).
  uint32_t tag = 0, tag_reading = 0, sentence_first = 0;
  bool in_tag = false, new_sentence = true;
  uint32_t word_indirect_at = 0;  // the word's indirect context: this byte's entry
  uint32_t base[kMaxHashed] = {};  // context hashes for the next byte
  uint32_t* runs[kMaxRuns] = {};   // level 2: this byte's run map entries
  std::vector<uint8_t> hist;       // every byte of the stream so far
  ZeroArray<uint32_t> match_table{0};  // level 1: hash of kMatchMin bytes -> position after them
  uint32_t match_stream = 0;  // stream whose history holds the match
  uint32_t match_ptr = 0;     // position in that history of the predicted byte
  uint32_t match_len = 0;     // bytes matched before it; 0: no match
};

// Spreads a hashed context over the table by the partial byte c0: the slot of
// context hash h for the next bit is at h ^ spread(c0).
inline uint32_t spread(int c0) { return static_cast<uint32_t>(c0) * 0x9E3779B1u; }

// The next bit of a byte that some model expects (the match model, a run
// map), or -1 when the bits coded so far (c0, bitpos of them) already differ
// from it.
inline int expected_bit(int byte, int c0, int bitpos) {
  const int with_lead = byte | 256;
  if ((with_lead >> (8 - bitpos)) != c0) return -1;
  return (with_lead >> (7 - bitpos)) & 1;
}

bool is_markup(int c) {
  return c == '[' || c == ']' || c == '{' || c == '}' || c == '<' || c == '>' || c == '|' || c == '=' ||
         c == '\'' || c == '&' || c == ';';
}

// The low 4 bytes of b with ASCII letters in lower case.
uint64_t fold4(uint64_t b) {
  uint64_t r = 0;
  for (int k = 0; k < 4; ++k) {
    uint64_t c = (b >> (8 * k)) & 0xFF;
    if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    r |= c << (8 * k);
  }
  return r;
}

}  // namespace

MixTuning MixTuning::for_level(int level) {
  SHAZIP_ASSERT(level >= 1 && level <= kMaxMixLevel);
  MixTuning t;
  t.level = level;
  if (level >= 2) {
    // Tuned on enwik6 (benchmarks/RESULTS.md, "Mix level 2"): with four
    // times the inputs, smaller initial weights and a slower second layer.
    t.cm_weight = 4000;
    t.mixer2_lr = 1;
  }
  if (level >= 3) {
    // Tuned on dickens with preset 6's SHA-RNN (RESULTS.md, "Mix level 3"):
    // in half units, the first layer starts at level 2's rate and falls to
    // half its floor, the second runs at half its rate; larger tables.
    t.mixer_shift = 15;
    t.mixer_lr = 32;
    t.table_bits = 24;
  }
  return t;
}

bool set_mixer_simd(bool on) {
  const bool use = on && cpu_has_avx2();
  g_simd.store(use);
  return use;
}

bool mixer_simd() { return g_simd.load(); }

bool uses_stream_contexts(int streams, const MixTuning& t) {
  return t.stream_contexts && t.level >= 2 && streams > 1;
}

bool uses_class_contexts(const MixTuning& t) { return t.class_contexts && t.level >= 2; }
bool uses_own_rates(const MixTuning& t) { return t.own_rates && t.level >= 2; }
bool uses_one_sided(const MixTuning& t) { return t.one_sided && t.level >= 2; }

bool uses_nibble_groups(const MixTuning& t) { return t.nibble_groups && t.level >= 2; }
bool uses_text_contexts(const MixTuning& t) { return t.text_contexts && t.level >= 2; }
bool uses_table_shapes(const MixTuning& t) { return t.table_shapes && t.level >= 2; }
bool uses_long_matches(const MixTuning& t) { return t.long_matches && t.level >= 2; }
bool uses_scope_context(const MixTuning& t) { return t.scope_context && uses_text_contexts(t); }
bool uses_more_runs(const MixTuning& t) { return t.more_runs && t.level >= 2; }
bool uses_word_indirect(const MixTuning& t) { return t.word_indirect && t.level >= 2; }
bool uses_mixer_selectors(const MixTuning& t) { return t.mixer_selectors && t.level >= 2; }
bool uses_layer2_inputs(const MixTuning& t) { return t.layer2_inputs && t.level >= 2; }
bool uses_shape_contexts(const MixTuning& t) { return t.shape_contexts && uses_class_contexts(t); }

void set_nibble_groups(MixTuning& t, bool on) {
  t.nibble_groups = on;
  if (t.level < 2) return;
  // With the one-sided inputs 27 more inputs start at cm_weight; lower
  // starting weights for all, the SHA-RNN's too, code smaller (RESULTS.md,
  // "Nibble groups": with the groups, 17 small files -0.14%, 4 large ones
  // -0.06%; a start-up effect, nothing on 10 MB of dickens).
  const MixTuning level = MixTuning::for_level(t.level);
  t.cm_weight = on ? 2000 : level.cm_weight;
  t.nn_weight = on ? 16000 : level.nn_weight;
}

uint64_t mapped_table_bytes() { return g_mapped_table_bytes.load(); }
uint64_t mapped_bytes() { return g_mapped_table_bytes.load() + g_mapped_other_bytes.load(); }

bool set_table_prefault(bool on) {
  g_prefault = on;
  return on && can_populate();
}

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

// The sizes of the large tables, from the input's size (encoder and decoder
// derive them alike).
struct TableBits {
  int hashed;  // each hashed context's table (and level 2's run maps): 2^hashed slots
  int shared;  // level 2: the match model's table over all streams
  int match;   // level 1: each stream's match table
};

TableBits table_bits(int streams, uint64_t stream_len, const MixTuning& t) {
  const bool level2 = t.level >= 2;
  const uint64_t total = stream_len * static_cast<uint64_t>(streams);
  const int log_total = ceil_log2(std::max<uint64_t>(total, 1));
  // Two slots per coded byte at level 1, four from level 2 on (its slots are
  // 2-way associative), up to 2^t.table_bits (16 MiB a table at levels 1 and
  // 2, 64 MiB at level 3).
  return {std::clamp(log_total + (level2 ? 2 : 1), kMinTableBits, t.table_bits), std::clamp(log_total, 10, 24),
          std::clamp(ceil_log2(std::max<uint64_t>(stream_len, 1)), 10, 22)};
}

// The match state as a mixer context (predict()'s match_ctx): a length bucket
// (4), the bit position and whether the match predicts this bit. It picks
// the second layer-1 mixer's weights, and with the one-sided inputs a second
// weight vector of layer 2.
constexpr int kMatchContexts = 4 * 8 * 2;
// The shape contexts' layer-2 weight sets: the last three bytes' classes and
// the match state.
constexpr int kShapeLayer2Contexts = (kLastClasses3 + 1) * kMatchContexts;

// The table shapes (format 19): hashed context i's table of 2^bits slots
// (bits: table_bits()'s `hashed`) shrunk or grown by what the context holds
// (compute_contexts' indices). Chosen by replays with preset 2's SHA-RNN
// (RESULTS.md, "Table shapes"): the narrow contexts at a quarter lose
// nothing down to 2^20 slots, and the deep ones gain from twice as many.
constexpr int kNarrowContexts[] = {0, 1, 7, 12, 20};  // orders 2 and 3, bytes 2-3, the column with
                                                      // the byte above, the match prediction
constexpr int kNarrowTextContexts[] = {25, 26, 27};   // the brackets, the line's head, the distances
constexpr int kDeepContexts[] = {3, 5, 8, 9, 14};     // orders 6, 8 and 7, the word with the
                                                      // previous word, the word trigram
constexpr int kOrder12Context = 11;                   // with the class contexts: deep as well
constexpr int kNarrowFloor = 20;                      // narrow tables shrink to no fewer than 2^20

int context_table_bits(int i, int bits, const MixTuning& t) {
  if (!uses_table_shapes(t)) return bits;
  const auto in = [i](const auto& list) { return std::find(std::begin(list), std::end(list), i) != std::end(list); };
  if (in(kNarrowContexts) || (uses_text_contexts(t) && in(kNarrowTextContexts))) {
    return bits > kNarrowFloor ? std::max(kNarrowFloor, bits - 2) : bits;
  }
  if (in(kDeepContexts) || (uses_class_contexts(t) && i == kOrder12Context)) return bits + 1;
  return bits;
}

// Layer 1's mixers of a mixing stage: how many weight sets each has, in the
// order predict() picks from them (and what picks the set).
std::vector<int> layer1_contexts(const MixTuning& t) {
  const int level = t.level;
  // The mixer selectors (context_mix.h) multiply the first three mixers'
  // sets by the classes and the fourth's by the bytes.
  const int by_class = uses_mixer_selectors(t) ? kLastClass + 1 : 1;
  const int by_byte = uses_mixer_selectors(t) ? 256 : 1;
  std::vector<int> contexts = {by_class * 256,             // the partial byte
                               by_class * kMatchContexts,  // the match state
                               by_class * 16 * 8};         // the SHA-RNN's confidence
  // The layer-2 inputs' stage (format 23) picks the previous byte's mixer's
  // set also by the byte so far's first three bits (zero where not known yet).
  const int by_head = uses_layer2_inputs(t) ? 8 : 1;
  if (level >= 2) {
    contexts.insert(contexts.end(), {by_byte * 6 * 8,    // how many orders know their context
                                     256 * 8 * by_head,  // the previous byte
                                     256 * 8,            // the last markup character
                                     256});              // order 3's bit history
  }
  if (level >= 3) contexts.push_back(16 * 256);  // the SHA-RNN's confidence and the partial byte
  if (uses_class_contexts(t)) contexts.push_back((kLastClasses4 + 1) * 8);  // the last 4 bytes' classes
  return contexts;
}

// The layer-1 inputs that layer 2 also weighs itself: kLayer2Direct with the
// layer-2 inputs, else none.
int layer2_direct_inputs(const MixTuning& t) { return uses_layer2_inputs(t) ? kLayer2Direct : 0; }

// Layer 1's inputs (before padding): see kFirstCounter.
int layer1_inputs(int streams, const MixTuning& t) {
  const int n_hashed = hashed_contexts(streams, t);
  if (t.level < 2) return kFirstCounter + 2 + n_hashed;
  return kFirstCounter + 2 + 2 * n_hashed + run_maps(t) + (uses_one_sided(t) ? n_hashed : 0);
}

// The small APMs' contexts: level 1's by the partial byte, level 3's by the
// SHA-RNN's confidence (32 steps) and the bit position.
constexpr int kApmOrder0Contexts = 256;
constexpr int kApmNnContexts = 32 * 8;

// Layer 2's weight sets: by the partial byte (levels 2, 3; with the class
// contexts also by the last byte's class) or the bit position (level 1).
int layer2_contexts(const MixTuning& t) {
  if (t.level < 2) return 8;
  return uses_class_contexts(t) ? (kLastClass + 1) * 256 : 256;
}

struct ContextMixer::Impl {
  Impl(int streams, uint64_t stream_len, const MixTuning& t)
      : tuning(t),
        level2(t.level >= 2),
        level3(t.level >= 3),
        stream_local(uses_stream_contexts(streams, t)),
        class_contexts(uses_class_contexts(t)),
        own_rates(uses_own_rates(t)),
        one_sided(uses_one_sided(t)),
        nibble_groups(uses_nibble_groups(t)),
        text(uses_text_contexts(t)),
        scope(uses_scope_context(t)),
        long_matches(uses_long_matches(t)),
        word_indirect(uses_word_indirect(t)),
        selectors(uses_mixer_selectors(t)),
        shape(uses_shape_contexts(t)),
        layer2_direct(layer2_direct_inputs(t)),
        n_hashed(hashed_contexts(streams, t)),
        n_runs(run_maps(t)),
        order0(8),
        order1(16),
        apm_order0(level2 ? 0 : kApmOrder0Contexts, t.apm_rate),
        apm_order1(65536, t.apm_rate, own_rates),
        apm_order2(level2 ? 65536 : 0, t.apm_rate, own_rates),
        apm_nn(level3 ? kApmNnContexts : 0, t.apm_rate, own_rates),
        apm_order3(text ? 65536 : 0, t.apm_rate, own_rates) {
    SHAZIP_ASSERT(streams >= 1 && static_cast<uint64_t>(streams) <= kMaxMixStreams);
    SHAZIP_ASSERT(t.level >= 1 && t.level <= kMaxMixLevel);
    SHAZIP_ASSERT(t.mixer_shift >= 1 && t.mixer_shift <= kMaxMixerShift && t.table_bits >= kMinTableBits &&
                  t.table_bits <= kMaxTableBits);
    const TableBits bits = table_bits(streams, stream_len, t);
    for (int i = 0; i < n_hashed; ++i) hashed.emplace_back(context_table_bits(i, bits.hashed, t));
    state.resize(static_cast<size_t>(streams));
    if (level2) {
      for (int k = 0; k < n_runs; ++k) run_tables.emplace_back(run_table_bits(k, bits.hashed));
      shared_table = ZeroArray<uint64_t>(size_t{1} << bits.shared);
      match_mask = (uint32_t{1} << bits.shared) - 1;
      if (long_matches) {
        long_table = ZeroArray<uint64_t>(size_t{1} << (bits.shared - kLongTableShrink));
        long_mask = (uint32_t{1} << (bits.shared - kLongTableShrink)) - 1;
      }
      indirect2_bits = stream_local ? bits.hashed : 16;
      indirect1_bits = stream_local ? kStreamIndirect1Bits : 8;
      indirect2 = ZeroArray<uint16_t>(size_t{1} << indirect2_bits);
      indirect1 = ZeroArray<uint16_t>(size_t{1} << indirect1_bits);
      if (word_indirect) {
        indirect_word_bits = bits.hashed - kByteTableShrink;
        indirect_word = ZeroArray<uint16_t>(size_t{1} << indirect_word_bits);
      }
      if (text) {
        word_next_bits = bits.hashed;
        word_next = ZeroArray<uint32_t>(size_t{1} << word_next_bits);
      }
    } else {
      for (StreamState& s : state) s.match_table = ZeroArray<uint32_t>(size_t{1} << bits.match);
      match_mask = (uint32_t{1} << bits.match) - 1;
    }
    for (size_t i = 0; i < state.size(); ++i) {
      state[i].match_stream = static_cast<uint32_t>(i);
      state[i].hist.reserve(stream_len);
      compute_contexts(state[i]);
    }

    n_inputs = layer1_inputs(streams, t);
    std::vector<int32_t> initial(static_cast<size_t>(n_inputs), t.cm_weight);
    initial[0] = t.use_nn ? t.nn_weight : 0;  // the SHA-RNN's
    for (int contexts : layer1_contexts(t)) layer1.emplace_back(n_inputs, contexts, initial, own_rates);
    const int mixers = static_cast<int>(layer1.size());
    SHAZIP_ASSERT(mixers <= kMaxMixers);
    std::vector<int32_t> even(static_cast<size_t>(mixers), 65536 / mixers);
    even.resize(static_cast<size_t>(mixers + layer2_direct), 0);  // the layer-2 inputs' start at 0
    layer2 = Mixer(mixers + layer2_direct, layer2_contexts(t), even, layer2_direct > 0);
    if (one_sided) layer2_match = Mixer(mixers + layer2_direct, kMatchContexts, even, layer2_direct > 0);
    if (shape) layer2_shape = Mixer(mixers + layer2_direct, kShapeLayer2Contexts, even, layer2_direct > 0);

    for (const Table* table : {&order0, &order1}) regions.push_back(table->region());
    for (const Table& table : hashed) regions.push_back(table.region());
    for (const Table& table : run_tables) regions.push_back(table.region());
    regions.push_back(state_maps.region());
    for (const auto* array : {&shared_table, &long_table}) regions.push_back(array->region());
    for (const auto* array : {&indirect2, &indirect1, &indirect_word}) regions.push_back(array->region());
    regions.push_back(word_next.region());
    for (const StreamState& s : state) regions.push_back(s.match_table.region());  // level 1's
    for (const Apm* apm : {&apm_order0, &apm_order1, &apm_order2, &apm_nn, &apm_order3}) {
      regions.push_back(apm->region());
    }
    regions.erase(std::remove_if(regions.begin(), regions.end(), [](const Region& r) { return r.bytes == 0; }),
                  regions.end());
    prefaulter.start(regions);
  }

  // The stream contexts' keying: x (bits 32-56 clear) hashed with 1 + the
  // index of stream s.
  uint32_t stream_hash(uint64_t x, const StreamState& s) const {
    return hash32(x | (static_cast<uint64_t>(&s - state.data()) + 1) << 32);
  }
  // Where the indirect contexts' histories of c2c1 and c1 are.
  uint32_t indirect2_at(const StreamState& s, uint32_t c2c1) const {
    if (!stream_local) return c2c1;
    return stream_hash(c2c1, s) >> (32 - indirect2_bits);
  }
  uint32_t indirect1_at(const StreamState& s, uint32_t c1) const {
    if (!stream_local) return c1;
    return stream_hash(uint64_t{c1} | uint64_t{1} << 60, s) >> (32 - indirect1_bits);
  }
  // ... and the word's indirect context's, of the word and the last byte
  // (hashed; with the stream contexts, with the stream).
  uint32_t indirect_word_at(const StreamState& s) const {
    const uint32_t h = hash32((uint64_t{s.word} << 8 | (s.last8 & 0xFF)) | uint64_t{3} << 60);
    return (stream_local ? stream_hash(h, s) : hash32(uint64_t{h} | uint64_t{7} << 56)) >> (32 - indirect_word_bits);
  }

  // The text contexts' entry for what followed a word (its hash).
  uint32_t word_next_at(uint32_t word) const {
    return hash32(uint64_t{word} | uint64_t{1} << 40) >> (32 - word_next_bits);
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
    if (!level2) return;
    // The byte in the line above, at the same column.
    const uint32_t above = s.line_start > s.prev_line_start && s.prev_line_start + s.column < s.line_start
                               ? s.hist[s.prev_line_start + s.column]
                               : 0;
    const uint64_t c2c1 = h & 0xFFFF;
    uint64_t expected = 0;  // the match model's next byte and length
    if (s.match_len > 0) {
      expected = 256 | uint64_t{state[s.match_stream].hist[s.match_ptr]} |
                 uint64_t{std::min<uint32_t>(s.match_len, 15)} << 9;
    }
    const uint64_t word3 = (uint64_t{s.word} << 32 | s.prev_word) ^ (uint64_t{s.prev_word2} * 0x9E3779B1u);
    s.base[8] = hash32(word3 ^ uint64_t{10} << 58);                                   // word trigram
    s.base[9] = hash32(h ^ 0x5bd1e995ull) ^ 0x11;                                      // order 8
    if (class_contexts) {
      // The last 12 bytes' classes, and order 12 (bytes 9-12 hashed onto
      // order 8), in the places of bytes 1 and 3 and the folded order 4.
      s.base[10] = hash32(s.classes ^ uint64_t{40} << 56);
      uint64_t order12 = h;
      const size_t n = s.hist.size();
      for (size_t i = 8; i < 12 && i < n; ++i) order12 = order12 * 0x100000001B3ull ^ s.hist[n - 1 - i];
      s.base[11] = hash32(order12 ^ uint64_t{43} << 56) ^ 0x2b;
    } else {
      s.base[10] = hash32((h & 0xFF00FF) | uint64_t{12} << 56);  // bytes 1 and 3
      s.base[11] = hash32(fold4(h) | uint64_t{13} << 56);        // order 4, case folded
    }
    s.base[12] = hash32((uint64_t{std::min<uint32_t>(s.column, 255)} << 8 | above) | uint64_t{14} << 56);
    s.base[13] = hash32((uint64_t{s.word} << 16 | c2c1) ^ uint64_t{15} << 56);        // word + 2 bytes
    s.base[14] = hash32((h & 0xFFFFFFFFFFFFFF) | uint64_t{16} << 56);                  // order 7
    s.base[15] = class_contexts  // the column and the word, or above + byte 1
                     ? hash32((uint64_t{std::min<uint32_t>(s.column, 255)} << 32 | s.word) ^ uint64_t{44} << 56)
                     : hash32((uint64_t{above} << 8 | (h & 0xFF)) | uint64_t{17} << 56);
    const uint16_t followed2 = indirect2[indirect2_at(s, static_cast<uint32_t>(c2c1))];
    const uint16_t followed1 = indirect1[indirect1_at(s, static_cast<uint32_t>(h & 0xFF))];
    s.base[16] = hash32((uint64_t{followed2} << 16 | c2c1) | uint64_t{18} << 56);
    s.base[17] = hash32((uint64_t{followed1} << 16 | (h & 0xFF)) | uint64_t{19} << 56);
    s.base[18] = hash32((uint64_t{s.markup} << 16 | c2c1) | uint64_t{20} << 56);      // markup + 2 bytes
    s.base[19] = hash32((uint64_t{s.prev_word} << 16 | c2c1) ^ uint64_t{21} << 56);   // previous word + 2 bytes
    s.base[20] = hash32(expected | uint64_t{22} << 56);                                // match prediction
    s.base[21] = hash32((uint64_t{s.markup} << 32 | s.word) ^ uint64_t{23} << 56);    // markup + word
    s.base[22] = hash32((uint64_t{s.prev_word2} << 32 | s.word) ^ uint64_t{24} << 56);  // word + word 2 back
    if (text) {
      const uint64_t c1 = h & 0xFF;
      // The word that followed the last occurrence of the previous word, the
      // word so far and the last byte.
      const uint32_t predicted = word_next[word_next_at(s.prev_word)];
      s.base[23] = hash32((uint64_t{predicted} << 32 | s.word) ^ c1 << 8 ^ uint64_t{30} << 56);
      s.base[24] = hash32((uint64_t{s.word} << 32 | s.prev_word3) ^ uint64_t{31} << 56);  // word + word 3 back
      // The innermost two open brackets, how many are open, the last byte.
      s.base[25] = hash32(((s.nest & 0xFFFF) | uint64_t{std::min<uint32_t>(s.nest_depth, 7)} << 16 | c1 << 24) ^
                          uint64_t{32} << 56);
      // The line's first two bytes, the column, the last byte.
      s.base[26] = hash32((uint64_t{s.line_head} | uint64_t{std::min<uint32_t>(s.column, 31)} << 16 | c1 << 24) ^
                          uint64_t{33} << 56);
      // How far back the last space and the last punctuation are, the last byte.
      const uint64_t n = s.hist.size();
      s.base[27] = hash32((std::min<uint64_t>(n - s.after_space, 15) | std::min<uint64_t>(n - s.after_punct, 31) << 4 |
                           c1 << 16) ^ uint64_t{34} << 56);
      // The word and the last four bytes' classes.
      s.base[28] = hash32((uint64_t{s.word} << 32 | (s.classes & kLastClasses4)) ^ uint64_t{35} << 56);
      // The scope: the last tag's name and the sentence's first word, the word.
      if (scope) {
        s.base[29] = hash32((uint64_t{s.word} << 32 | (s.tag * 0x9E3779B1u ^ s.sentence_first)) ^ uint64_t{36} << 56);
      }
    }
    // The contexts after the text and scope contexts, those in use in turn.
    int at = kLevel2Hashed + (text ? kTextHashed : 0) + (scope ? 1 : 0);
    if (word_indirect) {
      // The two bytes that followed the word so far and the last byte when
      // they last occurred, with the last three bytes.
      s.word_indirect_at = indirect_word_at(s);
      const uint16_t followed = indirect_word[s.word_indirect_at];
      s.base[at++] = hash32((uint64_t{followed} << 24 | (h & 0xFFFFFF)) | uint64_t{37} << 56);
    }
    if (shape) {
      // The last two bytes and the classes of the six before them.
      const uint64_t before = (s.classes >> (2 * kClassBits)) & kShapeClassMask;
      s.base[at] = hash32((before << 16 | c2c1) ^ uint64_t{38} << 56);
    }
    if (!stream_local) return;
    // The stream contexts: a context's hash hashed again with the stream.
    const uint64_t local[kStreamHashed] = {
        uint64_t{s.word} << 8 | (h & 0xFF),  // word + previous byte
        c2c1,                                // order 2
        h & 0xFFFFFF,                        // order 3
        s.word,                              // word
    };
    for (int k = 0; k < kStreamHashed; ++k) {
      const uint32_t inner = hash32(local[k] ^ static_cast<uint64_t>(25 + k) << 56);
      s.base[n_hashed - kStreamHashed + k] = stream_hash(inner, s);  // the last kStreamHashed
    }
  }

  // Level 1: each stream finds matches in its own history.
  void update_own_match(StreamState& s, int byte) {
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
  }

  // Level 2: one table over every stream's history, so that a stream finds
  // text that another stream coded before it. Entries: position << 24 |
  // stream (0 = empty; positions are >= kMatchMin and below 2^32, streams
  // below kMaxMixStreams). A match into a stream that has not yet coded the
  // next byte ends there. With the long matches a second table does the same
  // for 12-byte contexts, and a mispredicted byte does not end a match of
  // kRecoverFrom bytes or more: it goes on at the next byte with a length of
  // 1 (lengths 1 to 5 so mean "recovered"), until a table finds a longer one.
  void update_shared_match(StreamState& s, int byte) {
    const uint32_t self = static_cast<uint32_t>(&s - state.data());
    if (s.match_len > 0) {
      const std::vector<uint8_t>& h = state[s.match_stream].hist;
      if (s.match_ptr + 1 >= h.size()) {
        s.match_len = 0;
      } else if (h[s.match_ptr] == byte) {
        s.match_len = std::min<uint32_t>(s.match_len + 1, 65535);
        ++s.match_ptr;
      } else if (long_matches && s.match_len >= kRecoverFrom) {
        s.match_len = 1;
        ++s.match_ptr;
      } else {
        s.match_len = 0;
      }
    }
    const uint64_t n = s.hist.size();
    if (n < kMatchMin || n >= (uint64_t{1} << 32)) return;
    if (long_matches && n >= kLongMatchMin) {
      uint64_t key = 0;
      for (size_t i = 1; i <= kLongMatchMin; ++i) key = (key + s.hist[n - i] + 1) * 0x100000001B3ull;
      uint64_t& e = long_table[hash32(key >> 8 | uint64_t{5} << 60) & long_mask];
      if (s.match_len < kLongMatchMin) take_longer_match(s, e, kLongMatchMin, 256);
      e = n << 24 | self;
    }
    uint64_t& e = shared_table[hash32((s.last8 & 0xFFFFFFFFFFFF) | uint64_t{1} << 60) & match_mask];
    if (s.match_len < kMatchMin) take_longer_match(s, e, kMatchMin, 64);
    e = n << 24 | self;
  }

  // The match at a match table's entry e, if it has at least `least` bytes
  // (counted up to `most`) and more than the stream's own match.
  void take_longer_match(StreamState& s, uint64_t e, uint32_t least, uint32_t most) {
    if (e == 0) return;
    const uint32_t cs = static_cast<uint32_t>(e & (kMaxMixStreams - 1));
    const uint64_t cand = e >> 24;
    const std::vector<uint8_t>& h = state[cs].hist;
    const uint64_t n = s.hist.size();
    uint32_t len = 0;
    while (len < most && len < cand && len < n && h[cand - 1 - len] == s.hist[n - 1 - len]) ++len;
    if (len >= least && len > s.match_len && cand < h.size()) {
      s.match_len = len;
      s.match_ptr = static_cast<uint32_t>(cand);
      s.match_stream = cs;
    }
  }

  void end_byte(StreamState& s, int byte) {
    if (level2) {
      for (int k = 0; k < n_runs; ++k) {
        uint32_t* e = s.runs[k];
        const uint32_t count = *e & 255, prev = (*e >> 8) & 255;
        if (count > 0 && prev == static_cast<uint32_t>(byte)) {
          *e = (*e & ~uint32_t{255}) | std::min<uint32_t>(count + 1, 255);
        } else {
          *e = (*e & 0xFFFF0000u) | static_cast<uint32_t>(byte) << 8 | 1;
        }
      }
      const uint32_t c2c1 = static_cast<uint32_t>(s.last8 & 0xFFFF);
      if (word_indirect) {
        uint16_t& iw = indirect_word[s.word_indirect_at];  // compute_contexts' entry
        iw = static_cast<uint16_t>(iw << 8 | byte);
      }
      uint16_t& i2 = indirect2[indirect2_at(s, c2c1)];
      uint16_t& i1 = indirect1[indirect1_at(s, c2c1 & 0xFF)];
      i2 = static_cast<uint16_t>(i2 << 8 | byte);
      i1 = static_cast<uint16_t>(i1 << 8 | byte);
      if (is_markup(byte)) s.markup = (s.markup << 8 | static_cast<uint32_t>(byte)) & 0xFFFF;
      if (class_contexts) s.classes = (s.classes << kClassBits | static_cast<uint64_t>(char_class(byte))) & kClassMask;
      if (text) end_text_byte(s, byte);
      if (scope) end_scope_byte(s, byte);
    }
    s.hist.push_back(static_cast<uint8_t>(byte));
    s.last8 = s.last8 << 8 | static_cast<uint64_t>(byte);
    if (byte == '\n') {
      s.prev_line_start = s.line_start;
      s.line_start = s.hist.size();
      s.column = 0;
    } else {
      ++s.column;
    }
    int lower = byte;
    if (lower >= 'A' && lower <= 'Z') lower += 'a' - 'A';
    if ((lower >= 'a' && lower <= 'z') || byte >= 128) {
      s.word = (s.word + static_cast<uint32_t>(lower) + 1) * 0x2E1B5A3Du;
    } else if (s.word != 0) {
      if (text) word_next[word_next_at(s.prev_word)] = s.word;
      s.prev_word3 = s.prev_word2;
      s.prev_word2 = s.prev_word;
      s.prev_word = s.word;
      s.word = 0;
    }
    if (level2) {
      update_shared_match(s, byte);
    } else {
      update_own_match(s, byte);
    }
    compute_contexts(s);
  }

  // The text contexts' state after `byte` (before it joins hist).
  static void end_text_byte(StreamState& s, int byte) {
    if (byte == '(' || byte == '[' || byte == '{' || byte == '<') {
      s.nest = s.nest << 8 | static_cast<uint64_t>(byte);
      ++s.nest_depth;
    } else if ((byte == ')' || byte == ']' || byte == '}' || byte == '>') && s.nest_depth > 0) {
      s.nest >>= 8;
      --s.nest_depth;
    }
    const uint64_t n = s.hist.size() + 1;  // with this byte
    const int cls = char_class(byte);
    if (cls == 3) s.after_space = n;               // a space
    if (cls == 4 || cls == 5) s.after_punct = n;  // a newline, or one of .,;:!?
    if (byte == '\n') {
      s.line_head = 0;
    } else if (n - s.line_start <= 2) {
      s.line_head = s.line_head << 8 | static_cast<uint32_t>(byte);
    }
  }

  // The scope context's state after `byte` (before it joins hist and the
  // word; s.word is still the word that a non-letter ends).
  static void end_scope_byte(StreamState& s, int byte) {
    const bool letter = (byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z');
    if (byte == '<') {
      s.in_tag = true;
      s.tag_reading = 0;
    } else if (s.in_tag) {
      if (letter || byte == '/') {
        s.tag_reading = (s.tag_reading + static_cast<uint32_t>(byte) + 1) * 0x2E1B5A3Du;
      } else {
        s.in_tag = false;
        s.tag = s.tag_reading;
      }
    }
    if (byte == '.' || byte == '!' || byte == '?') {
      s.new_sentence = true;
    } else if (s.new_sentence && s.word != 0 && !letter && byte < 128) {
      s.sentence_first = s.word;
      s.new_sentence = false;
    }
  }

  // Level 2: the slot of hashed context i for this bit, by its check byte
  // (the top byte of the bit's context hash) at `at` or at `at ^ other`; a
  // context seen in neither takes the one with the shorter history. Without
  // the nibble groups `at` is the bit's hash and `other` 1 (neighbours);
  // with them `at` is the bit's node in the nibble's first line and `other`
  // 16 (the same place in the second line).
  uint32_t* find_slot(int i, uint32_t at, uint32_t check, uint32_t other) {
    uint32_t* a = &hashed[static_cast<size_t>(i)].at(at);
    if (Slot::check(*a) == check) return a;
    uint32_t* b = &hashed[static_cast<size_t>(i)].at(at ^ other);
    if (Slot::check(*b) == check) return b;
    uint32_t* slot = Slot::count(*a) <= Slot::count(*b) ? a : b;
    *slot = check;
    return slot;
  }

  const MixTuning tuning;
  const bool level2, level3;
  const bool stream_local;  // the stream contexts (context_mix.h)
  const bool class_contexts;  // the class contexts (context_mix.h)
  const bool own_rates;       // the own rates (context_mix.h)
  const bool one_sided;       // the one-sided inputs (context_mix.h)
  const bool nibble_groups;   // the nibble groups (context_mix.h)
  const bool text;            // the text contexts (context_mix.h)
  const bool scope;           // the scope context (context_mix.h)
  const bool long_matches;    // the long matches (context_mix.h)
  const bool word_indirect;   // the word's indirect context (context_mix.h)
  const bool selectors;       // the mixer selectors (context_mix.h)
  const bool shape;           // the shape contexts (context_mix.h)
  const int layer2_direct;    // the layer-2 inputs (context_mix.h): kLayer2Direct, or none
  const int n_hashed;
  const int n_runs;           // level 2's run maps (run_maps())
  Table order0, order1;
  std::vector<Table> hashed;
  std::vector<StreamState> state;
  uint32_t match_mask = 0;
  ZeroArray<uint64_t> shared_table{0};  // level 2's match model
  ZeroArray<uint64_t> long_table{0};    // ... its 12-byte contexts (the long matches)
  uint32_t long_mask = 0;
  uint32_t match_counters[2 * (kMatchCap + 1)] = {};
  // Level 2: per hashed context, bit-history state -> probability.
  ZeroArray<uint32_t> state_maps{kMaxHashed * 256};
  // Level 2: per context hash, a check (16 bits), the byte that followed it
  // last and how often in a row (8 bits each).
  std::vector<Table> run_tables;
  uint32_t run_counters[kMaxRuns * 16 * 2] = {};
  // Level 2: the two bytes that followed the last occurrence of each c2c1 and
  // c1, and (the word's indirect context) of the word with the last byte.
  ZeroArray<uint16_t> indirect2{0}, indirect1{0}, indirect_word{0};
  int indirect2_bits = 0, indirect1_bits = 0, indirect_word_bits = 0;
  // The text contexts: per word hash, the hash of the word that followed it last.
  ZeroArray<uint32_t> word_next{0};
  int word_next_bits = 0;
  std::vector<Mixer> layer1;
  Mixer layer2{1, 1, {0}};
  Mixer layer2_match{1, 1, {0}};  // the one-sided inputs' second layer-2 vector
  Mixer layer2_shape{1, 1, {0}};  // the shape contexts' third
  int x2[padded(kMaxMixers + kLayer2Direct)] = {};  // zero past the last input (Mixer's padding)
  Apm apm_order0, apm_order1, apm_order2;
  Apm apm_nn;  // level 3: by the SHA-RNN's confidence and the bit position
  Apm apm_order3;  // the text contexts: by order 3

  // The byte in progress.
  StreamState* cur = nullptr;
  int c0 = 1;
  int bitpos = 0;  // bits of the current byte coded so far
  int last_byte = 0;
  uint64_t updates = 0;
  // The bit in progress.
  uint32_t* slots[2 + kMaxHashed] = {};
  uint32_t* state_slots[kMaxHashed] = {};
  uint32_t* run_counter[kMaxRuns] = {};
  uint32_t* match_slot = nullptr;
  int n_inputs = 0;
  int x[padded(kMaxInputs)] = {};  // zero past the last input (Mixer's padding)
  int mix_p12 = 2048;
  std::vector<Region> regions;  // every array that ZeroArray mapped
  Prefaulter prefaulter;        // last: stops before the tables go
};

uint64_t ContextMixer::memory_bytes(int streams, uint64_t stream_len, const MixTuning& tuning) {
  const bool level2 = tuning.level >= 2;
  const TableBits bits = table_bits(streams, stream_len, tuning);
  const uint64_t b = static_cast<uint64_t>(streams);
  const int n_hashed = hashed_contexts(streams, tuning);
  uint64_t bytes = b * stream_len;  // the histories
  for (int k = 0; k < run_maps(tuning); ++k) bytes += uint64_t{4} << run_table_bits(k, bits.hashed);
  for (int i = 0; i < n_hashed; ++i) bytes += uint64_t{4} << context_table_bits(i, bits.hashed, tuning);
  const bool local = uses_stream_contexts(streams, tuning);
  const uint64_t indirect =  // the indirect contexts' histories, 2 bytes an entry
      (uint64_t{2} << (local ? bits.hashed : 16)) + (uint64_t{2} << (local ? kStreamIndirect1Bits : 8));
  bytes += level2 ? (uint64_t{8} << bits.shared) + indirect : b * (uint64_t{4} << bits.match);
  if (uses_long_matches(tuning)) bytes += uint64_t{8} << (bits.shared - kLongTableShrink);  // the 12-byte table
  if (uses_word_indirect(tuning)) bytes += uint64_t{2} << (bits.hashed - kByteTableShrink);  // its byte histories
  bytes += (level2 ? 2 : 1) * Apm::bytes(65536, uses_own_rates(tuning));  // the order-1 (and order-2) APMs
  bytes += level2 ? 0 : Apm::bytes(kApmOrder0Contexts, false);                      // level 1's order-0 APM
  if (tuning.level >= 3) bytes += Apm::bytes(kApmNnContexts, uses_own_rates(tuning));  // level 3's SHA-RNN APM
  if (uses_text_contexts(tuning)) {  // the text contexts' order-3 APM and word table
    bytes += Apm::bytes(65536, uses_own_rates(tuning)) + (uint64_t{4} << bits.hashed);
  }
  bytes += (uint64_t{4} << 16) + (uint64_t{4} << 8);       // orders 1 and 0
  const uint64_t inputs = padded(layer1_inputs(streams, tuning));
  uint64_t contexts = 0;
  const std::vector<int> layer1 = layer1_contexts(tuning);
  for (int c : layer1) contexts += static_cast<uint64_t>(c);
  bytes += inputs * contexts * 4;  // layer 1's weights
  if (uses_own_rates(tuning)) bytes += contexts * 4;  // the weight sets' update counts
  const uint64_t layer2_sets = layer2_contexts(tuning) + (uses_one_sided(tuning) ? kMatchContexts : 0) +
                               (uses_shape_contexts(tuning) ? kShapeLayer2Contexts : 0);
  const int direct = layer2_direct_inputs(tuning);
  bytes += static_cast<uint64_t>(padded(static_cast<int>(layer1.size()) + direct)) * layer2_sets * 4;
  if (direct > 0) bytes += layer2_sets * 4;  // their update counts
  return bytes + b * sizeof(StreamState);  // stream states
}

ContextMixer::ContextMixer(int streams, uint64_t stream_len, const MixTuning& tuning)
    : impl_(std::make_unique<Impl>(streams, stream_len, tuning)) {}
ContextMixer::~ContextMixer() = default;

void ContextMixer::wait_prefault() { impl_->prefaulter.wait(); }

namespace {

// Bytes of the regions' pages that are in memory.
uint64_t resident_bytes(const std::vector<Region>& regions) {
  uint64_t bytes = 0;
#if defined(__linux__)
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in;
  for (const Region& r : regions) {
    if (r.bytes == 0) continue;
    in.resize((r.bytes + page - 1) / page);
    if (mincore(r.data, r.bytes, in.data()) != 0) continue;
    for (const unsigned char v : in) bytes += (v & 1) ? page : 0;
  }
#endif
  return bytes;
}

}  // namespace

uint64_t ContextMixer::resident_table_bytes() const { return resident_bytes(impl_->regions); }

uint64_t ContextMixer::resident_weight_bytes() const {
  std::vector<Region> weights;
  for (const Mixer& mx : impl_->layer1) weights.push_back(mx.region());
  for (const Mixer* mx : {&impl_->layer2, &impl_->layer2_match, &impl_->layer2_shape}) weights.push_back(mx->region());
  return resident_bytes(weights);
}

int ContextMixer::c0() const { return impl_->c0; }
int ContextMixer::byte() const { return impl_->last_byte; }

void ContextMixer::begin(int stream) {
  Impl& m = *impl_;
  SHAZIP_ASSERT(stream >= 0 && static_cast<size_t>(stream) < m.state.size() && m.bitpos == 0);
  m.cur = &m.state[static_cast<size_t>(stream)];
  m.c0 = 1;
  if (m.level2) {
    // Run maps: find (or take over) this byte's entries.
    for (int k = 0; k < m.n_runs; ++k) {
      uint32_t h = hash32(uint64_t{m.cur->base[kRunContext[k]]} | uint64_t{0x77} << 40);
      if (m.stream_local) h = m.stream_hash(h, *m.cur);  // the stream's own runs
      uint32_t& e = m.run_tables[static_cast<size_t>(k)].at(h);
      const uint32_t check = h >> 16;
      if ((e >> 16) != check) e = check << 16;
      m.cur->runs[k] = &e;
    }
  }
}

uint32_t ContextMixer::predict(int nn_p12) {
  Impl& m = *impl_;
  StreamState& s = *m.cur;
  const int c0 = m.c0;
  const uint32_t c1 = static_cast<uint32_t>(s.last8 & 0xFF);
  const uint32_t spread_c0 = spread(c0);
  // The APMs' rows are known now and used last: start their loads.
  const int apm1_ctx = static_cast<int>(c1 << 8) | c0;
  int apm2_ctx = 0;
  m.apm_order1.prefetch(apm1_ctx);
  if (m.level2) {
    const uint32_t c2c1 = static_cast<uint32_t>(s.last8 & 0xFFFF);
    apm2_ctx = static_cast<int>((hash32(c2c1 | uint64_t{1} << 40) ^ spread_c0) >> 16);
    m.apm_order2.prefetch(apm2_ctx);
  }
  int apm3_ctx = 0;
  if (m.text) {
    const uint32_t c3 = static_cast<uint32_t>(s.last8 & 0xFFFFFF);
    apm3_ctx = static_cast<int>((hash32(c3 | uint64_t{3} << 40) ^ spread_c0) >> 16);
    m.apm_order3.prefetch(apm3_ctx);
  }
  int* x = m.x;
  x[0] = m.tuning.use_nn ? stretch(std::clamp(nn_p12, 1, 4095)) : 0;
  x[1] = 256;
  // Match model: the next bit of the predicted byte, while the byte so far agrees.
  m.match_slot = nullptr;
  x[2] = 0;
  if (s.match_len > 0) {
    const int expected = expected_bit(m.state[s.match_stream].hist[s.match_ptr], c0, m.bitpos);
    if (expected >= 0) {
      const uint32_t len = std::min<uint32_t>(s.match_len, kMatchCap);
      m.match_slot = &m.match_counters[len * 2 + static_cast<uint32_t>(expected)];
      x[2] = stretch(Counters::p12(*m.match_slot));
    }
  }
  const int match_bucket = s.match_len == 0 ? 0 : s.match_len < 16 ? 1 : s.match_len < 32 ? 2 : 3;
  const int match_ctx = (match_bucket * 8 + m.bitpos) * 2 + (m.match_slot != nullptr);
  const int nn_confidence = (x[0] + 2048) >> 8;  // 0..15, from the stretched SHA-RNN input
  // The mixers' weight sets whose contexts are known before the slots'
  // lookups, picked now so that their loads overlap those (tens of MB of
  // weights at level 3: most sets are not in the cache). The mixer
  // selectors: the partial byte's mixer also by the class of the byte
  // before the last, the match state's and the confidence's by the last
  // byte's class, the known orders' (below) by the byte before the last.
  const int c2 = static_cast<int>((s.last8 >> 8) & 0xFF);
  const int class1_sel = m.selectors ? char_class(static_cast<int>(c1)) : 0;
  m.layer1[0].select((m.selectors ? char_class(c2) * 256 : 0) + c0);
  m.layer1[1].select(class1_sel * kMatchContexts + match_ctx);
  m.layer1[2].select((class1_sel * 16 + nn_confidence) * 8 + m.bitpos);
  if (m.level2) {
    int previous = static_cast<int>(c1) * 8 + m.bitpos;
    // With the layer-2 inputs also by the byte so far's first three bits.
    if (m.layer2_direct > 0) previous = previous * 8 + (((c0 << (8 - m.bitpos)) & 0xFF) >> 5);
    m.layer1[4].select(previous);
    m.layer1[5].select(static_cast<int>(s.markup & 0xFF) * 8 + m.bitpos);
    if (m.level3) m.layer1[7].select(nn_confidence * 256 + c0);
    if (m.class_contexts) m.layer1[m.level3 ? 8 : 7].select(static_cast<int>(s.classes & kLastClasses4) * 8 + m.bitpos);
  }
  const int class1 = m.class_contexts ? static_cast<int>(s.classes & kLastClass) : 0;  // the last byte's
  m.layer2.select(m.level2 ? class1 << 8 | c0 : m.bitpos);
  if (m.one_sided) m.layer2_match.select(match_ctx);
  if (m.shape) m.layer2_shape.select(static_cast<int>(s.classes & kLastClasses3) * kMatchContexts + match_ctx);
  m.slots[0] = &m.order0.at(static_cast<uint32_t>(c0));
  m.slots[1] = &m.order1.at(c1 << 8 | static_cast<uint32_t>(c0));
  for (int i = 0; i < 2; ++i) x[kFirstCounter + i] = stretch(Counters::p12(*m.slots[i]));
  if (m.level2) {
    const int histories = kFirstCounter + 2 + m.n_hashed;
    const int runs = histories + m.n_hashed;
    const int sided = runs + m.n_runs;  // the one-sided inputs, when on
    // The node of the nibble's bit tree that this bit is (1 to 15): a leading
    // 1 and the nibble's bits so far; and the partial byte at the nibble's
    // first bit, whose context hash (bits 5 and up) picks the pair of lines
    // and (bits 0-3) the places.
    const int depth = m.bitpos & 3;
    const uint32_t node = static_cast<uint32_t>((1 << depth) | (c0 & ((1 << depth) - 1)));
    const uint32_t spread_nibble = spread(c0 >> depth);
    for (int i = 0; i < m.n_hashed; ++i) {
      const uint32_t h = s.base[i] ^ spread_c0;
      uint32_t* slot;
      if (m.nibble_groups) {
        const uint32_t nh = s.base[i] ^ spread_nibble;
        slot = m.find_slot(i, (nh & ~31u) | ((nh ^ node) & 15u), h >> 24, 16);
      } else {
        slot = m.find_slot(i, h, h >> 24, 1);
      }
      m.slots[2 + i] = slot;
      x[kFirstCounter + 2 + i] = stretch(Slot::p12(*slot));
      const int st = Slot::state(*slot);
      m.state_slots[i] = &m.state_maps[static_cast<size_t>(i) * 256 + static_cast<size_t>(st)];
      x[histories + i] = stretch(Counters::p12(*m.state_slots[i]));
      // +-kOneSided where the slot's bit history has seen one value only.
      if (m.one_sided) x[sided + i] = st == 0 ? 0 : ((kHistory.zeros[st] == 0) - (kHistory.ones[st] == 0)) * kOneSided;
    }
    // Run maps: the next bit of the byte that last followed the context.
    for (int k = 0; k < m.n_runs; ++k) {
      const uint32_t e = *s.runs[k];
      const uint32_t count = e & 255;
      const int expected = count > 0 ? expected_bit(static_cast<int>((e >> 8) & 255), c0, m.bitpos) : -1;
      m.run_counter[k] = nullptr;
      x[runs + k] = 0;
      if (expected >= 0) {
        m.run_counter[k] = &m.run_counters[(k * 16 + std::min<uint32_t>(count, 15)) * 2 + expected];
        x[runs + k] = stretch(Counters::p12(*m.run_counter[k]));
      }
    }
  } else {
    for (int i = 0; i < m.n_hashed; ++i) {
      m.slots[2 + i] = &m.hashed[static_cast<size_t>(i)].at(s.base[i] ^ spread_c0);
      x[kFirstCounter + 2 + i] = stretch(Counters::p12(*m.slots[2 + i]));
    }
  }
  // The mixers, their weight sets picked as above (orders' and order 3's
  // now that the slots are known).
  if (m.level2) {
    // Orders 2, 3, 4, 5, 6 (slots 2, 3, 4, 8, 5): how many in a row have a history.
    static constexpr int kOrderSlots[5] = {2, 3, 4, 8, 5};
    int known = 0;
    while (known < 5 && Slot::state(*m.slots[kOrderSlots[known]]) > 0) ++known;
    m.layer1[3].select(((m.selectors ? c2 * 6 : 0) + known) * 8 + m.bitpos);
    m.layer1[6].select(Slot::state(*m.slots[3]));
  }
  const int mixers = static_cast<int>(m.layer1.size());
  for (int i = 0; i < mixers; ++i) {
    m.layer1[static_cast<size_t>(i)].mix(x);
    m.x2[i] = m.layer1[static_cast<size_t>(i)].stretched();
  }
  for (int k = 0; k < m.layer2_direct; ++k) m.x2[mixers + k] = x[kLayer2DirectInputs[k]];
  m.mix_p12 = m.layer2.mix(m.x2);
  // A second view of the same outputs, by the match state, and with the
  // shape contexts a third, by the last three bytes' classes and the match
  // state: averaged in the logistic domain (the division truncating toward
  // zero).
  int views = 1, sum = m.layer2.stretched();
  if (m.one_sided) {
    m.layer2_match.mix(m.x2);
    sum += m.layer2_match.stretched();
    ++views;
  }
  if (m.shape) {
    m.layer2_shape.mix(m.x2);
    sum += m.layer2_shape.stretched();
    ++views;
  }
  if (views > 1) m.mix_p12 = squash(sum / views);

  int p16;
  const int a1 = m.apm_order1.refine(m.mix_p12, apm1_ctx);
  if (m.level2) {
    const int a2 = m.apm_order2.refine(m.mix_p12, apm2_ctx);
    // With the text contexts the order-3 APM takes one of the order-2 APM's
    // two shares.
    const int a3 = m.text ? m.apm_order3.refine(m.mix_p12, apm3_ctx) : a2;
    if (m.level3) {
      // The SHA-RNN's confidence in 32 steps (twice the mixers' resolution).
      const int a_nn = m.apm_nn.refine(m.mix_p12, ((x[0] + 2048) >> 7) * 8 + m.bitpos);
      p16 = (m.mix_p12 * 32 + a1 + a2 + a3 + a_nn) / 6;
    } else {
      p16 = (m.mix_p12 * 16 + a1 + a2 + a3 + 2) >> 2;
    }
  } else {
    const int a0 = m.apm_order0.refine(m.mix_p12, c0);
    p16 = (m.mix_p12 * 16 + a0 + 2 * a1 + 2) >> 2;
  }
  return static_cast<uint32_t>(std::clamp(p16, static_cast<int>(kMinP16), static_cast<int>(65536 - kMinP16)));
}

void ContextMixer::update(int bit) {
  Impl& m = *impl_;
  SHAZIP_ASSERT(m.cur != nullptr && (bit == 0 || bit == 1));
  if (m.bitpos < 7) {
    // The next bit's slots are somewhere in 8 (level 1) or 23 large tables:
    // ask for their cache lines now, so that the loads overlap the updates
    // below. (Asking in predict() for both possible next bits' lines doubles
    // the loads: level 2 was 1.25x slower so, the memory system being the
    // bottleneck.) This loop and its twin after the 8th bit stay written out:
    // moved into a helper of Impl, GCC 12 -O2 emitted no prefetch for either,
    // and bench_mix ran 2x slower (check `objdump -d | grep prefetch`).
    // With the nibble groups only the second nibble's lines are new, both
    // of each pair.
    const uint32_t next = spread(m.c0 << 1 | bit);
    const StreamState& s = *m.cur;
    if (!m.nibble_groups) {
      for (int i = 0; i < m.n_hashed; ++i) __builtin_prefetch(&m.hashed[static_cast<size_t>(i)].at(s.base[i] ^ next));
    } else if (m.bitpos == 3) {
      for (int i = 0; i < m.n_hashed; ++i) {
        const uint32_t pair = (s.base[i] ^ next) & ~31u;
        __builtin_prefetch(&m.hashed[static_cast<size_t>(i)].at(pair));
        __builtin_prefetch(&m.hashed[static_cast<size_t>(i)].at(pair | 16));
      }
    }
  }
  const int limit = m.tuning.counter_limit;
  for (int i = 0; i < 2; ++i) Counters::update(*m.slots[i], bit, limit);
  if (m.level2) {
    for (int i = 0; i < m.n_hashed; ++i) {
      Counters::update(*m.state_slots[i], bit, m.tuning.state_limit);
      Slot::update(*m.slots[2 + i], bit, m.tuning.history_limit);
    }
    for (uint32_t* counter : m.run_counter) {
      if (counter) Counters::update(*counter, bit, 1023);
    }
    m.apm_order2.update(bit);
    if (m.level3) m.apm_nn.update(bit);
    if (m.text) m.apm_order3.update(bit);
  } else {
    for (int i = 2; i < 2 + m.n_hashed; ++i) Counters::update(*m.slots[i], bit, limit);
    m.apm_order0.update(bit);
  }
  if (m.match_slot) Counters::update(*m.match_slot, bit, 1023);
  m.apm_order1.update(bit);

  // Mixer: gradient step on coding cost, the rate falling from mixer_lr to
  // mixer_lr_min: with the bits coded, or with each weight set's own updates
  // (the own rates).
  if (m.own_rates) {
    for (Mixer& mx : m.layer1) {
      mx.update(m.x, bit, mx.set_rate(m.tuning.mixer_lr, m.tuning.mixer_lr_min), m.tuning.mixer_shift);
    }
  } else {
    const int lr = std::max<int64_t>(m.tuning.mixer_lr_min,
                                     m.tuning.mixer_lr - static_cast<int64_t>(m.updates >> m.tuning.mixer_decay));
    for (Mixer& mx : m.layer1) mx.update(m.x, bit, static_cast<int>(lr), m.tuning.mixer_shift);
  }
  // Layer 2 at mixer2_lr, or with the layer-2 inputs at each weight set's own rate.
  const auto layer2_rate = [&m](Mixer& mx) {
    const int lr2 = m.tuning.mixer2_lr;
    return m.layer2_direct > 0 ? mx.set_rate(lr2 * kLayer2RateStart, lr2) : lr2;
  };
  m.layer2.update(m.x2, bit, layer2_rate(m.layer2), m.tuning.mixer_shift);
  if (m.one_sided) m.layer2_match.update(m.x2, bit, layer2_rate(m.layer2_match), m.tuning.mixer_shift);
  if (m.shape) m.layer2_shape.update(m.x2, bit, layer2_rate(m.layer2_shape), m.tuning.mixer_shift);
  ++m.updates;

  m.c0 = m.c0 << 1 | bit;
  if (++m.bitpos == 8) {
    m.last_byte = m.c0 & 0xFF;
    m.end_byte(*m.cur, m.last_byte);
    if (m.level2) {
      // The driver codes the streams in turn: warm the first bit's slots of
      // the next one (a guess; a wrong one costs nothing but the loads).
      const size_t next = (static_cast<size_t>(m.cur - m.state.data()) + 1) % m.state.size();
      const StreamState& n = m.state[next];
      for (int i = 0; i < m.n_hashed; ++i) {
        const uint32_t h = n.base[i] ^ spread(1);
        if (m.nibble_groups) {
          __builtin_prefetch(&m.hashed[static_cast<size_t>(i)].at(h & ~31u));
          __builtin_prefetch(&m.hashed[static_cast<size_t>(i)].at((h & ~31u) | 16));
        } else {
          __builtin_prefetch(&m.hashed[static_cast<size_t>(i)].at(h));
        }
      }
    }
    m.bitpos = 0;
    m.c0 = 1;
    m.cur = nullptr;
  }
}

}  // namespace shazip::model
