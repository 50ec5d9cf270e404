// Archive header tests: exact round trips, and every single-bit flip and every
// truncation of a header ends in a specific error, never in a crash or in a
// header that parses.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <tuple>
#include <vector>

#include "src/container.h"
#include "src/crc32.h"
#include "src/errors.h"

using namespace shazip;

namespace {

Header neural_header(uint8_t version = kFormatVersion) {
  Header h;
  h.version = version;
  h.method = Method::kNeural;
  h.original_size = 123456;
  h.content_crc = 0xDEADBEEF;
  h.preset = 3;
  h.model = model::preset(3).model;
  // As shazip codes 123456 bytes: mix level 2, which versions 3 on all know.
  h.model.mix = model::mix_for_input(h.model.mix, h.original_size);
  h.model.seed = 0x0123456789ABCDEFull;
  h.streams = 16;
  h.threads = 2;
  h.backend.device = model::DeviceKind::kCpu;
  h.backend.torch_version = "1.13.0";
  h.backend.blas = "OpenBLAS 0.3.21 core=Haswell";
  h.backend.cpu_capability = "AVX2";
  h.payload_size = 40000;
  return h;
}

std::vector<uint8_t> with_body(const Header& h, size_t body) {
  std::vector<uint8_t> a = write_header(h);
  a.resize(a.size() + body, 0x5A);
  return a;
}

// Rewrites the header CRC (the last 4 bytes of the header) after an edit.
void reseal(std::vector<uint8_t>& a, size_t header_size) {
  const uint32_t crc = crc32(a.data(), header_size - 4);
  for (int i = 0; i < 4; ++i) a[header_size - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
}

// Parses and returns the error code, or -1 if it parsed.
int parse_code(const std::vector<uint8_t>& a, size_t size) {
  size_t header_size = 0;
  try {
    parse_header(a.data(), size, &header_size);
    return -1;
  } catch (const Error& e) {
    return static_cast<int>(e.code());
  }
}

// Checks that the header of `a` is refused with `code` and a message that
// says `says`.
void check_refused(const std::vector<uint8_t>& a, ErrorCode code, const std::string& says) {
  size_t header_size = 0;
  try {
    parse_header(a.data(), a.size(), &header_size);
    FAIL("parsed a header that says " << says);
  } catch (const Error& err) {
    CHECK(err.code() == code);
    CHECK(std::string(err.what()).find(says) != std::string::npos);
  }
}

// ... for a reserved bit it sets.
void check_reserved_bit_refused(const std::vector<uint8_t>& a) {
  check_refused(a, ErrorCode::kCorrupt, "reserved header bits");
}

}  // namespace

TEST_CASE("CRC-32 matches the standard check value", "[container]") {
  const char* s = "123456789";
  CHECK(crc32(reinterpret_cast<const uint8_t*>(s), 9) == 0xCBF43926u);
  CHECK(crc32(reinterpret_cast<const uint8_t*>(s) + 4, 5, crc32(reinterpret_cast<const uint8_t*>(s), 4)) ==
        0xCBF43926u);
  CHECK(crc32(nullptr, 0) == 0);
}

TEST_CASE("headers round-trip every field", "[container]") {
  // Format 17's compact block and the fixed one of the versions before it.
  for (const uint8_t version : {kFormatVersion, uint8_t{16}}) {
    INFO("version " << int{version});
    const Header h = neural_header(version);
    const auto a = with_body(h, h.payload_size);
    size_t header_size = 0;
    const Header p = parse_header(a.data(), a.size(), &header_size);
    CHECK(header_size == a.size() - h.payload_size);
    const size_t strings = 3 + h.backend.torch_version.size() + h.backend.blas.size() + h.backend.cpu_capability.size();
    if (version >= kCompactHeaderSince) {
      // 20 fixed bytes; preset and device; the counts as LEB128 numbers:
      // threads 2, streams 16, layers 1, attention layer 0 (+1), Boom factor
      // 4, mix level 2, T 8, groups 1 a byte each, d 128 and M 128 two bytes
      // each, the payload's 40000 three; the byte that says what follows; the
      // seed, not the default, in 9 (lr, its decay and Adam's settings are the
      // defaults: left out); from version 21 the more flags (bits 16 and up,
      // one byte); the strings; the header CRC.
      CHECK(header_size == 20 + 2 + (8 + 2 * 2 + 3) + 1 + 9 + 1 + strings + 4);
    } else {
      CHECK(header_size == 94 + strings);
    }
    CHECK(p.version == version);
    CHECK(p.method == Method::kNeural);
    CHECK(p.original_size == h.original_size);
    CHECK(p.content_crc == h.content_crc);
    CHECK(p.preset == 3);
    CHECK(p.model.dim == h.model.dim);
    CHECK(p.model.layers == h.model.layers);
    CHECK(p.model.attn_layer == h.model.attn_layer);
    CHECK(p.model.boom_factor == h.model.boom_factor);
    CHECK(p.model.mem_len == h.model.mem_len);
    CHECK(p.model.seg_len == h.model.seg_len);
    CHECK(p.model.lr == h.model.lr);
    CHECK(p.model.lr_decay == h.model.lr_decay);
    CHECK(p.model.beta1 == h.model.beta1);
    CHECK(p.model.beta2 == h.model.beta2);
    CHECK(p.model.adam_eps == h.model.adam_eps);
    CHECK(p.model.clip == h.model.clip);
    CHECK(p.model.seed == h.model.seed);
    CHECK(p.model.mix == h.model.mix);
    CHECK(p.model.train_lag == h.model.train_lag);
    CHECK(p.model.flat_train == h.model.flat_train);
    CHECK(p.model.step_kernels == h.model.step_kernels);
    CHECK(p.model.train_kernels == h.model.train_kernels);
    CHECK(p.model.train_groups == h.model.train_groups);
    CHECK(p.streams == 16);
    CHECK(p.threads == 2);
    CHECK(p.backend.torch_version == "1.13.0");
    CHECK(p.backend.blas == h.backend.blas);
    CHECK(p.backend.cpu_capability == "AVX2");
    CHECK(p.payload_size == h.payload_size);
  }

  size_t header_size = 0;
  Header stored;
  stored.original_size = 3;
  stored.content_crc = 7;
  const auto s = with_body(stored, 3);
  CHECK(write_header(stored).size() == kStoredHeaderSize);
  const Header q = parse_header(s.data(), s.size(), &header_size);
  CHECK(header_size == kStoredHeaderSize);
  CHECK(q.method == Method::kStored);
  CHECK(q.original_size == 3);
  CHECK(q.content_crc == 7);
}

TEST_CASE("every single-bit flip of a header is rejected with a specific error", "[container]") {
  // Format 17's compact neural block, format 16's fixed one, and a stored header.
  for (const Header& h : {neural_header(), neural_header(16), Header{}}) {
    const size_t body = h.method == Method::kNeural ? h.payload_size : h.original_size;
    const auto good = with_body(h, body);
    const size_t header_size = good.size() - body;
    std::set<int> seen;
    for (size_t byte = 0; byte < header_size; ++byte) {
      for (int bit = 0; bit < 8; ++bit) {
        auto bad = good;
        bad[byte] ^= static_cast<uint8_t>(1u << bit);
        const int code = parse_code(bad, bad.size());
        INFO("byte " << byte << " bit " << bit);
        REQUIRE(code != -1);
        if (byte < 4) {
          CHECK(code == static_cast<int>(ErrorCode::kNotArchive));
        } else if (byte == 4) {
          // Another version this build reads: the header checksum catches it.
          const int version = bad[4];
          const bool readable = version >= kMinFormatVersion && version <= kFormatVersion;
          CHECK(code == static_cast<int>(readable ? ErrorCode::kCorrupt : ErrorCode::kVersion));
        } else {
          CHECK((code == static_cast<int>(ErrorCode::kCorrupt) || code == static_cast<int>(ErrorCode::kTruncated)));
        }
        seen.insert(code);
      }
    }
    CHECK(seen.count(static_cast<int>(ErrorCode::kCorrupt)) == 1);
  }
}

TEST_CASE("every truncation of an archive is reported", "[container]") {
  for (const uint8_t version : {kFormatVersion, uint8_t{16}}) {
    INFO("version " << int{version});
    const Header h = neural_header(version);
    const auto good = with_body(h, h.payload_size);
    const size_t header_size = good.size() - h.payload_size;
    for (size_t cut = 0; cut < good.size(); cut += cut < header_size + 8 ? 1 : 997) {
      INFO("cut at " << cut);
      const int code = parse_code(good, cut);
      if (cut < 4) {
        CHECK(code == static_cast<int>(ErrorCode::kNotArchive));
      } else {
        CHECK(code == static_cast<int>(ErrorCode::kTruncated));
      }
    }
    CHECK(parse_code(good, good.size()) == -1);
    auto longer = good;
    longer.push_back(0);
    CHECK(parse_code(longer, longer.size()) == static_cast<int>(ErrorCode::kCorrupt));
  }
}

TEST_CASE("fields a header may not hold are rejected", "[container]") {
  auto expect_corrupt = [](Header h) {
    const auto a = with_body(h, h.payload_size);
    CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  };
  Header h = neural_header();
  h.model.dim = 7;
  expect_corrupt(h);
  h = neural_header();
  h.model.attn_layer = 5;
  expect_corrupt(h);
  h = neural_header();
  h.streams = 0;
  expect_corrupt(h);
  h = neural_header();
  h.threads = 0;
  expect_corrupt(h);
  h = neural_header();
  h.original_size = uint64_t{1} << 62;  // impossible for a 40 KB payload
  expect_corrupt(h);
  h = neural_header();
  h.model.lr = -1;
  expect_corrupt(h);
  h = neural_header();
  h.backend.device = static_cast<model::DeviceKind>(9);
  expect_corrupt(h);

  // A newer version is refused with the sentence users need.
  auto a = with_body(neural_header(), neural_header().payload_size);
  a[4] = kFormatVersion + 1;
  check_refused(a, ErrorCode::kVersion, "reads only up to version " + std::to_string(kFormatVersion));
}

TEST_CASE("the mix level: versions 2 and later store it, version 1 means whole-byte coding", "[container]") {
  size_t header_size = 0;
  Header h = neural_header();
  for (int mix = 0; mix <= 3; ++mix) {
    h.model.mix = mix;
    const auto a = with_body(h, h.payload_size);
    CHECK(parse_header(a.data(), a.size(), &header_size).model.mix == mix);
  }
  h.model.mix = 4;  // no such level
  auto a = with_body(h, h.payload_size);
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  // Level 2 came with version 3, level 3 with version 11: an older archive
  // that names them is damaged.
  struct Case {
    int version, mix;
    bool valid;
  };
  for (const Case c : {Case{10, 3, false}, Case{10, 2, true}, Case{2, 2, false}, Case{2, 1, true}}) {
    CAPTURE(c.version, c.mix);
    h.version = static_cast<uint8_t>(c.version);
    h.model.mix = c.mix;
    a = with_body(h, h.payload_size);
    if (c.valid) {
      CHECK(parse_header(a.data(), a.size(), &header_size).model.mix == c.mix);
    } else {
      CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
    }
  }
  // The mixing stage takes at most 2^24 streams; the SHA-RNN alone has no such bound.
  h = neural_header();
  h.original_size = 100000000;
  h.payload_size = 1000000;
  h.streams = (1 << 24) + 1;
  a = with_body(h, h.payload_size);
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  h.model.mix = 0;
  a = with_body(h, h.payload_size);
  CHECK(parse_header(a.data(), a.size(), &header_size).streams == (1 << 24) + 1);

  // A version-1 header (as written by shazip 0.1) has no mix field: the two
  // bytes after the Boom factor are reserved zeros and the archive is
  // decoded byte-wise with the SHA-RNN alone.
  h = neural_header();
  h.version = 1;
  a = with_body(h, h.payload_size);
  const Header v1 = parse_header(a.data(), a.size(), &header_size);
  CHECK(v1.version == 1);
  CHECK(v1.model.mix == 0);
  constexpr size_t kMixOffset = 38;  // docs/FORMAT.md, "Neural header"
  CHECK(a[kMixOffset] == 0);
  a[kMixOffset] = 1;  // a set reserved field, with a valid header CRC
  reseal(a, header_size);
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  // The same bytes in version 2 are the mix level.
  a[4] = 2;
  reseal(a, header_size);
  CHECK(parse_header(a.data(), a.size(), &header_size).model.mix == 1);
}

TEST_CASE("header flag bits 0 to 15: each model switch round-trips and is reserved before its version",
          "[container]") {
  size_t header_size = 0;
  Header h = neural_header();
  // Every combination of the sixteen switches, bit k of `flags` the k-th.
  for (int flags = 0; flags < 65536; ++flags) {
    const int lag = flags & 1, flat = flags >> 1 & 1, kernels = flags >> 2 & 1, train = flags >> 3 & 1;
    const int cuda = flags >> 4 & 1, cuda_train = flags >> 5 & 1, norm = flags >> 6 & 1, streams = flags >> 7 & 1;
    const int classes = flags >> 8 & 1, own_rates = flags >> 9 & 1, one_sided = flags >> 10 & 1;
    const int nibble_groups = flags >> 11 & 1, text = flags >> 12 & 1, shapes = flags >> 13 & 1;
    const int long_matches = flags >> 14 & 1, scope = flags >> 15 & 1;
    if (train && !(flat && kernels)) continue;  // the training kernels need both
    h.model.train_lag = lag;
    h.model.flat_train = flat;
    h.model.step_kernels = kernels;
    h.model.train_kernels = train;
    h.model.cuda_step_kernels = cuda;
    h.model.cuda_train_kernels = cuda_train;
    h.model.block_norm = norm;
    h.model.stream_contexts = streams;
    h.model.class_contexts = classes;
    h.model.own_rates = own_rates;
    h.model.one_sided = one_sided;
    h.model.nibble_groups = nibble_groups;
    h.model.text_contexts = text;
    h.model.table_shapes = shapes;
    h.model.long_matches = long_matches;
    h.model.scope_context = scope;
    const auto a = with_body(h, h.payload_size);
    CHECK(a[6] == (flags & 255));  // the flags' low byte, bits 0 to 7
    CHECK(a[7] == flags >> 8);     // bits 8 to 15
    const Header p = parse_header(a.data(), a.size(), &header_size);
    CHECK(p.model.train_lag == lag);
    CHECK(p.model.flat_train == flat);
    CHECK(p.model.step_kernels == kernels);
    CHECK(p.model.train_kernels == train);
    CHECK(p.model.cuda_step_kernels == cuda);
    CHECK(p.model.cuda_train_kernels == cuda_train);
    CHECK(p.model.block_norm == norm);
    CHECK(p.model.stream_contexts == streams);
    CHECK(p.model.class_contexts == classes);
    CHECK(p.model.own_rates == own_rates);
    CHECK(p.model.one_sided == one_sided);
    CHECK(p.model.nibble_groups == nibble_groups);
    CHECK(p.model.text_contexts == text);
    CHECK(p.model.table_shapes == shapes);
    CHECK(p.model.long_matches == long_matches);
    CHECK(p.model.scope_context == scope);
  }
  h.model.cuda_step_kernels = 0;
  h.model.cuda_train_kernels = 0;
  h.model.block_norm = 0;
  {
    // The training kernels without the step kernels are no model shazip makes.
    h.model.train_kernels = 1;
    auto a = with_body(h, h.payload_size);
    a[6] = 1 | 2 | 8;
    reseal(a, header_size);
    CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  }
  // Each version before 20 writes the switches it knows and reads the next
  // one's bit as reserved, the switch as off: version 19 has all but the
  // long matches and the scope context (bits 14 and 15), version 18 all but
  // the table shapes too (bit 13), version 17 (and 16) all but the text contexts too
  // (bit 12), version 15 all but the nibble groups too (bit
  // 11), version 14 all but the one-sided inputs too (bit 10), version 13 all
  // but the own rates too (bit 9), version 12 all but the class contexts too
  // (bit 8, in the flags' high byte), version 11 (and 10) all but the stream
  // contexts too, version 9 has the CUDA step kernels but neither the CUDA
  // training kernels nor the block norm (both version 10's), version 8 (and
  // 7) has the training kernels but not the CUDA step kernels, 6 the step
  // kernels but not the training kernels, 5 flat training but not the step
  // kernels, 4 the lag but not flat training.
  h.model.train_lag = 1;
  h.model.flat_train = 1;
  h.model.step_kernels = 1;
  h.model.train_kernels = 1;
  h.model.cuda_step_kernels = 1;
  h.model.cuda_train_kernels = 1;
  h.model.block_norm = 1;
  h.model.stream_contexts = 1;
  h.model.class_contexts = 1;
  h.model.own_rates = 1;
  h.model.one_sided = 1;
  h.model.nibble_groups = 1;
  h.model.text_contexts = 1;
  h.model.table_shapes = 1;
  h.model.long_matches = 1;
  h.model.scope_context = 1;
  for (const auto& [version, high, next] : {std::tuple{19, 63, &model::ModelConfig::long_matches},
                                            std::tuple{18, 31, &model::ModelConfig::table_shapes},
                                            std::tuple{17, 15, &model::ModelConfig::text_contexts},
                                            std::tuple{16, 15, &model::ModelConfig::text_contexts},
                                            std::tuple{15, 7, &model::ModelConfig::nibble_groups},
                                            std::tuple{14, 3, &model::ModelConfig::one_sided},
                                            std::tuple{13, 1, &model::ModelConfig::own_rates},
                                            std::tuple{12, 0, &model::ModelConfig::class_contexts}}) {
    INFO("version " << version);
    h.version = static_cast<uint8_t>(version);
    auto a = with_body(h, h.payload_size);
    CHECK(a[6] == 255);
    CHECK(a[7] == high);
    CHECK(parse_header(a.data(), a.size(), &header_size).model.*next == 0);
    a[7] = static_cast<uint8_t>(high << 1 | 1);  // the next switch's bit as well
    reseal(a, header_size);
    CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  }
  struct Older {
    uint8_t version;
    uint8_t written;                 // the flags byte it writes
    uint8_t with_next;               // the same with the next switch's bit
    int model::ModelConfig::*next;   // the switch it does not know
  };
  for (const Older& o : {Older{11, 127, 255, &model::ModelConfig::stream_contexts},
                         Older{10, 127, 255, &model::ModelConfig::stream_contexts},
                         Older{9, 31, 63, &model::ModelConfig::cuda_train_kernels},
                         Older{9, 31, 95, &model::ModelConfig::block_norm},
                         Older{8, 15, 31, &model::ModelConfig::cuda_step_kernels},
                         Older{6, 7, 15, &model::ModelConfig::train_kernels},
                         Older{5, 3, 7, &model::ModelConfig::step_kernels},
                         Older{4, 1, 3, &model::ModelConfig::flat_train}}) {
    INFO("version " << int{o.version});
    h.version = o.version;
    auto a = with_body(h, h.payload_size);
    CHECK(a[6] == o.written);
    CHECK(parse_header(a.data(), a.size(), &header_size).model.*o.next == 0);
    a[6] = o.with_next;
    reseal(a, header_size);
    CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  }
  // Older versions have no lag: the step path always used the latest weights,
  // and the flag bit is reserved there.
  h.version = 3;
  h.model.train_lag = 1;
  auto a = with_body(h, h.payload_size);
  CHECK(a[6] == 0);
  CHECK(parse_header(a.data(), a.size(), &header_size).model.train_lag == 0);
  a[6] = 1;
  reseal(a, a.size() - h.payload_size);
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  // Version 19 reads bit 15 (the scope context) as reserved too, and a
  // stored archive has no lag. (Version 20 uses all 16 bits.)
  h = neural_header();
  h.version = 19;
  a = with_body(h, h.payload_size);
  CHECK(parse_header(a.data(), a.size(), &header_size).model.scope_context == 0);
  a[7] |= 128;  // bit 15
  reseal(a, a.size() - h.payload_size);
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  Header stored;
  stored.original_size = 3;
  a = with_body(stored, 3);
  a[6] = 1;
  reseal(a, kStoredHeaderSize);
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
}

TEST_CASE("header flag bits 16 and up: the compact block's more flags from version 21", "[container]") {
  size_t header_size = 0;
  Header h = neural_header();
  const size_t strings = 3 + h.backend.torch_version.size() + h.backend.blas.size() + h.backend.cpu_capability.size();
  // The more flags are the block's last field: a LEB128 number before the
  // strings, bit k the header's flag bit 16 + k.
  const auto more_at = [&](const std::vector<uint8_t>& a) { return a.size() - h.payload_size - 4 - strings - 1; };
  for (int more = 0; more < 32; ++more) {
    INFO("more flags " << more);
    h.model.more_runs = more & 1;
    h.model.word_indirect = more >> 1 & 1;
    h.model.mixer_selectors = more >> 2 & 1;
    h.model.layer2_inputs = more >> 3 & 1;
    h.model.shape_contexts = more >> 4 & 1;
    const auto a = with_body(h, h.payload_size);
    CHECK(a[more_at(a)] == more);
    const Header p = parse_header(a.data(), a.size(), &header_size);
    CHECK(p.model.more_runs == (more & 1));
    CHECK(p.model.word_indirect == (more >> 1 & 1));
    CHECK(p.model.mixer_selectors == (more >> 2 & 1));
    CHECK(p.model.layer2_inputs == (more >> 3 & 1));
    CHECK(p.model.shape_contexts == (more >> 4 & 1));
    CHECK(p.model.scope_context == h.model.scope_context);  // bit 15 beside them, at offset 6
  }
  // Bits 21 and up are reserved; a needless zero group, or a number past
  // the 48 bits that the field can hold, is damage.
  const auto good = with_body(h, h.payload_size);
  const size_t at = more_at(good), hs = good.size() - h.payload_size;
  auto edit = [&](std::vector<uint8_t> bytes) {
    std::vector<uint8_t> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(at));
    b.insert(b.end(), bytes.begin(), bytes.end());
    b.insert(b.end(), good.begin() + static_cast<std::ptrdiff_t>(at + 1), good.end());
    reseal(b, hs + bytes.size() - 1);
    return b;
  };
  CHECK(parse_code(edit({31}), good.size()) == -1);  // the edit itself leaves a valid header
  for (uint8_t reserved : {32, 64}) {
    INFO("more flags " << int{reserved});
    check_reserved_bit_refused(edit({static_cast<uint8_t>(31 | reserved)}));
  }
  auto a = edit({0x9F, 0x00});  // 31, in two bytes
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  a = edit({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40});  // bit 48 of the field, 64 of the flags: past it
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  check_reserved_bit_refused(edit({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20}));  // bit 47 (flag 63): within it
  // Version 21 has bits 16 and 17 only: it writes 3 with every switch on,
  // reads the mixer selectors as off, and bit 18 as reserved; version 22
  // has bits 16 to 18: it writes 7, reads the layer-2 inputs as off, and
  // bit 19 as reserved; version 23 has bits 16 to 19: it writes 15, reads
  // the shape contexts as off, and bit 20 as reserved.
  struct Older {
    uint8_t version;
    int written;
    int model::ModelConfig::*newer;  // the switch it reads as off
    int model::ModelConfig::*newest_known;
  };
  for (const Older o : {Older{21, 3, &model::ModelConfig::mixer_selectors, &model::ModelConfig::word_indirect},
                        Older{22, 7, &model::ModelConfig::layer2_inputs, &model::ModelConfig::mixer_selectors},
                        Older{23, 15, &model::ModelConfig::shape_contexts, &model::ModelConfig::layer2_inputs}}) {
    INFO("version " << int{o.version});
    h.version = o.version;
    const auto older = with_body(h, h.payload_size);
    CHECK(older[more_at(older)] == o.written);
    CHECK(parse_header(older.data(), older.size(), &header_size).model.*o.newer == 0);
    CHECK(parse_header(older.data(), older.size(), &header_size).model.*o.newest_known == 1);
    auto edited = older;
    edited[more_at(older)] = static_cast<uint8_t>(o.written * 2 + 1);  // the next bit set too
    reseal(edited, older.size() - h.payload_size);
    check_reserved_bit_refused(edited);
  }
  // Version 20 has no such field: its block is a byte shorter and reads
  // the four switches as off (as do the fixed blocks before version 17).
  for (const uint8_t version : {uint8_t{20}, uint8_t{16}}) {
    INFO("version " << int{version});
    h.version = version;
    const auto old = with_body(h, h.payload_size);
    if (version == 20) CHECK(old.size() == good.size() - 1);
    const Header p = parse_header(old.data(), old.size(), &header_size);
    CHECK(p.model.more_runs == 0);
    CHECK(p.model.word_indirect == 0);
    CHECK(p.model.mixer_selectors == 0);
    CHECK(p.model.layer2_inputs == 0);
    CHECK(p.model.shape_contexts == 0);
  }
}

