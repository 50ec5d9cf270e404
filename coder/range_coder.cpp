// Range coder: see range_coder.h for the scheme and its precision argument.
#include "range_coder.h"

#include "assert.h"

namespace shazip::coder {
namespace {

constexpr uint64_t kTop = uint64_t{1} << 56;  // normalisation threshold

// Largest s in 0..255 with cdf[s] <= target (cdf is strictly increasing).
inline int find_symbol(const uint32_t* cdf, uint64_t target) {
  // Branch-free: the comparisons are unpredictable, so a conditional add
  // (cmov) beats a branch by a wide margin.
  int s = 0;
  for (int step = 128; step > 0; step >>= 1) {
    s += (cdf[s + step] <= target) ? step : 0;
  }
  return s;
}

}  // namespace

Encoder::Encoder(ByteSink& sink) : sink_(sink) {}

void Encoder::put(uint8_t b) {
  if (used_ == kBufferSize) flush_buffer();
  buffer_[used_++] = b;
}

void Encoder::flush_buffer() {
  if (used_ == 0) return;
  sink_.write(buffer_, used_);
  flushed_ += used_;
  used_ = 0;
}

// Moves the top byte of low_ out of the window. A byte other than 0xFF
// settles everything held before it (a later carry stops at it); a 0xFF byte
// must wait, since a carry would turn it into 0x00 and ripple on.
void Encoder::shift_low() {
  const uint8_t b = static_cast<uint8_t>(low_ >> 56);
  low_ <<= 8;
  if (!has_cache_) {
    // Leading bytes: the coded value stays below the initial range 2^64, so
    // no carry can ever reach a leading 0xFF; anything else may be carried.
    if (b == 0xFF) {
      put(b);
    } else {
      cache_ = b;
      has_cache_ = true;
    }
    return;
  }
  if (b == 0xFF) {
    ++ff_count_;
    return;
  }
  put(cache_);
  for (; ff_count_ > 0; --ff_count_) put(0xFF);
  cache_ = b;
}

// low_ += v, carrying into the held-back bytes if the window overflows.
void Encoder::add_low(uint64_t v) {
  const uint64_t new_low = low_ + v;
  if (new_low < low_) {
    // Carry out of the window: add one to the held-back bytes. The pending
    // 0xFF run becomes zeros; the last of them is the new open byte.
    SHAZIP_ASSERT(has_cache_ && cache_ != 0xFF);
    if (ff_count_ == 0) {
      ++cache_;
    } else {
      put(static_cast<uint8_t>(cache_ + 1));
      for (uint64_t i = 1; i < ff_count_; ++i) put(0x00);
      cache_ = 0x00;
      ff_count_ = 0;
    }
  }
  low_ = new_low;
}

void Encoder::normalize() {
  while (range_ < kTop) {
    shift_low();
    range_ <<= 8;
  }
}

void Encoder::encode(const uint32_t* cdf, int symbol) {
  SHAZIP_ASSERT(!finished_ && symbol >= 0 && symbol < kAlphabet);
  const uint32_t lo = cdf[symbol];
  const uint32_t hi = cdf[symbol + 1];
  SHAZIP_ASSERT(lo < hi && hi <= kFreqTotal);
  const uint64_t r = range_ >> kFreqBits;
  add_low(r * lo);
  range_ = r * (hi - lo);
  normalize();
}

// A 1 takes the bottom p1 part of the interval, a 0 the rest.
void Encoder::encode_bit(int bit, uint32_t p1) {
  SHAZIP_ASSERT(!finished_ && p1 > 0 && p1 < kBitTotal);
  const uint64_t bound = (range_ >> kBitBits) * p1;
  if (bit) {
    range_ = bound;
  } else {
    add_low(bound);
    range_ -= bound;
  }
  normalize();
}

void Encoder::finish() {
  SHAZIP_ASSERT(!finished_);
  finished_ = true;
  // Pick the value in [low, low + range) with the most trailing zero bytes;
  // the decoder supplies those zeros itself, so only the leading k bytes go
  // out. The first k that works gives the shortest output.
  using u128 = unsigned __int128;
  const u128 low = low_;
  const u128 high = low + range_;  // exclusive, may exceed 2^64
  for (int k = 0; k <= 8; ++k) {
    const u128 step = u128{1} << (64 - 8 * k);
    const u128 v = (low + step - 1) / step * step;
    if (v >= high) continue;
    if (v >> 64) {
      // The chosen value carries into the held-back bytes.
      SHAZIP_ASSERT(has_cache_ && cache_ != 0xFF);
      if (ff_count_ == 0) {
        ++cache_;
      } else {
        put(static_cast<uint8_t>(cache_ + 1));
        for (uint64_t i = 1; i < ff_count_; ++i) put(0x00);
        cache_ = 0x00;
        ff_count_ = 0;
      }
    }
    low_ = static_cast<uint64_t>(v);
    for (int i = 0; i < k; ++i) shift_low();
    break;
  }
  if (has_cache_) {
    put(cache_);
    for (; ff_count_ > 0; --ff_count_) put(0xFF);
    has_cache_ = false;
  }
  flush_buffer();
}

Decoder::Decoder(const uint8_t* data, size_t size) : data_(data), size_(size) {
  for (int i = 0; i < 8; ++i) code_ = (code_ << 8) | next_byte();
}

uint8_t Decoder::next_byte() {
  if (pos_ < size_) return data_[pos_++];
  ++virtual_bytes_;
  return 0;
}

void Decoder::normalize() {
  while (range_ < kTop) {
    code_ = (code_ << 8) | next_byte();
    range_ <<= 8;
  }
}

int Decoder::decode(const uint32_t* cdf) {
  const uint64_t r = range_ >> kFreqBits;
  uint64_t target = code_ / r;
  if (target >= kFreqTotal) {
    corrupt_ = true;
    target = kFreqTotal - 1;
  }
  const int s = find_symbol(cdf, target);
  const uint32_t lo = cdf[s];
  const uint32_t hi = cdf[s + 1];
  SHAZIP_ASSERT(lo < hi && hi <= kFreqTotal);
  code_ -= r * lo;
  range_ = r * (hi - lo);
  if (code_ >= range_) {
    // Only reachable on input no encoder produced; keep the state sane.
    corrupt_ = true;
    code_ = range_ - 1;
  }
  normalize();
  return s;
}

int Decoder::decode_bit(uint32_t p1) {
  SHAZIP_ASSERT(p1 > 0 && p1 < kBitTotal);
  const uint64_t bound = (range_ >> kBitBits) * p1;
  int bit;
  if (code_ < bound) {
    range_ = bound;
    bit = 1;
  } else {
    code_ -= bound;
    range_ -= bound;
    bit = 0;
  }
  if (code_ >= range_) {
    // Only on input no encoder produced (e.g. an all-0xFF start).
    corrupt_ = true;
    code_ = range_ - 1;
  }
  normalize();
  return bit;
}

}  // namespace shazip::coder
