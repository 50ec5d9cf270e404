// Whole-archive compression and decompression of in-memory buffers: chooses
// the method, runs the driver, writes and checks the header and the checksum.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "src/container.h"
#include "src/driver.h"

namespace shazip {

// Inputs that the model does not shrink at all (already compressed,
// encrypted or random data) are stored. Coding all of such an input first
// takes as long as text (some 20 s a megabyte on two cores: 100 MB half an
// hour), so the encoder checks once, when it has coded
// give_up_point(B) bytes: if the model's code length of those bytes is not
// below 8 bits a byte (it has saved nothing), it stops and stores the
// input. With B streams those bytes are the start of each stream, B evenly
// spaced places of the input, so text anywhere in it shows. Text is below 8
// bits a byte from its first kilobytes, and so is data that the model
// shrinks by a fraction of a percent (a JPEG: 7.97); compressed archives
// stay at 8.00-8.04 (benchmarks/RESULTS.md, "Incompressible inputs stored
// early"). Only the encoder decides; the archive is an ordinary stored one.
constexpr uint64_t kGiveUpBytes = 128 << 10;
constexpr uint64_t give_up_point(int streams) {
  return std::max<uint64_t>(kGiveUpBytes, uint64_t{4096} * static_cast<uint64_t>(std::max(streams, 1)));
}

// Most such inputs need not wait for the model: before it is built, the
// bytes that the check would see are coded by the mixing stage alone at
// level 1 (no SHA-RNN, one stream, tables for those bytes only: a fraction
// of a second and some tens of MB, where the model's check takes seconds
// and the preset's full memory). If that comes to no fewer bytes than it
// was given, the input is stored at once ("stored at a glance"); otherwise
// the model codes it and makes its own check as above. The glance is taken
// only where those bytes' order-0 entropy is at least kGlanceEntropy bits a
// byte: below it an order-0 model alone saves some percent, and the model
// would code the input (the bytes of text lie at 4.5-5.5, of binaries at up
// to 6.6, of compressed data at 7.99-8).
constexpr double kGlanceEntropy = 7.9;
// `looked_at`: where not null, set to how many bytes the glance took (when it
// was taken).
bool stored_at_a_glance(const uint8_t* data, uint64_t n, int preset, uint64_t* looked_at = nullptr);

struct CompressOptions {
  int preset = model::kDefaultPreset;
  model::RuntimeOptions runtime;
  ProgressFn progress;  // optional: bytes done, model bits so far
  int sharers = 1;      // codings running at once in this process (see lookahead_pays)
  bool give_up = true;  // store early an input that the model does not shrink (kGiveUpBytes)
  bool glance = true;   // with give_up: first stored_at_a_glance(), before the model
  // Called by compress_buffer() before it builds the model, unless the input
  // was stored at a glance (shazip: refuses there what the memory cannot hold).
  std::function<void()> before_model;
};

struct CompressReport {
  Header header;             // of the (first) archive
  CodingStats stats;         // of the neural pass (compress_blocks: summed; seconds: wall time)
  uint64_t gave_up_at = 0;   // > 0: stored after the model saved nothing over this many
                             // bytes, the rest not coded (compress_blocks: summed)
  bool at_a_glance = false;  // ... the context models alone, at a glance, before the
                             // model was built (compress_blocks: every such block)
  size_t blocks = 1;         // archives written (compress_blocks)
  size_t stored_blocks = 0;  // of which stored because the model did not shrink them
  // Every block stored so (an empty input's archive is stored without trying).
  bool fell_back() const { return stored_blocks == blocks; }
};

// Returns the complete archive. Never larger than n + kStoredHeaderSize.
std::vector<uint8_t> compress_buffer(const uint8_t* data, uint64_t n, const CompressOptions& options,
                                     CompressReport* report = nullptr);

// Parallel blocks (shazip -j): data[0..n) cut into blocks of block_size bytes
// (the last one shorter), each compressed by compress_buffer() into an
// archive of its own, up to `jobs` at a time; the archives back to back. The
// result depends on block_size, not on jobs; an input of one block gives
// compress_buffer()'s archive. Each block's model starts from nothing, so the
// result is a little larger than one archive of the whole (benchmarks/
// RESULTS.md, "Parallel blocks"). Jobs run one at a time on a GPU. The
// progress callback is called from one thread at a time, with the sums over
// all blocks. block_count(): how many archives that makes (1 for n = 0).
constexpr uint64_t block_count(uint64_t n, uint64_t block_size) {
  return n <= block_size ? 1 : (n - 1) / block_size + 1;
}
std::vector<uint8_t> compress_blocks(const uint8_t* data, uint64_t n, uint64_t block_size, int jobs,
                                     const CompressOptions& options, CompressReport* report = nullptr);

// About the memory compress_buffer() takes for n bytes at this preset, and
// decoding the archive with this header takes (0 when stored), input and
// output aside: the mixing stage's tables (model::ContextMixer::memory_bytes)
// and the model's weights with their copies, gradients and optimizer state.
// For planning parallel jobs.
uint64_t compress_memory(int preset, uint64_t n);
uint64_t decode_memory(const Header& h);

// How many of `jobs` codings of `per_job` bytes each fit in `available`
// bytes: jobs, or fewer, at least 1.
int jobs_within_memory(int jobs, uint64_t per_job, uint64_t available);

// Decodes a complete archive, or several back to back (their contents
// concatenated). Throws Error (not an archive, truncated, corrupt, checksum
// mismatch, newer version, backend it cannot reproduce).
std::vector<uint8_t> decompress_buffer(const uint8_t* archive, size_t size,
                                       const ProgressFn& progress = {});

// The device an archive decodes on: the one it was made on, except that an
// archive of portable arithmetic made on a GPU (format 10) decodes on the CPU
// where this process has no GPU (the same bits either way).
model::DeviceKind decode_device(const Header& h);

// The same for the archives of a file that split_members() has read (every
// header checked before anything is decoded). jobs > 1: up to that many
// archives decode at once when each is stored or portable_arithmetic() and
// decodes on the CPU (the others depend on process-wide LibTorch settings or
// share the GPU, so they decode one at a time); of several failing archives,
// the first one's error is thrown. The progress callback is called from one
// thread at a time.
std::vector<uint8_t> decompress_members(const uint8_t* file, const std::vector<Member>& members,
                                        const ProgressFn& progress = {}, int jobs = 1);

}  // namespace shazip