TEST_CASE("the training groups: a field from version 8, one group before", "[container]") {
  size_t header_size = 0;
  Header h = neural_header();  // 16 streams
  // Format 17 writes the count as a LEB128 number; none, more than 256, or
  // more groups than streams are damage there too.
  for (int groups : {4, 16, 0, 257, 17}) {
    INFO("groups " << groups);
    h.model.train_groups = groups;
    const auto c = with_body(h, h.payload_size);
    if (groups >= 1 && groups <= 16) {
      CHECK(parse_header(c.data(), c.size(), &header_size).model.train_groups == groups);
    } else {
      CHECK(parse_code(c, c.size()) == static_cast<int>(ErrorCode::kCorrupt));
    }
  }
  // Versions 8 to 16: two bytes after the payload size.
  h.version = 16;
  h.model.train_groups = 4;
  auto a = with_body(h, h.payload_size);
  const size_t at = 88;
  CHECK((a[at] | a[at + 1] << 8) == 4);
  CHECK(parse_header(a.data(), a.size(), &header_size).model.train_groups == 4);
  // None, more than 256, or more groups than streams: damage.
  for (int bad : {0, 257, 17}) {
    INFO("groups " << bad);
    a[at] = static_cast<uint8_t>(bad);
    a[at + 1] = static_cast<uint8_t>(bad >> 8);
    reseal(a, header_size);
    CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  }
  // Version 7 has no such field (its header is 2 bytes shorter) and one group.
  h.model.train_groups = 1;
  h.version = 7;
  a = with_body(h, h.payload_size);
  CHECK(parse_header(a.data(), a.size(), &header_size).model.train_groups == 1);
  Header v8 = neural_header();
  v8.version = 8;
  CHECK(header_size == write_header(v8).size() - 2);
}

