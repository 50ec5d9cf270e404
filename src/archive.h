// Whole-archive compression and decompression of in-memory buffers: chooses
// the method, runs the driver, writes and checks the header and the checksum.
#pragma once

#include <cstdint>
#include <vector>

#include "src/container.h"
#include "src/driver.h"

namespace shazip {

struct CompressOptions {
  int preset = model::kDefaultPreset;
  model::RuntimeOptions runtime;
  ProgressFn progress;  // optional: bytes done, model bits so far
};

struct CompressReport {
  Header header;
  CodingStats stats;     // of the neural pass
  bool fell_back = false;  // neural output was not smaller: stored instead
};

// Returns the complete archive. Never larger than n + kStoredHeaderSize.
std::vector<uint8_t> compress_buffer(const uint8_t* data, uint64_t n, const CompressOptions& options,
                                     CompressReport* report = nullptr);

// Decodes a complete archive, or several back to back (their contents
// concatenated). Throws Error (not an archive, truncated, corrupt, checksum
// mismatch, newer version, backend it cannot reproduce).
std::vector<uint8_t> decompress_buffer(const uint8_t* archive, size_t size,
                                       const ProgressFn& progress = {});

// The same for the archives of a file that split_members() has read (every
// header checked before anything is decoded).
std::vector<uint8_t> decompress_members(const uint8_t* file, const std::vector<Member>& members,
                                        const ProgressFn& progress = {});

// The same for one archive whose header parse_header() or split_members()
// has read; `body` is what follows the header (its length checked there).
std::vector<uint8_t> decompress_body(const Header& h, const uint8_t* body,
                                     const ProgressFn& progress = {});

}  // namespace shazip
