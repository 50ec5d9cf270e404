// Archive header serialisation and validation; the layout is specified in
// docs/FORMAT.md, section "Header".
#include "src/container.h"

#include <cstdint>
#include <cstring>
#include <iterator>

#include "coder/assert.h"
#include "model/context_mix.h"
#include "src/crc32.h"
#include "src/errors.h"

namespace shazip {
namespace {

[[noreturn]] void corrupt(const std::string& what) {
  throw Error(ErrorCode::kCorrupt, "corrupt archive: " + what);
}

class Writer {
 public:
  template <class T>
  void put(T v, int bytes = sizeof(T)) {
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof(T));
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(u >> (8 * i)));
  }
  void put_f32(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    put<uint32_t>(u);
  }
  // LEB128: seven bits at a time, low first, the high bit set on every byte
  // but the last.
  void put_varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) out.push_back(static_cast<uint8_t>(v | 0x80));
    out.push_back(static_cast<uint8_t>(v));
  }
  void put_string(const std::string& s) {
    const size_t n = std::min<size_t>(s.size(), 255);
    put<uint8_t>(static_cast<uint8_t>(n));
    out.insert(out.end(), s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n));
  }
  std::vector<uint8_t> out;
};

class Reader {
 public:
  Reader(const uint8_t* d, size_t n) : data(d), size(n) {}
  uint64_t get(int bytes) {
    need(bytes);
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(data[pos + i]) << (8 * i);
    pos += bytes;
    return v;
  }
  float get_f32() {
    const uint32_t u = static_cast<uint32_t>(get(4));
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  // A LEB128 number in its shortest form (no trailing zero group), at most
  // `max`; `what` names it in the error.
  uint64_t get_varint(uint64_t max, const char* what) {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const uint8_t b = static_cast<uint8_t>(get(1));
      if (shift == 63 && b > 1) corrupt_field(what);  // past 64 bits
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) {
        if (b == 0 && shift > 0) corrupt_field(what);  // not the shortest form
        break;
      }
    }
    if (v > max) corrupt_field(what);
    return v;
  }
  [[noreturn]] static void corrupt_field(const char* what) {
    corrupt(std::string("invalid ") + what + " in the header");
  }
  std::string get_string() {
    const size_t n = get(1);
    need(n);
    std::string s(reinterpret_cast<const char*>(data + pos), n);
    pos += n;
    return s;
  }
  void need(size_t n) const {
    if (size - pos < n) throw Error(ErrorCode::kTruncated, "truncated archive: the header is incomplete");
  }
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
};

// Header flag bits, neural method only: each a ModelConfig switch from the
// version that introduced it; before that version the bit is reserved and
// the switch reads as 0 (the older arithmetic). Bits 0-15 are the u16 at
// offset 6, bits 16 and up the compact block's last field (more flags,
// version 21 on: bit 16 + k is its bit k).
struct FlagBit {
  uint64_t bit;
  uint8_t since;
  int model::ModelConfig::*field;
};
constexpr int kFlagsAtOffset6 = 16;
constexpr uint64_t kMoreFlagsMax = (uint64_t{1} << (64 - kFlagsAtOffset6)) - 1;
constexpr FlagBit kFlagBits[] = {
    {1, 4, &model::ModelConfig::train_lag},      // before: the step path used the latest weights
    {2, 5, &model::ModelConfig::flat_train},     // before: Adam and the clipping tensor by tensor
    {4, 6, &model::ModelConfig::step_kernels},   // before: the step path on LibTorch's operators
    {8, 7, &model::ModelConfig::train_kernels},  // before: the training step on LibTorch's autograd
    {16, 9, &model::ModelConfig::cuda_step_kernels},  // before: a CUDA step path on LibTorch's operators
    {32, 10, &model::ModelConfig::cuda_train_kernels},  // before: CUDA training on LibTorch's autograd
    {64, 10, &model::ModelConfig::block_norm},          // before: the clip's norm as one dot8
    {128, 12, &model::ModelConfig::stream_contexts},    // before: no context model keyed by the stream
    {256, 13, &model::ModelConfig::class_contexts},     // before: no character classes
    {512, 14, &model::ModelConfig::own_rates},          // before: one rate for the first mixing layer
    {1024, 15, &model::ModelConfig::one_sided},         // before: no one-sided inputs, one layer-2 vector
    {2048, 16, &model::ModelConfig::nibble_groups},     // before: every bit's slot hashed apart
    {4096, 18, &model::ModelConfig::text_contexts},     // before: no text contexts
    {8192, 19, &model::ModelConfig::table_shapes},      // before: all hashed tables alike
    {16384, 20, &model::ModelConfig::long_matches},     // before: 6-byte matches, ended by a miss
    {32768, 20, &model::ModelConfig::scope_context},    // before: no scope context
    {uint64_t{1} << 16, 21, &model::ModelConfig::more_runs},      // before: three run maps
    {uint64_t{1} << 17, 21, &model::ModelConfig::word_indirect},  // before: no word's indirect context
    {uint64_t{1} << 18, 22, &model::ModelConfig::mixer_selectors},  // before: coarser mixer sets
    {uint64_t{1} << 19, 23, &model::ModelConfig::layer2_inputs},    // before: layer 2 weighs layer 1 only
    {uint64_t{1} << 20, 24, &model::ModelConfig::shape_contexts},   // before: no shape context, two layer-2 views
};

