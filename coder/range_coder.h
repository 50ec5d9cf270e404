// Range coder for 256-ary symbols under integer cumulative frequency tables.
//
// The coder knows nothing of models: it takes a table of 257 cumulative
// frequencies per symbol (cdf[0] == 0, strictly increasing, cdf[256] ==
// kFreqTotal) and turns symbols into bytes and back. Encoder and decoder must
// be handed identical tables, which is why the model quantizes its floats into
// integers (quantize.h) before they reach this file.
//
// State is a 64-bit interval [low, low + range) kept normalised so that
// range >= 2^56. With kFreqBits = 24 the per-symbol scale range >> 24 is at
// least 2^32, so the rounding loss of the division is below 2^-32 of the
// interval (< 1e-9 bits per symbol): the coded size equals the quantized ideal
// code length within a few bytes. Carries are resolved LZMA style: the last
// byte shifted out is held back ("cache") together with a count of 0xFF bytes
// that a carry could still turn into 0x00.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shazip::coder {

// Precision of the frequency tables. 24 bits: a symbol of frequency 1 costs at
// most 24 bits, so a table can give every byte value a non-zero frequency and
// still hand 1 - 2^-16 of the mass to the predicted symbol (the model's
// confident predictions lose at most ~2e-5 bits each to the floor of 1). It
// must stay <= 32 so that (range >> kFreqBits) * kFreqTotal fits in 64 bits
// with range < 2^64 and the scale stays >= 2^24. FORMAT.md records it.
constexpr int kFreqBits = 24;
constexpr uint32_t kFreqTotal = uint32_t{1} << kFreqBits;
constexpr int kAlphabet = 256;
constexpr int kCdfSize = kAlphabet + 1;

// Precision of binary probabilities (encode_bit/decode_bit).
constexpr int kBitBits = 16;
constexpr uint32_t kBitTotal = uint32_t{1} << kBitBits;

// Receives the encoder's output in blocks. Called from encode() only when the
// internal buffer is full and from finish(); must not throw through the coder
// unless the caller is prepared to abandon the Encoder.
struct ByteSink {
  virtual ~ByteSink() = default;
  virtual void write(const uint8_t* data, size_t size) = 0;
};

class Encoder {
 public:
  // sink must outlive the Encoder.
  explicit Encoder(ByteSink& sink);
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  // Codes `symbol` (0..255) with the table `cdf` (kCdfSize entries, see top).
  // Never allocates; calls the sink at most once.
  void encode(const uint32_t* cdf, int symbol);

  // Codes one binary decision: bit (0 or 1) where p1 / 2^kBitBits is the
  // probability of a 1, 0 < p1 < 2^kBitBits. For the bitwise mixing stage
  // (model/context_mix.h); may be interleaved freely with encode().
  void encode_bit(int bit, uint32_t p1);

  // Flushes the fewest bytes that let the decoder recover every symbol (the
  // decoder reads zeros past the end). Call exactly once; no encode() after.
  void finish();

  // Bytes handed to the sink so far plus bytes still buffered.
  uint64_t bytes_out() const { return flushed_ + used_ + pending_bytes(); }

 private:
  void add_low(uint64_t v);
  void normalize();
  void shift_low();
  void put(uint8_t b);
  void flush_buffer();
  uint64_t pending_bytes() const { return has_cache_ ? 1 + ff_count_ : 0; }

  static constexpr size_t kBufferSize = 1 << 16;

  ByteSink& sink_;
  uint64_t low_ = 0;
  uint64_t range_ = ~uint64_t{0};
  uint8_t cache_ = 0;        // last byte shifted out, still open to a carry
  bool has_cache_ = false;   // false until the first byte is shifted out
  uint64_t ff_count_ = 0;    // 0xFF bytes after cache_, also open to a carry
  bool finished_ = false;
  uint64_t flushed_ = 0;
  size_t used_ = 0;
  uint8_t buffer_[kBufferSize];
};

class Decoder {
 public:
  // Reads the coded bytes [data, data + size); the memory must outlive the
  // Decoder. Never reads outside that range.
  Decoder(const uint8_t* data, size_t size);

  // Decodes one symbol with the same table the encoder used. Always returns a
  // value in 0..255, whatever the input; on malformed input it sets corrupt()
  // or overran() and keeps going without undefined behaviour.
  int decode(const uint32_t* cdf);

  // Decodes one binary decision coded by Encoder::encode_bit with the same p1.
  int decode_bit(uint32_t p1);

  // True when the input ran out earlier than any valid stream can (more than
  // the 8 implicit zero bytes that finish() relies on were needed).
  bool overran() const { return virtual_bytes_ > 8; }
  // True when the code value fell outside the table: the input is not a
  // stream produced by Encoder with these tables.
  bool corrupt() const { return corrupt_; }
  // Input bytes consumed, implicit zero bytes past the end included.
  uint64_t position() const { return pos_ + virtual_bytes_; }

 private:
  uint8_t next_byte();
  void normalize();

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  uint64_t virtual_bytes_ = 0;
  uint64_t code_ = 0;
  uint64_t range_ = ~uint64_t{0};
  bool corrupt_ = false;
};

// Convenience sink that appends to a caller-owned vector-like buffer.
template <class Vector>
struct VectorSink final : ByteSink {
  explicit VectorSink(Vector& v) : out(v) {}
  void write(const uint8_t* data, size_t size) override {
    out.insert(out.end(), data, data + size);
  }
  Vector& out;
};

// Sink that drops the output: for the coded size alone (Encoder::bytes_out()).
struct NullSink final : ByteSink {
  void write(const uint8_t*, size_t) override {}
};

}  // namespace shazip::coder
