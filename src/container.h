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
constexpr uint8_t kFormatVersion = 4;
// Oldest version this build decodes.
constexpr uint8_t kMinFormatVersion = 1;

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

// Parses and validates the header at the start of `data`. Returns the header
// and stores its size in *header_size. Throws Error with kNotArchive,
// kTruncated, kCorrupt or kVersion.
Header parse_header(const uint8_t* data, size_t size, size_t* header_size);

// Empty if this process can reproduce the arithmetic the archive was made
// with, else a sentence naming what it needs.
std::string backend_mismatch(const Backend& recorded, const model::BackendInfo& here);

// The backend of this process as it would be recorded for `device`.
Backend current_backend(model::DeviceKind device);

const char* method_name(Method m);
const char* device_name(model::DeviceKind d);

}  // namespace shazip
