// Bitwise context mixing on top of the SHA-RNN (mix levels 1 to 3).
//
// The SHA-RNN learns from scratch while it codes, so on the first hundreds of
// kilobytes it knows less than a counting model: on enwik6 alone it gives 2.36
// bits per byte where counting models reach ~1.85. This stage codes every
// byte as 8 binary decisions, most significant bit first, and for each one
// mixes, in the logistic domain, the SHA-RNN's probability of that bit (from
// its quantized byte table) with order-N, word, markup and other context
// statistics and a match model, through online-trained gated linear mixers
// and adaptive probability maps (the lpaq/paq8 family of designs, written for
// this code base). The counters cover the SHA-RNN's slow start and the long
// exact repeats it cannot memorise; the SHA-RNN adds what it generalises.
//
// Everything here is integer arithmetic with a fixed evaluation order: encoder
// and decoder that feed the same bits and the same SHA-RNN probabilities get the
// same outputs on every platform. Torch-free.
//
// Streams: the driver codes B streams interleaved (position-major, stream
// order). Each stream has its own history (context hashes; at level 1 also its
// match model); the statistics tables and the mixers are shared, so what one
// stream learns helps all, and from level 2 on the match model finds text in every
// stream's history. The stream contexts (below) add statistics of each stream's
// own. The order of calls is therefore part of the format.
#pragma once

#include <cstdint>
#include <memory>