// The neural method's block before its strings, versions 1 to 16: every
// field at a fixed offset and width.
void write_fixed_block(const Header& h, Writer& w) {
  const model::ModelConfig& m = h.model;
  w.put<uint8_t>(static_cast<uint8_t>(h.preset));
  w.put<uint8_t>(static_cast<uint8_t>(h.backend.device));
  w.put<uint16_t>(static_cast<uint16_t>(h.threads));
  w.put<uint32_t>(static_cast<uint32_t>(h.streams));
  w.put<uint32_t>(static_cast<uint32_t>(m.dim));
  w.put<uint16_t>(static_cast<uint16_t>(m.layers));
  w.put<int16_t>(static_cast<int16_t>(m.attn_layer));
  w.put<uint16_t>(static_cast<uint16_t>(m.boom_factor));
  // Version 1: reserved (0); versions 2 and later: the mix level.
  w.put<uint16_t>(static_cast<uint16_t>(h.version >= 2 ? m.mix : 0));
  w.put<uint32_t>(static_cast<uint32_t>(m.mem_len));
  w.put<uint32_t>(static_cast<uint32_t>(m.seg_len));
  w.put_f32(m.lr);
  w.put_f32(m.lr_decay);
  w.put_f32(m.beta1);
  w.put_f32(m.beta2);
  w.put_f32(m.adam_eps);
  w.put_f32(m.clip);
  w.put<uint64_t>(m.seed);
  w.put<uint64_t>(h.payload_size);
  // Version 8 on: the training groups; before, there is one.
  SHAZIP_ASSERT(h.version >= 8 || m.train_groups == 1);
  if (h.version >= 8) w.put<uint16_t>(static_cast<uint16_t>(m.train_groups));
}

// Returns the reserved bits it found set (version 1's mix field).
uint16_t read_fixed_block(Reader& r, Header& h) {
  model::ModelConfig& m = h.model;
  uint16_t reserved = 0;
  h.preset = static_cast<int>(r.get(1));
  h.backend.device = static_cast<model::DeviceKind>(r.get(1));
  h.threads = static_cast<int>(r.get(2));
  h.streams = static_cast<int>(r.get(4));
  m.dim = static_cast<int>(r.get(4));
  m.layers = static_cast<int>(r.get(2));
  m.attn_layer = static_cast<int16_t>(r.get(2));
  m.boom_factor = static_cast<int>(r.get(2));
  const uint16_t mix = static_cast<uint16_t>(r.get(2));
  if (h.version >= 2) {
    m.mix = mix;
    // Mix level 2 came with version 3, level 3 with version 11: in an older
    // archive they are damage.
    if ((h.version < 3 && mix > 1) || (h.version < 11 && mix > 2)) {
      corrupt("mix level " + std::to_string(mix) + " in a version " + std::to_string(h.version) + " archive");
    }
  } else {
    m.mix = 0;  // version 1 coded whole bytes with the SHA-RNN alone
    reserved = mix;
  }
  m.mem_len = static_cast<int>(r.get(4));
  m.seg_len = static_cast<int>(r.get(4));
  m.lr = r.get_f32();
  m.lr_decay = r.get_f32();
  m.beta1 = r.get_f32();
  m.beta2 = r.get_f32();
  m.adam_eps = r.get_f32();
  m.clip = r.get_f32();
  m.seed = r.get(8);
  h.payload_size = r.get(8);
  m.train_groups = h.version >= 8 ? static_cast<int>(r.get(2)) : 1;
  return reserved;
}