TEST_CASE("format 17's compact block: LEB128 counts and the usual settings left out", "[container]") {
  size_t header_size = 0;
  // The default preset's header for an 11 KB input with this VM's strings:
  // 76 bytes in format 20 where format 16 wrote 131, what a 4 KB text's
  // archive saves against zstd's (benchmarks/RESULTS.md, "Compact
  // headers"); 77 from format 21, whose more flags take a byte.
  Header h = neural_header();
  h.preset = 2;
  h.model = model::preset(2).model;
  h.streams = 1;
  h.threads = 1;
  h.original_size = 11150;
  h.payload_size = 2196;
  h.backend.blas = "OpenBLAS 0.3.21 core=Zen";
  h.backend.cpu_capability = "auto";
  CHECK(write_header(h).size() == 77);
  h.version = 20;
  CHECK(write_header(h).size() == 76);
  h.version = 16;
  CHECK(write_header(h).size() == 131);
  h.version = kFormatVersion;
  const size_t base = write_header(h).size();
  constexpr size_t kMaskAt = 20 + 2 + 10 + 2;  // after the ten one-byte counts and the payload's two
  CHECK(write_header(h)[kMaskAt] == 0);         // every optimizer setting and the seed left out

  // Each setting that differs from format 17's value is written (4 bytes,
  // the seed as a LEB128 number) and reads back; the others read as the
  // frozen values. -0 is not 0: values are compared bit for bit.
  float model::ModelConfig::*floats[] = {&model::ModelConfig::lr,    &model::ModelConfig::lr_decay,
                                         &model::ModelConfig::beta1, &model::ModelConfig::beta2,
                                         &model::ModelConfig::adam_eps, &model::ModelConfig::clip};
  for (int i = 0; i < 6; ++i) {
    INFO("setting " << i);
    Header e = h;
    e.model.*floats[i] = i == 2 ? -0.0f : 0.125f;
    const auto a = with_body(e, e.payload_size);
    CHECK(a.size() - e.payload_size == base + 4);
    CHECK(a[kMaskAt] == 1 << i);
    const Header p = parse_header(a.data(), a.size(), &header_size);
    for (int j = 0; j < 6; ++j) CHECK(std::signbit(p.model.*floats[j]) == std::signbit(e.model.*floats[j]));
    for (int j = 0; j < 6; ++j) CHECK(p.model.*floats[j] == e.model.*floats[j]);
    CHECK(p.model.seed == h.model.seed);
  }
  Header e = h;
  e.model.seed = 300;  // two LEB128 bytes
  auto a = with_body(e, e.payload_size);
  CHECK(a.size() - e.payload_size == base + 2);
  CHECK(a[kMaskAt] == 64);
  CHECK(parse_header(a.data(), a.size(), &header_size).model.seed == 300);
  e.model.seed = ~uint64_t{0};  // ten
  a = with_body(e, e.payload_size);
  CHECK(a.size() - e.payload_size == base + 10);
  CHECK(parse_header(a.data(), a.size(), &header_size).model.seed == ~uint64_t{0});

  // Large counts round-trip: 2^24 streams, a 2^40-byte payload, no attention.
  e = h;
  e.streams = 1 << 24;
  e.original_size = uint64_t{1} << 42;
  e.payload_size = (uint64_t{1} << 40) + 5;
  e.model.attn_layer = -1;
  e.model.mem_len = 0;
  std::vector<uint8_t> head = write_header(e);
  const Header big = parse_member_header(head.data(), head.size(), &header_size);
  CHECK(header_size == head.size());
  CHECK(big.streams == 1 << 24);
  CHECK(big.payload_size == e.payload_size);
  CHECK(big.model.attn_layer == -1);

  // Damage the writer never makes: a number past its field's bound, one
  // with a needless zero group, one past 64 bits, the reserved bit 7 of
  // the settings byte. Each is refused even with a valid header CRC.
  e = h;
  e.threads = 65536;  // format 16's field had two bytes
  a = with_body(e, e.payload_size);
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  const auto good = with_body(h, h.payload_size);
  const size_t hs = good.size() - h.payload_size;
  auto edit = [&](size_t at, std::vector<uint8_t> bytes, size_t replaced) {
    std::vector<uint8_t> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(at));
    b.insert(b.end(), bytes.begin(), bytes.end());
    b.insert(b.end(), good.begin() + static_cast<std::ptrdiff_t>(at + replaced), good.end());
    reseal(b, hs + bytes.size() - replaced);
    return b;
  };
  constexpr size_t kThreadsAt = 22;
  CHECK(good[kThreadsAt] == 1);
  a = edit(kThreadsAt, {0x81, 0x00}, 1);  // 1, in two bytes
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  a = edit(kThreadsAt, {0x01}, 1);  // the edit itself leaves a valid header
  CHECK(parse_code(a, a.size()) == -1);
  a = edit(kMaskAt - 2, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02}, 2);  // a 65-bit payload size
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  // A setting written at its frozen value, or the seed: each header has one
  // encoding (tests/fuzz/fuzz_header re-serialises what parses).
  a = edit(kMaskAt, {0x02, 0x17, 0xB7, 0x51, 0x39}, 1);  // lr decay 2e-4
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  a = edit(kMaskAt, {0x02, 0x18, 0xB7, 0x51, 0x39}, 1);  // one ulp above it
  CHECK(parse_header(a.data(), a.size(), &header_size).model.lr_decay > 2e-4f);
  a = edit(kMaskAt, {0x40, 0x99, 0xC0, 0xE8, 0xD2, 0x05}, 1);  // seed 0x5A5A2019
  CHECK(parse_code(a, a.size()) == static_cast<int>(ErrorCode::kCorrupt));
  a = edit(kMaskAt, {0x40, 0x9A, 0xC0, 0xE8, 0xD2, 0x05}, 1);  // and one more
  CHECK(parse_header(a.data(), a.size(), &header_size).model.seed == 0x5A5A201Aull);
  check_reserved_bit_refused(edit(kMaskAt, {0x80}, 1));
}