namespace shazip::model {

// Probabilities at the interface are 16-bit: p / 65536 that the bit is 1,
// always in [kMinP16, 65536 - kMinP16].
constexpr uint32_t kMinP16 = 32;

// The highest mix level this build knows (model::ModelConfig::mix).
constexpr int kMaxMixLevel = 3;

// Settings of the mixing stage. They change the arithmetic, so the archive's
// mix level fixes them (for_level); only benchmarks/bench_mix overrides the
// numeric knobs, for tuning.
//
// Level 1 (format version 2): orders 0-6, two word contexts and a sparse one
// as adaptive counters, a per-stream match model, three mixers, two APMs.
// Level 2 (format version 3): 23 hashed contexts whose slots carry a check
// byte and a bit history next to the counter, a match model over all streams,
// run maps, seven mixers, an order-2 APM.
// Level 3 (format version 11): level 2 with tables up to 4 times larger
// (2^24 slots), the mixers' rate in half units (falling from level 2's start
// to half its floor), an eighth mixer picked by the SHA-RNN's confidence and the
// partial byte, and a third final APM by the SHA-RNN's confidence.
// Stream contexts (format version 12, levels 2 and 3, more than one stream):
// four more hashed contexts (orders 2 and 3, the word, the word and the
// previous byte), each keyed by the stream as well, and the run maps and the
// indirect contexts' byte histories kept per stream instead of shared. The
// shared tables mix every stream's text, which coding in order does not:
// these keep what is local to a stream's part of the input (names, recent
// words, runs).
// Class contexts (format version 13, levels 2 and 3, any number of streams):
// each byte also has a character class (lower case, upper case, digit, space,
// newline, punctuation, byte >= 128, other). A hashed context of the last 12
// bytes' classes, order 12, and the column with the word take the places of
// bytes 1+3, the case-folded order 4 and the byte above + byte 1 (which gained
// nothing once they were there); one more layer-1 mixer is picked by the last
// four bytes' classes, and the second layer by the last byte's class as well
// as the partial byte. The shape of the text (a number, a capitalised word
// after a full stop, the start of a line) decides how far each model is trusted.
// Own rates (format version 14, levels 2 and 3): each of the first layer's
// weight sets learns at its own rate, mixer_lr * 2048 / (2048 + n) after n
// updates, floored at mixer_lr_min, instead of one rate for all that falls
// with the bits coded: a set that a rare context picks late in the input
// (digits after pages of prose) starts as fast as the first sets did. Each
// knot of the final APMs likewise steps by 1 / (n + 24) of its error until
// that reaches the fixed 2^-apm_rate, instead of 2^-apm_rate from the start.
// One-sided inputs (format version 15, levels 2 and 3): each hashed context
// gives one more input, +512 when its bit history has seen only ones, -512
// when only zeros, else 0, so that every mixer weighs a context that has
// never been contradicted apart from one that has; and the second layer has
// a second weight vector, picked by the match state, whose output is
// averaged with the first's in the logistic domain.
// Nibble groups (format version 16, levels 2 and 3): a hashed context's
// slots for the four bits of a nibble lie in one pair of adjacent cache lines
// (32 slots) that the nibble's first bit picks, each node of the nibble's bit
// tree at a fixed place in the first line (the node XOR the hash's low four
// bits) or, taken, at the same place in the second; before, every bit's slot
// was hashed anywhere in the table. Each context costs two random memory
// accesses per byte instead of eight, with as many slots as before, each
// still with its own check byte: the stage is memory-bound, and so about
// 1.25x faster at level 2 and 1.5x at level 3, at the same size. Format 16
// also lowers the initial weights from level 2 on (set_nibble_groups).
// Text contexts (format version 18, levels 2 and 3): six more hashed
// contexts about the text's structure rather than its last bytes: the word
// that followed the previous word when it last occurred (with the word so far
// and the last byte), the word with the word three back, the innermost two
// open brackets and their depth, the line's first two bytes with the column,
// how far back the last space and the last punctuation are (these three with
// the last byte), and the word with the last four bytes' classes; and a final
// APM by order 3, which takes one of the order-2 APM's two shares.
// Table shapes (format version 19, levels 2 and 3): each hashed context's
// table sized by what it holds instead of all alike. The contexts of few
// distinct values (orders 2 and 3, bytes 2-3, the column with the byte above,
// the match model's prediction; of the text contexts the brackets, the line's
// head and the distances) take a quarter of the slots above 2^20 (never
// fewer than 2^20); the deep ones, whose values rarely repeat (orders 6, 7, 8
// and 12, the word trigram, the word with the previous word), twice as many,
// up to 2^(table_bits + 1). The slots so move from tables that did not need
// them to those that did, at about the same memory.
// Long matches (format version 20, levels 2 and 3): the match model also
// keeps the last position of every 12-byte context (a table of half the
// 6-byte one's entries) and, while it has no match of 12 bytes, takes the
// one found there when it is longer; and after a byte that a match of two
// bytes or more mispredicted it goes on at the next byte (a length of 1)
// instead of giving it up, so that a repeat with one changed byte keeps its
// prediction. The 6-byte table replaces such a match with one of 6 bytes.
// The scope context (format version 20, with the text contexts): the name
// of the last markup tag opened by `<` and the first word of the sentence
// (after . ! or ?), with the word so far.
// More run maps (format version 21, levels 2 and 3): three more run maps
// (the byte that last followed a context and how many times in a row), for
// the word with the previous word, order 8 and the word trigram, besides
// orders 3 and 4 and the word with the last byte.
// The word's indirect context (format version 21, levels 2 and 3): the two
// bytes that followed the word so far with the last byte when they last
// occurred, hashed with the last three bytes; one more hashed context.
// The mixer selectors (format version 22, levels 2 and 3): four of layer 1's
// mixers pick their weight set by more of the context: the partial byte's
// also by the class of the byte before the last (class contexts' classes),
// the match state's and the SHA-RNN confidence's also by the last byte's
// class, and the one of how many orders know their context also by the byte
// before the last.
// The layer-2 inputs (format version 23, levels 2 and 3): the second layer
// also weighs four of the first layer's inputs itself (the SHA-RNN's, the
// bias, the match model's and order 1's; their weights start at 0), each of
// its weight sets learns at its own rate (6 * mixer2_lr falling to
// mixer2_lr, as the first layer's own rates fall), and the previous byte's
// layer-1 mixer picks its set also by the byte so far's first three bits.
// The shape contexts (format version 24, levels 2 and 3 with the class
// contexts): one more hashed context, the last two bytes with the classes of
// the six before them (a word's shape, a number's, a line's indentation,
// where the bytes themselves are new), and a third layer-2 weight vector
// beside the partial byte's and the match state's, picked by the last three
// bytes' classes and the match state, the three averaged in the logistic
// domain.
struct MixTuning {
  int level = 1;             // 1 to 3
  int mixer_lr = 16;         // mixer learning rate (weight step = x * err * lr >> mixer_shift)
  int mixer_lr_min = 1;      // ... falls by 1 every 2^mixer_decay bits to this
  int mixer_decay = 15;
  int mixer_shift = 14;      // 14 or 15 (level 3): the unit of the rates above is 2^-shift
                             // (1..kMaxMixerShift)
  int mixer2_lr = 2;         // learning rate of the second mixing layer
  int counter_limit = 255;   // count cap of the plain counters (level 1: all; level 2: orders 0, 1)
  int history_limit = 30;    // level 2: count cap of the counters beside the bit histories
  int state_limit = 1023;    // level 2: count cap of the bit-history maps
  int apm_rate = 7;          // adaptive probability maps: step = error >> rate
  int table_bits = 22;       // the most slots of a hashed table (and a run map): 2^table_bits
                             // (kMinTableBits..kMaxTableBits)
  int nn_weight = 40000;     // initial weight of the SHA-RNN input (65536 = 1)
  int cm_weight = 12000;     // initial weight of every other input
  bool use_nn = true;        // false: the context models alone (benchmarks only)
  bool stream_contexts = false;  // levels 2 and 3: the stream contexts (above), where
                                 // there are two streams or more; not part of the level
                                 // (a header flag; model::mix_tuning sets it)
  bool class_contexts = false;   // levels 2 and 3: the class contexts (above); a header
                                 // flag as well
  bool own_rates = false;        // levels 2 and 3: each first-layer weight set's and
                                 // APM knot's own rate (above); a header flag as well
  bool one_sided = false;        // levels 2 and 3: the one-sided inputs and the
                                 // match state's second layer (above); a header flag as well
  bool nibble_groups = false;    // levels 2 and 3: the nibble groups (above); a header
                                 // flag as well (set with set_nibble_groups)
  bool text_contexts = false;    // levels 2 and 3: the text contexts (above); a header
                                 // flag as well
  bool table_shapes = false;     // levels 2 and 3: the table shapes (above); a header
                                 // flag as well
  bool long_matches = false;     // levels 2 and 3: the long matches (above); a header
                                 // flag as well
  bool scope_context = false;    // levels 2 and 3 with the text contexts: the scope
                                 // context (above); a header flag as well
  bool more_runs = false;        // levels 2 and 3: the more run maps (above); a header
                                 // flag as well
  bool word_indirect = false;    // levels 2 and 3: the word's indirect context (above);
                                 // a header flag as well
  bool mixer_selectors = false;  // levels 2 and 3: the mixer selectors (above); a header
                                 // flag as well
  bool layer2_inputs = false;    // levels 2 and 3: the layer-2 inputs (above); a header
                                 // flag as well
  bool shape_contexts = false;   // levels 2 and 3 with the class contexts: the shape
                                 // contexts (above); a header flag as well