// Version 17 on, the compact block: the counts as LEB128 numbers, then a
// byte whose bits 0-6 say which of the optimizer's settings and the seed
// are written; those left out hold the values below, frozen with the format
// (shazip 0.20's presets all have them but presets 5-9's lr, which they
// write; a preset that changes one later writes it). Bit 7 is reserved.
// A written setting equal to its frozen value is refused, as a LEB128 number
// not in its shortest form: each header has one encoding.
struct DefaultFloat {
  float model::ModelConfig::*field;
  float value;
  const char* name;
};
constexpr DefaultFloat kDefaultFloats[] = {
    {&model::ModelConfig::lr, 3e-3f, "lr"},
    {&model::ModelConfig::lr_decay, 2e-4f, "lr decay"},
    {&model::ModelConfig::beta1, 0.0f, "beta1"},
    {&model::ModelConfig::beta2, 0.9999f, "beta2"},
    {&model::ModelConfig::adam_eps, 1e-6f, "eps"},
    {&model::ModelConfig::clip, 5.0f, "clip"},
};
constexpr uint64_t kDefaultSeed = 0x5a5a2019;
constexpr uint8_t kSeedWritten = 1 << 6;
constexpr uint8_t kReservedMaskBits = 0x80;

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

uint64_t count(int v) {
  SHAZIP_ASSERT(v >= 0);
  return static_cast<uint64_t>(v);
}

void write_compact_block(const Header& h, uint64_t flags, Writer& w) {
  const model::ModelConfig& m = h.model;
  w.put<uint8_t>(static_cast<uint8_t>(h.preset));
  w.put<uint8_t>(static_cast<uint8_t>(h.backend.device));
  w.put_varint(count(h.threads));
  w.put_varint(count(h.streams));
  w.put_varint(count(m.dim));
  w.put_varint(count(m.layers));
  w.put_varint(count(m.attn_layer + 1));  // 0: no attention
  w.put_varint(count(m.boom_factor));
  w.put_varint(count(m.mix));
  w.put_varint(count(m.mem_len));
  w.put_varint(count(m.seg_len));
  w.put_varint(count(m.train_groups));
  w.put_varint(h.payload_size);
  uint8_t written = m.seed != kDefaultSeed ? kSeedWritten : 0;
  for (size_t i = 0; i < std::size(kDefaultFloats); ++i) {
    if (!same_bits(m.*kDefaultFloats[i].field, kDefaultFloats[i].value)) written |= static_cast<uint8_t>(1u << i);
  }
  w.put<uint8_t>(written);
  for (size_t i = 0; i < std::size(kDefaultFloats); ++i) {
    if (written & (1u << i)) w.put_f32(m.*kDefaultFloats[i].field);
  }
  if (written & kSeedWritten) w.put_varint(m.seed);
  if (h.version >= kMoreFlagsSince) w.put_varint(flags >> kFlagsAtOffset6);
}

[[noreturn]] void left_out_written(const char* name) {
  corrupt(std::string("the header writes the ") + name + " at the value it leaves out");
}