TEST_CASE("several archives back to back split into their members", "[container]") {
  Header stored;
  stored.original_size = 5;
  const std::vector<uint8_t> a = with_body(neural_header(), neural_header().payload_size);
  const std::vector<uint8_t> b = with_body(stored, 5);
  std::vector<uint8_t> file = a;
  file.insert(file.end(), b.begin(), b.end());
  file.insert(file.end(), a.begin(), a.end());

  const std::vector<Member> members = split_members(file.data(), file.size());
  REQUIRE(members.size() == 3);
  CHECK(members[0].offset == 0);
  CHECK(members[0].size == a.size());
  CHECK(members[0].header.method == Method::kNeural);
  CHECK(members[1].offset == a.size());
  CHECK(members[1].size == b.size());
  CHECK(members[1].header.method == Method::kStored);
  CHECK(members[1].header_size == kStoredHeaderSize);
  CHECK(members[2].offset == a.size() + b.size());
  CHECK(members[2].header.payload_size == neural_header().payload_size);
  CHECK(split_members(a.data(), a.size()).size() == 1);
  // One archive's parser still wants exactly one archive.
  CHECK(parse_code(file, file.size()) == static_cast<int>(ErrorCode::kCorrupt));

  auto split_code = [](const std::vector<uint8_t>& f) {
    try {
      split_members(f.data(), f.size());
      return -1;
    } catch (const Error& e) {
      return static_cast<int>(e.code());
    }
  };
  // Whatever follows an archive must be another archive, whole.
  for (size_t junk = 1; junk <= 6; ++junk) {
    auto bad = file;
    bad.insert(bad.end(), junk, 0x8A);  // the magic's first byte, repeated
    CHECK(split_code(bad) == static_cast<int>(ErrorCode::kCorrupt));
  }
  auto cut = file;
  cut.resize(file.size() - 1);
  CHECK(split_code(cut) == static_cast<int>(ErrorCode::kTruncated));
  cut.resize(a.size() + b.size() + 10);  // the third header cut short
  CHECK(split_code(cut) == static_cast<int>(ErrorCode::kTruncated));
  auto newer = file;
  newer[a.size() + 4] = kFormatVersion + 1;  // the second archive from a newer shazip
  CHECK(split_code(newer) == static_cast<int>(ErrorCode::kVersion));
  CHECK(split_code({}) == static_cast<int>(ErrorCode::kNotArchive));
}
