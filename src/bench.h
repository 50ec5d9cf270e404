// Benchmark mode (`shazip -b`): shazip at the chosen presets against zstd at
// levels 3, 19 and 22 (--ultra --long), in process through libzstd, with a
// round-trip check for every compressor, and the learning curve of the model.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/predictor.h"

namespace shazip {

// The model's arithmetic (ModelConfig::flops_per_byte() times the bytes
// coded) per second of the whole compression and of the step path alone
// (predict), and the GPU's FP32 peak where the model ran on one (0: unknown or
// CPU). All 0 when the model did not run.
struct ModelRates {
  double model_gflops = 0, step_gflops = 0, peak_gflops = 0;
  // The step path's share of the GPU's peak, in percent (0 without a peak).
  double peak_percent() const { return peak_gflops > 0 ? 100 * step_gflops / peak_gflops : 0; }
};
ModelRates model_rates(const model::ModelConfig& config, uint64_t n, double seconds, double predict_seconds,
                       model::DeviceKind device);

struct BenchRow {
  std::string file;        // as given
  std::string compressor;  // "shazip -3", "zstd -19", "zstd --ultra -22 --long"
  uint64_t original = 0;
  uint64_t compressed = 0;  // whole archive / zstd frame
  double compress_kbs = 0, decompress_kbs = 0;  // KB/s (1 KB = 1024 bytes)
  bool round_trip = false;                      // decompressed == original
  // shazip only (0 for zstd):
  uint64_t header = 0;     // archive header bytes
  double model_bits = 0;   // code length under the coder's probabilities
  double nn_bits = 0;      // the SHA-RNN's own cross-entropy, in bits
  bool stored = false;     // fell back to the stored method
  bool gave_up = false;    // stored early (kGiveUpBytes): no model or SHA-RNN code length
  ModelRates rates;        // the model's arithmetic rates
  // Learning curve (shazip only): (bytes coded, model bits so far).
  std::vector<std::pair<uint64_t, double>> curve;

  double ratio() const { return compressed ? static_cast<double>(original) / compressed : 0; }
  // Per-character figures: none for an empty input (the reports say "-" or null).
  bool has_bpc() const { return original > 0; }
  double bpc() const { return has_bpc() ? 8.0 * compressed / original : 0; }
  bool is_shazip() const { return compressor.rfind("shazip", 0) == 0; }
  bool has_model_bits() const { return is_shazip() && !gave_up && has_bpc(); }
};

struct BenchOptions {
  std::vector<int> presets;  // shazip presets to run
  model::RuntimeOptions runtime;
  bool zstd = true;          // also the zstd rows
  bool give_up = true;       // CompressOptions::give_up
  bool glance = true;        // CompressOptions::glance
  // Called with a line of progress text (empty: clear), e.g. for a terminal;
  // `milestone` marks a line that a display limiting its rate should still
  // show: the start of a step (a preset's compression or decompression, a
  // zstd row) or its end (100%), not the percentages between.
  std::function<void(const std::string& line, bool milestone)> status;
};

// Runs every compressor on one file's contents. Throws Error if a round trip
// fails to decode at all (a mismatch is reported in the row, not thrown).
std::vector<BenchRow> bench_buffer(const std::string& name, const std::vector<uint8_t>& data,
                                   const BenchOptions& options);

// zstd in process, with the same parameters as the zstd CLI at `level`
// (checksum on; `ultra_long`: --ultra --long, a 128 MiB window).
std::vector<uint8_t> zstd_compress(const std::vector<uint8_t>& data, int level, bool ultra_long);
std::vector<uint8_t> zstd_decompress(const std::vector<uint8_t>& frame);

// Output formats.
std::string bench_table(const std::vector<BenchRow>& rows);      // aligned, for a terminal
std::string bench_json(const std::vector<BenchRow>& rows);       // an array of objects
std::string bench_csv(const std::vector<BenchRow>& rows);        // header line + rows
std::string bench_markdown(const std::vector<BenchRow>& rows);   // for benchmarks/RESULTS.md
// Learning-curve plot of the rows of one file: running and windowed bits per
// character of each shazip row over the bytes coded, zstd rows as reference
// lines.
std::string bench_svg(const std::vector<BenchRow>& rows);

}  // namespace shazip
