// The shazip archive container: header layout, parsing and validation
// (docs/FORMAT.md is the normative description; keep the two in step).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/predictor.h"

namespace shazip {

// Bumped on every change of the format or of the model's arithmetic (an old
// archive would otherwise decode to garbage). History in docs/FORMAT.md.
constexpr uint8_t kFormatVersion = 24;
// Oldest version this build decodes.
constexpr uint8_t kMinFormatVersion = 1;
// The first version whose neural header is compact: counts as LEB128
// numbers, the optimizer's usual settings and seed left out (docs/FORMAT.md,
// "Neural method block"). Versions before it have every field at a fixed
// offset.
constexpr uint8_t kCompactHeaderSince = 17;
// The first version whose compact block ends with a second flags field
// (flag bits 16 and up, LEB128): version 20 used the 16 bits at offset 6.
constexpr uint8_t kMoreFlagsSince = 21;

// 0x8A 'S' 'H' 'Z': the high first byte is not ASCII or UTF-8 lead text, so
// text files are never taken for archives and 7-bit channels are detected
// (PNG's reasoning); the letters name the format in a hex dump.
constexpr uint8_t kMagic[4] = {0x8A, 'S', 'H', 'Z'};

// Size of the fixed part of every header and of the whole stored-method
// header: the most an archive can exceed its input by.
constexpr size_t kFixedHeaderSize = 20;
constexpr size_t kStoredHeaderSize = kFixedHeaderSize + 4;

enum class Method : uint8_t { kStored = 0, kNeural = 1 };

// What the archive records about the arithmetic that produced it.
struct Backend {
  model::DeviceKind device = model::DeviceKind::kCpu;
  std::string torch_version;
  std::string blas;
  std::string cpu_capability;
};

struct Header {
  uint8_t version = kFormatVersion;
  Method method = Method::kStored;
  uint64_t original_size = 0;
  uint32_t content_crc = 0;
  // Neural method only:
  int preset = 0;  // informational; 0 when not made from a preset
  model::ModelConfig model;
  int streams = 1;
  int threads = 1;
  Backend backend;
  uint64_t payload_size = 0;
};

// Serialises a header (including its trailing header CRC).
std::vector<uint8_t> write_header(const Header& h);

// Parses and validates the header of the archive that is data[0..size).
// Returns the header and stores its size in *header_size. Throws Error with
// kNotArchive, kTruncated, kCorrupt (trailing data included) or kVersion.
Header parse_header(const uint8_t* data, size_t size, size_t* header_size);

// The header alone of the archive at the start of data[0..size): its fields,
// header checksum and reserved bits are checked, not what follows (the body,
// the model's parameters); *header_size is where the body starts. For finding
// archives in a file without reading their bodies. Throws as parse_header.
Header parse_member_header(const uint8_t* data, size_t size, size_t* header_size);

// The same for an archive at the start of data[0..size) that other archives
// may follow: also stores the archive's whole size (header and body) in
// *archive_size, and leaves what follows it to the caller.
Header parse_member(const uint8_t* data, size_t size, size_t* header_size, uint64_t* archive_size);

// A file may hold several archives back to back (docs/FORMAT.md, "Several
// archives in one file"), as gzip members or zstd frames: its content is
// theirs, concatenated.
struct Member {
  Header header;
  uint64_t offset = 0;      // where the archive starts in the file
  size_t header_size = 0;
  uint64_t size = 0;        // header and body
};
// Every archive of data[0..size), in order, their headers checked. Throws as
// parse_header; anything after an archive that is not another archive is
// kCorrupt ("trailing data after the archive").
std::vector<Member> split_members(const uint8_t* data, size_t size);
// The bytes of content the archives decode to, in all.
uint64_t content_size(const std::vector<Member>& members);

// Whether the archive's arithmetic is all shazip's own code (format 7 on the
// CPU, with the step and the training kernels): then it decodes on any
// machine, whatever the BLAS, ATen's CPU capability, LibTorch's version or
// the thread count.
bool portable_arithmetic(const Header& h);

// Empty if this process can reproduce the arithmetic the archive was made
// with, else a sentence naming what it needs.
std::string backend_mismatch(const Header& h, const model::BackendInfo& here);

// The backend of this process as it would be recorded for `device`.
Backend current_backend(model::DeviceKind device);

const char* method_name(Method m);
const char* device_name(model::DeviceKind d);

}  // namespace shazip