// Returns the reserved bits it found set, and adds the more-flags field's
// bits to *flags. The bounds are the fixed block's field widths (a count
// that does not fit an int is damage either way).
uint16_t read_compact_block(Reader& r, Header& h, uint64_t* flags) {
  constexpr uint64_t kU16 = 0xFFFF, kInt = 0x7FFFFFFF;
  model::ModelConfig& m = h.model;
  h.preset = static_cast<int>(r.get(1));
  h.backend.device = static_cast<model::DeviceKind>(r.get(1));
  h.threads = static_cast<int>(r.get_varint(kU16, "thread count"));
  h.streams = static_cast<int>(r.get_varint(kInt, "stream count"));
  m.dim = static_cast<int>(r.get_varint(kInt, "model width"));
  m.layers = static_cast<int>(r.get_varint(kU16, "layer count"));
  m.attn_layer = static_cast<int>(r.get_varint(0x8000, "attention layer")) - 1;
  m.boom_factor = static_cast<int>(r.get_varint(kU16, "Boom factor"));
  m.mix = static_cast<int>(r.get_varint(kU16, "mix level"));
  m.mem_len = static_cast<int>(r.get_varint(kInt, "memory length"));
  m.seg_len = static_cast<int>(r.get_varint(kInt, "segment length"));
  m.train_groups = static_cast<int>(r.get_varint(kU16, "training group count"));
  h.payload_size = r.get_varint(UINT64_MAX, "payload size");
  const uint8_t written = static_cast<uint8_t>(r.get(1));
  for (size_t i = 0; i < std::size(kDefaultFloats); ++i) {
    const DefaultFloat& d = kDefaultFloats[i];
    const bool is_written = written & (1u << i);
    m.*d.field = is_written ? r.get_f32() : d.value;
    if (is_written && same_bits(m.*d.field, d.value)) left_out_written(d.name);
  }
  m.seed = written & kSeedWritten ? r.get_varint(UINT64_MAX, "seed") : kDefaultSeed;
  if ((written & kSeedWritten) && m.seed == kDefaultSeed) left_out_written("seed");
  if (h.version >= kMoreFlagsSince) *flags |= r.get_varint(kMoreFlagsMax, "more flags") << kFlagsAtOffset6;
  return written & kReservedMaskBits;
}

}  // namespace

const char* method_name(Method m) {
  switch (m) {
    case Method::kStored: return "stored";
    case Method::kNeural: return "neural";
  }
  return "?";
}

const char* device_name(model::DeviceKind d) {
  return d == model::DeviceKind::kCuda ? "cuda" : "cpu";
}

std::vector<uint8_t> write_header(const Header& h) {
  Writer w;
  w.out.assign(kMagic, kMagic + 4);
  w.put<uint8_t>(h.version);
  w.put<uint8_t>(static_cast<uint8_t>(h.method));
  // Flags, neural method only (kFlagBits); the rest are reserved.
  uint64_t flags = 0;
  if (h.method == Method::kNeural) {
    for (const FlagBit& f : kFlagBits) {
      if (h.version >= f.since && h.model.*f.field) flags |= f.bit;
    }
  }
  w.put<uint16_t>(static_cast<uint16_t>(flags));
  w.put<uint64_t>(h.original_size);
  w.put<uint32_t>(h.content_crc);
  if (h.method == Method::kNeural) {
    if (h.version >= kCompactHeaderSince) {
      write_compact_block(h, flags, w);
    } else {
      write_fixed_block(h, w);
    }
    w.put_string(h.backend.torch_version);
    w.put_string(h.backend.blas);
    w.put_string(h.backend.cpu_capability);
  }
  w.put<uint32_t>(crc32(w.out.data(), w.out.size()));
  return w.out;
}