  // The settings an archive of this mix level was coded with (1 to 3).
  static MixTuning for_level(int level);
};

// Whether a mixing stage of this many streams has the stream contexts: the
// tuning asks for them, the level is 2 or 3, and there are two streams or more.
bool uses_stream_contexts(int streams, const MixTuning& t);
// Whether a mixing stage has the class contexts: the tuning asks for them and
// the level is 2 or 3.
bool uses_class_contexts(const MixTuning& t);
// Whether a mixing stage has the own rates: the tuning asks for them and the
// level is 2 or 3.
bool uses_own_rates(const MixTuning& t);
// Whether a mixing stage has the one-sided inputs: the tuning asks for them
// and the level is 2 or 3.
bool uses_one_sided(const MixTuning& t);

// Whether a mixing stage has the nibble groups: the tuning asks for them and
// the level is 2 or 3.
bool uses_nibble_groups(const MixTuning& t);
// Whether a mixing stage has the text contexts: the tuning asks for them and
// the level is 2 or 3.
bool uses_text_contexts(const MixTuning& t);
// Whether a mixing stage sizes its hashed tables by context (the table
// shapes): the tuning asks for them and the level is 2 or 3.
bool uses_table_shapes(const MixTuning& t);
// Whether a mixing stage's match model has the long matches: the tuning asks
// for them and the level is 2 or 3.
bool uses_long_matches(const MixTuning& t);
// Whether a mixing stage has the scope context: the tuning asks for it and
// the stage has the text contexts.
bool uses_scope_context(const MixTuning& t);
// Whether a mixing stage has the more run maps: the tuning asks for them and
// the level is 2 or 3.
bool uses_more_runs(const MixTuning& t);
// Whether a mixing stage has the word's indirect context: the tuning asks for
// it and the level is 2 or 3.
bool uses_word_indirect(const MixTuning& t);
// Whether a mixing stage has the mixer selectors: the tuning asks for them and
// the level is 2 or 3.
bool uses_mixer_selectors(const MixTuning& t);
// Whether a mixing stage has the layer-2 inputs: the tuning asks for them and
// the level is 2 or 3.
bool uses_layer2_inputs(const MixTuning& t);
// Whether a mixing stage has the shape contexts: the tuning asks for them and
// the stage has the class contexts.
bool uses_shape_contexts(const MixTuning& t);
// Format 16's switch: the nibble groups on or off, and from level 2 on the
// initial weights that go with them (on: 2000 for the context models, 16000
// for the SHA-RNN, tuned with them; off: the level's, as formats up to 15).
void set_nibble_groups(MixTuning& t, bool on);

// The bounds of MixTuning's mixer_shift and table_bits, and of apm_rate with
// the own rates (a knot's count fits a byte) (benchmarks/bench_mix holds its
// knobs to them; the mixing stage asserts them).
constexpr int kMaxMixerShift = 16;
constexpr int kMinTableBits = 16, kMaxTableBits = 28;
constexpr int kMinCountedApmRate = 5, kMaxCountedApmRate = 8;

// The SHA-RNN's probability (12-bit, 1..4095) that the next bit is 1, given
// its byte table `cdf` (coder::kCdfSize entries) and the partial byte c0: the
// bits seen so far of the current byte behind a leading 1 (1 at the start of a
// byte, 0b1xxx after three bits, ...). Integer arithmetic only.
int nn_bit_p12(const uint32_t* cdf, int c0);

// The mixers' inner loops (integer dot products and weight steps) run in AVX2
// where the CPU has it, else in portable loops; both give the same results bit
// for bit. set_mixer_simd(false) forces the portable loops (tests and
// benchmarks compare the two), set_mixer_simd(true) restores the default;
// both return whether AVX2 is in use from then on (from every mixer's next
// bit on; the setting is process-wide).
bool set_mixer_simd(bool on);
bool mixer_simd();

// Bytes that live mixing stages hold outside the heap: on Linux their large
// tables are mapped directly, for huge pages, and so are their mixers'
// weights, which only the weight sets in use touch (tests add mapped_bytes()
// to the heap's count to check memory_bytes).
uint64_t mapped_table_bytes();  // the tables'
uint64_t mapped_bytes();        // the tables' and the weights

// Each mixing stage faults its mapped tables' pages in on a thread of its own
// while it codes (a first touch costs a page's zeroing, which on a virtual
// machine can take a third of the time on a file of a megabyte), where the
// kernel can do that without writing to them (Linux 5.14 and later). Only
// speed depends on it. set_table_prefault(false) turns that off for the mixing
// stages made from then on (benchmarks compare the two); both return whether
// new stages prefault (on and supported). Process-wide.
bool set_table_prefault(bool on);

// The most streams the mixing stage takes (archive headers are held to it).
constexpr uint64_t kMaxMixStreams = uint64_t{1} << 24;

class ContextMixer {
 public:
  // streams: the number of interleaved streams (1..kMaxMixStreams);
  // stream_len: the most bytes any stream holds (sizes the tables; encoder and
  // decoder derive it alike).
  ContextMixer(int streams, uint64_t stream_len, const MixTuning& tuning);
  ~ContextMixer();
  // About how many bytes such a mixer allocates (its tables, the streams'
  // histories once full, the mixers), for memory planning (shazip -j).
  static uint64_t memory_bytes(int streams, uint64_t stream_len, const MixTuning& tuning);
  ContextMixer(const ContextMixer&) = delete;
  ContextMixer& operator=(const ContextMixer&) = delete;

  // Starts the next byte of `stream`.
  void begin(int stream);
  // Probability (16-bit) that the next bit of the current byte is 1, given the
  // SHA-RNN's 12-bit probability for it (ignored when tuning.use_nn is off).
  uint32_t predict(int nn_p12);
  // The bit that was coded. After the 8th bit the byte joins the stream's
  // history and byte() returns it.
  void update(int bit);
  // The partial byte with its leading 1 (see nn_bit_p12); 1 at a byte start.
  int c0() const;
  // The byte completed by the last 8 updates.
  int byte() const;
  // Until the prefaulting thread (set_table_prefault) is done, and how many
  // bytes of the mapped tables, and of the mixers' mapped weights, are in
  // memory now (tests).
  void wait_prefault();
  uint64_t resident_table_bytes() const;
  uint64_t resident_weight_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shazip::model
