// Compress/decompress driver: runs the predictor over B parallel streams and
// the range coder over its tables. Knows nothing of files or headers.
//
// Stream layout: the input of n bytes is cut into B contiguous pieces of
// ceil(n / B) bytes (the last ones shorter, possibly empty). Position i of
// every stream is predicted in one model step; the bytes are coded in stream
// order 0..B-1 and the predictor is fed 0 for streams that have ended. With
// mixing on (ModelConfig::mix), each byte is coded as 8 bits through
// model::ContextMixer, which is fed the SHA-RNN's table of that byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "coder/range_coder.h"
#include "model/config.h"
#include "model/predictor.h"

namespace shazip {

struct CodingParams {
  model::ModelConfig model;
  int streams = 1;  // B actually used (see choose_streams)
  model::RuntimeOptions runtime;
  // Encoder: run the model ahead of the coder on a thread of its own (the
  // decoder cannot: its model observes what it decodes). The archive is the
  // same either way; see lookahead_pays().
  bool lookahead = false;
};

// Whether the encoder's lookahead thread makes it faster: when the model runs
// on a GPU, or when this process may use a core for it besides the model's
// threads (and the training thread's). On two cores with the training thread
// running, the three threads share two cores: preset 2 encoded 9-11% slower,
// preset 1 between 13% slower and 5% faster (benchmarks/RESULTS.md, "Training
// beside coding"). `sharers`: how many codings run at once in this process
// (shazip -j), each wanting cores of its own.
bool lookahead_pays(const CodingParams& params, int sharers = 1);

// The cores this process may run on (its CPU affinity: taskset, cgroup
// cpusets), at least 1.
int usable_cores();

// Progress callback: bytes coded so far, model code length so far in bits.
using ProgressFn = std::function<void(uint64_t done, double bits)>;

struct CodingStats {
  uint64_t coded_bytes = 0;  // range coder output
  double model_bits = 0;     // code length in bits under the integer probabilities the
                             // coder used (the mixing stage's, or the SHA-RNN's table)
  double nn_bits = 0;        // the SHA-RNN's own: sum of -log2 p(byte), float probabilities
  double seconds = 0;
  double predict_seconds = 0;  // of which in the model's step path
  double train_seconds = 0;    // of which in training steps
};

// Streams to use for n bytes when the preset allows at most `max_streams`:
// every stream gets at least kMinStreamBytes so that short inputs are coded
// mostly sequentially and long ones use the full batch. On calgary/paper1
// (53 KB) 13 streams give 3.07 bits per byte, one stream 2.78, at a quarter of
// the speed (benchmarks/RESULTS.md); 32 KB keeps inputs of 512 KB and more at
// 16 streams.
constexpr uint64_t kMinStreamBytes = 32768;
int choose_streams(uint64_t n, int max_streams, uint64_t min_stream_bytes = kMinStreamBytes);

// Bytes per stream when n bytes are cut into `streams` contiguous streams:
// stream b holds bytes [b * len, min((b + 1) * len, n)), so the last ones may
// be shorter or empty. Part of the format (docs/FORMAT.md); benchmarks and
// fuzzers that replay the driver cut alike through this.
constexpr uint64_t stream_length(uint64_t n, int streams) {
  return (n + static_cast<uint64_t>(streams) - 1) / static_cast<uint64_t>(streams);
}

// Codes data[0..n) into sink. Calls progress about every `progress_every`
// bytes (0: never).
CodingStats encode_neural(const uint8_t* data, uint64_t n, const CodingParams& params,
                          coder::ByteSink& sink, const ProgressFn& progress = {},
                          uint64_t progress_every = 1 << 12);

// Decodes n bytes from payload into out (n bytes of room). The payload must be
// complete (the container checks its size); throws Error(kCorrupt) when it
// does not belong to these parameters (the content checksum catches what
// slips through).
CodingStats decode_neural(const uint8_t* payload, size_t size, uint64_t n,
                          const CodingParams& params, uint8_t* out,
                          const ProgressFn& progress = {}, uint64_t progress_every = 1 << 12);

}  // namespace shazip