Header parse_member_header(const uint8_t* data, size_t size, size_t* header_size) {
  if (size < 4 || std::memcmp(data, kMagic, 4) != 0) {
    throw Error(ErrorCode::kNotArchive, "not a shazip archive");
  }
  Reader r(data, size);
  r.pos = 4;
  Header h;
  h.version = static_cast<uint8_t>(r.get(1));
  if (h.version > kFormatVersion) {
    throw Error(ErrorCode::kVersion, "this archive is format version " + std::to_string(h.version) +
                                         " but this shazip reads only up to version " +
                                         std::to_string(kFormatVersion) + "; upgrade shazip");
  }
  if (h.version < kMinFormatVersion) {
    throw Error(ErrorCode::kVersion, "this archive is format version " + std::to_string(h.version) +
                                         ", which this shazip no longer reads");
  }
  const uint8_t method = static_cast<uint8_t>(r.get(1));
  uint64_t flags = r.get(2);
  h.original_size = r.get(8);
  h.content_crc = static_cast<uint32_t>(r.get(4));
  uint16_t reserved = 0;
  if (method == static_cast<uint8_t>(Method::kNeural)) {
    h.method = Method::kNeural;
    reserved = h.version >= kCompactHeaderSince ? read_compact_block(r, h, &flags) : read_fixed_block(r, h);
    for (const FlagBit& f : kFlagBits) {
      const bool known = h.version >= f.since;
      h.model.*f.field = known && (flags & f.bit) ? 1 : 0;
      if (known) flags &= ~f.bit;  // what stays set is reserved
    }
    h.backend.torch_version = r.get_string();
    h.backend.blas = r.get_string();
    h.backend.cpu_capability = r.get_string();
  } else if (method == static_cast<uint8_t>(Method::kStored)) {
    h.method = Method::kStored;
  } else {
    // An unknown method's header length is unknown, so its CRC cannot be
    // found: report the method itself.
    corrupt("unknown method " + std::to_string(method));
  }
  const size_t covered = r.pos;
  const uint32_t stored_crc = static_cast<uint32_t>(r.get(4));
  if (stored_crc != crc32(data, covered)) corrupt("header checksum mismatch");
  if (flags != 0 || reserved != 0) corrupt("reserved header bits are set");
  *header_size = r.pos;
  return h;
}

Header parse_member(const uint8_t* data, size_t size, size_t* header_size, uint64_t* archive_size) {
  const Header h = parse_member_header(data, size, header_size);
  const uint64_t body = size - *header_size;
  if (h.method == Method::kStored) {
    if (body < h.original_size) throw Error(ErrorCode::kTruncated, "truncated archive: stored data ends early");
    *archive_size = *header_size + h.original_size;
    return h;
  }
  if (static_cast<uint8_t>(h.backend.device) > 1) corrupt("unknown device kind");
  const std::string why = h.model.validate();
  if (!why.empty()) corrupt("invalid model parameters (" + why + ")");
  if (h.threads < 1 || h.streams < 1 || (h.original_size > 0 && static_cast<uint64_t>(h.streams) > h.original_size)) {
    corrupt("invalid stream or thread count");
  }
  if (h.preset > model::kMaxPreset) corrupt("invalid preset");
  if (h.model.train_groups > h.streams) corrupt("more training groups than streams");
  if (h.model.mix > 0 && static_cast<uint64_t>(h.streams) > model::kMaxMixStreams) corrupt("too many streams");
  // Every coded byte costs at least -log2(1 - 255 / 2^24) ~ 2.2e-5 bits, which
  // bounds the original size by the payload's; a header claiming more is
  // damaged (and would make the decoder allocate absurd amounts).
  if (h.original_size / 45000 > (h.payload_size + 9) * 8) corrupt("original size is impossible for the coded size");
  if (body < h.payload_size) throw Error(ErrorCode::kTruncated, "truncated archive: the coded data ends early");
  *archive_size = *header_size + h.payload_size;
  return h;
}

Header parse_header(const uint8_t* data, size_t size, size_t* header_size) {
  uint64_t archive_size = 0;
  const Header h = parse_member(data, size, header_size, &archive_size);
  if (archive_size < size) {
    corrupt(h.method == Method::kStored ? "trailing data after the stored content"
                                        : "trailing data after the coded data");
  }
  return h;
}

std::vector<Member> split_members(const uint8_t* data, size_t size) {
  std::vector<Member> members;
  uint64_t pos = 0;
  do {
    if (pos > 0 && (size - pos < 4 || std::memcmp(data + pos, kMagic, 4) != 0)) {
      corrupt("trailing data after the archive");
    }
    Member m;
    m.offset = pos;
    m.header = parse_member(data + pos, size - pos, &m.header_size, &m.size);
    members.push_back(m);
    pos += m.size;
  } while (pos < size);
  return members;
}

uint64_t content_size(const std::vector<Member>& members) {
  uint64_t total = 0;
  for (const Member& m : members) total += m.header.original_size;
  return total;
}

}  // namespace shazip
