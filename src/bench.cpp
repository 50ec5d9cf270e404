#include "src/bench.h"

#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "src/archive.h"
#include "src/errors.h"
#include "src/svg_plot.h"

namespace shazip {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs fn until at least `min_seconds` have passed (at least once) and returns
// the mean seconds per run: zstd takes milliseconds on these inputs.
template <class Fn>
double time_repeated(Fn fn, double min_seconds = 0.25) {
  const auto t0 = Clock::now();
  int runs = 0;
  do {
    fn();
    ++runs;
  } while (seconds_since(t0) < min_seconds);
  return seconds_since(t0) / runs;
}

double kbs(uint64_t n, double seconds) { return seconds > 0 ? n / 1024.0 / seconds : 0; }

void check_zstd(size_t code, const char* what) {
  if (ZSTD_isError(code)) throw Error(ErrorCode::kIo, std::string("zstd ") + what + ": " + ZSTD_getErrorName(code));
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "model (step)" GFLOP/s with the share of a GPU's peak; "-" where the model
// ran too little to measure (stored early).
std::string model_rates_text(const ModelRates& m) {
  if (m.model_gflops <= 0) return "-";
  return fmt("%.2f", m.model_gflops) + " (" + fmt("%.2f", m.step_gflops) +
         (m.peak_gflops > 0 ? "; " + fmt("%.3g", m.peak_percent()) + "% of peak" : "") + ")";
}

}  // namespace

std::vector<uint8_t> zstd_compress(const std::vector<uint8_t>& data, int level, bool ultra_long) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (!cctx) throw std::bad_alloc();
  std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
  size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);  // the CLI's default
  if (!ZSTD_isError(r) && ultra_long) {
    r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 27);  // --long's default
  }
  if (!ZSTD_isError(r)) r = ZSTD_compress2(cctx, out.data(), out.size(), data.data(), data.size());
  ZSTD_freeCCtx(cctx);
  check_zstd(r, "compression");
  out.resize(r);
  return out;
}

std::vector<uint8_t> zstd_decompress(const std::vector<uint8_t>& frame) {
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    throw Error(ErrorCode::kCorrupt, "zstd frame without a content size");
  }
  std::vector<uint8_t> out(size);
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  if (!dctx) throw std::bad_alloc();
  size_t r = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27);
  if (!ZSTD_isError(r)) r = ZSTD_decompressDCtx(dctx, out.data(), out.size(), frame.data(), frame.size());
  ZSTD_freeDCtx(dctx);
  check_zstd(r, "decompression");
  out.resize(r);
  return out;
}

ModelRates model_rates(const model::ModelConfig& config, uint64_t n, double seconds, double predict_seconds,
                       model::DeviceKind device) {
  ModelRates r;
  if (predict_seconds <= 0 || seconds <= 0) return r;
  const model::ModelConfig::Flops flops = config.flops_per_byte();
  r.model_gflops = flops.total() * static_cast<double>(n) / seconds / 1e9;
  r.step_gflops = flops.predict * static_cast<double>(n) / predict_seconds / 1e9;
  if (device == model::DeviceKind::kCuda) r.peak_gflops = model::backend_info().gpu_peak_gflops;
  return r;
}

std::vector<BenchRow> bench_buffer(const std::string& name, const std::vector<uint8_t>& data,
                                   const BenchOptions& options) {
  std::vector<BenchRow> rows;
  auto status = [&](const std::string& s) {
    if (options.status) options.status(s, true);
  };
  for (int preset : options.presets) {
    BenchRow row;
    row.file = name;
    row.compressor = "shazip -" + std::to_string(preset);
    row.original = data.size();
    CompressOptions co;
    co.preset = preset;
    co.runtime = options.runtime;
    co.give_up = options.give_up;
    co.glance = options.glance;
    const uint64_t n = data.size();
    const auto t_start = Clock::now();
    co.progress = [&](uint64_t done, double bits) {
      row.curve.emplace_back(done, bits);
      if (options.status && n) {
        const double el = seconds_since(t_start);
        options.status(base_name(name) + ": " + row.compressor + " compressing " + fmt("%.1f%%", 100.0 * done / n) +
                           "  " + fmt("%.3f bpc", done ? bits / done : 0.0) + "  " + fmt("%.1f KB/s", kbs(done, el)),
                       done >= n);
      }
    };
    CompressReport report;
    const auto t0 = Clock::now();
    const std::vector<uint8_t> archive = compress_buffer(data.data(), n, co, &report);
    const double compress_seconds = seconds_since(t0);
    row.compress_kbs = kbs(n, compress_seconds);
    row.rates = model_rates(model::preset(preset).model, n, compress_seconds, report.stats.predict_seconds,
                            options.runtime.device);
    row.compressed = archive.size();
    row.stored = report.fell_back();
    row.gave_up = report.gave_up_at > 0;
    row.header = write_header(report.header).size();
    row.model_bits = report.stats.model_bits;
    row.nn_bits = report.stats.nn_bits;
    status(base_name(name) + ": " + row.compressor + " decompressing");
    const auto t1 = Clock::now();
    const std::vector<uint8_t> back = decompress_buffer(archive.data(), archive.size(), [&](uint64_t done, double) {
      if (options.status && n) {
        options.status(base_name(name) + ": " + row.compressor + " decompressing " + fmt("%.1f%%", 100.0 * done / n),
                       done >= n);
      }
    });
    row.decompress_kbs = kbs(n, seconds_since(t1));
    row.round_trip = back == data;
    rows.push_back(std::move(row));
  }
  if (options.zstd) {
    struct Level { int level; bool ultra_long; const char* name; };
    for (const Level& l : {Level{3, false, "zstd -3"}, Level{19, false, "zstd -19"},
                           Level{22, true, "zstd --ultra -22 --long"}}) {
      status(base_name(name) + ": " + l.name);
      BenchRow row;
      row.file = name;
      row.compressor = l.name;
      row.original = data.size();
      std::vector<uint8_t> frame, back;
      row.compress_kbs = kbs(data.size(), time_repeated([&] { frame = zstd_compress(data, l.level, l.ultra_long); }));
      row.compressed = frame.size();
      row.decompress_kbs = kbs(data.size(), time_repeated([&] { back = zstd_decompress(frame); }));
      row.round_trip = back == data;
      rows.push_back(std::move(row));
    }
  }
  status("");
  return rows;
}

std::string bench_table(const std::vector<BenchRow>& rows) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-20s %-24s %11s %11s %7s %7s %9s %9s %10s %10s %5s\n", "file", "compressor",
                "bytes", "compressed", "ratio", "bpc", "model bpc", "SHA-RNN", "comp KB/s", "dec KB/s", "check");
  out += line;
  for (const BenchRow& r : rows) {
    const double n = r.original ? static_cast<double>(r.original) : 1;
    const std::string model = r.has_model_bits() ? fmt("%.4f", r.model_bits / n) : "-";
    const std::string nn = r.has_model_bits() ? fmt("%.4f", r.nn_bits / n) : "-";
    const std::string bpc = r.has_bpc() ? fmt("%.4f", r.bpc()) : "-";
    std::snprintf(line, sizeof line, "%-20s %-24s %11llu %11llu %7.3f %7s %9s %9s %10.1f %10.1f %5s\n",
                  base_name(r.file).c_str(), (r.compressor + (r.stored ? " (stored)" : "")).c_str(),
                  static_cast<unsigned long long>(r.original), static_cast<unsigned long long>(r.compressed),
                  r.ratio(), bpc.c_str(), model.c_str(), nn.c_str(), r.compress_kbs, r.decompress_kbs,
                  r.round_trip ? "OK" : "FAIL");
    out += line;
  }
  out +=
      "bpc: archive bits per character. model bpc: the code length under the coder's probabilities\n"
      "(the archive is that plus the header and the coder's flush). SHA-RNN: the neural model's own\n"
      "cross-entropy, before mixing with context models.\n";
  if (std::any_of(rows.begin(), rows.end(), [](const BenchRow& r) { return r.gave_up; })) {
    out += "(stored) with \"-\": stored early, the context models (at a glance) or the model having saved\n"
           "nothing over the input's first part (the rest not coded).\n";
  }
  for (const BenchRow& r : rows) {
    const ModelRates& m = r.rates;
    if (!r.is_shazip() || m.model_gflops <= 0) continue;
    out += base_name(r.file) + ", " + r.compressor + ": the model's arithmetic " + fmt("%.2f", m.model_gflops) +
           " GFLOP/s over the compression, " + fmt("%.2f", m.step_gflops) + " GFLOP/s in the step path";
    if (m.peak_gflops > 0) {
      out += " (" + fmt("%.3g", m.peak_percent()) + "% of the GPU's " + fmt("%.1f", m.peak_gflops / 1000) +
             " TFLOP/s FP32 peak)";
    }
    out += "\n";
  }
  return out;
}

std::string bench_json(const std::vector<BenchRow>& rows) {
  std::string out = "[\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const BenchRow& r = rows[i];
    const double n = r.original ? static_cast<double>(r.original) : 1;
    out += "  {\"file\": " + json_string(r.file) + ", \"compressor\": " + json_string(r.compressor) +
           ", \"original_bytes\": " + std::to_string(r.original) +
           ", \"compressed_bytes\": " + std::to_string(r.compressed) + ", \"ratio\": " + fmt("%.6f", r.ratio()) +
           ", \"bits_per_char\": " + (r.has_bpc() ? fmt("%.6f", r.bpc()) : "null") +
           ", \"compress_kb_per_s\": " + fmt("%.3f", r.compress_kbs) +
           ", \"decompress_kb_per_s\": " + fmt("%.3f", r.decompress_kbs) +
           ", \"round_trip\": " + (r.round_trip ? "true" : "false");
    if (r.is_shazip()) {
      out += ", \"header_bytes\": " + std::to_string(r.header) + ", \"stored\": " + (r.stored ? "true" : "false") +
             ", \"gave_up\": " + (r.gave_up ? "true" : "false") +
             ", \"model_bits_per_char\": " + (r.has_model_bits() ? fmt("%.6f", r.model_bits / n) : "null") +
             ", \"sha_rnn_bits_per_char\": " + (r.has_model_bits() ? fmt("%.6f", r.nn_bits / n) : "null") +
             ", \"coder_overhead_bytes\": " +
             (r.gave_up ? "null" : fmt("%.1f", static_cast<double>(r.compressed) - r.header - r.model_bits / 8)) +
             ", \"model_gflop_per_s\": " + fmt("%.4f", r.rates.model_gflops) +
             ", \"step_gflop_per_s\": " + fmt("%.4f", r.rates.step_gflops) +
             ", \"gpu_peak_gflop_per_s\": " + fmt("%.1f", r.rates.peak_gflops) + ", \"curve\": [";
      for (size_t j = 0; j < r.curve.size(); ++j) {
        out += (j ? ", [" : "[") + std::to_string(r.curve[j].first) + ", " + fmt("%.1f", r.curve[j].second) + "]";
      }
      out += "]";
    }
    out += i + 1 < rows.size() ? "},\n" : "}\n";
  }
  return out + "]\n";
}

std::string bench_csv(const std::vector<BenchRow>& rows) {
  std::string out =
      "file,compressor,original_bytes,compressed_bytes,ratio,bits_per_char,model_bits_per_char,"
      "sha_rnn_bits_per_char,compress_kb_per_s,decompress_kb_per_s,round_trip,model_gflop_per_s,step_gflop_per_s\n";
  for (const BenchRow& r : rows) {
    const double n = r.original ? static_cast<double>(r.original) : 1;
    out += csv_field(r.file) + "," + csv_field(r.compressor) + "," + std::to_string(r.original) + "," +
           std::to_string(r.compressed) + "," + fmt("%.6f", r.ratio()) + "," +
           (r.has_bpc() ? fmt("%.6f", r.bpc()) : "") + "," +
           (r.has_model_bits() ? fmt("%.6f", r.model_bits / n) : "") + "," +
           (r.has_model_bits() ? fmt("%.6f", r.nn_bits / n) : "") + "," + fmt("%.3f", r.compress_kbs) + "," +
           fmt("%.3f", r.decompress_kbs) + "," + (r.round_trip ? "1" : "0") + "," +
           (r.is_shazip() ? fmt("%.4f", r.rates.model_gflops) : "") + "," +
           (r.is_shazip() ? fmt("%.4f", r.rates.step_gflops) : "") +
           "\n";
  }
  return out;
}

std::string bench_markdown(const std::vector<BenchRow>& rows) {
  std::string out =
      "| file | bytes | shazip | bpc | SHA-RNN alone | zstd -19 | bpc | vs zstd -19 | zstd -22 --long | "
      "shazip KB/s (comp/dec) | model GFLOP/s (step) | round trips |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  // One line per file and shazip preset, with that file's zstd rows beside it.
  for (const BenchRow& r : rows) {
    if (!r.is_shazip()) continue;
    const BenchRow* z19 = nullptr;
    const BenchRow* z22 = nullptr;
    bool all_ok = true;
    for (const BenchRow& z : rows) {
      if (z.file != r.file) continue;
      all_ok = all_ok && z.round_trip;
      if (z.compressor == "zstd -19") z19 = &z;
      if (z.compressor == "zstd --ultra -22 --long") z22 = &z;
    }
    const double n = r.original ? static_cast<double>(r.original) : 1;
    out += "| " + base_name(r.file) + " | " + std::to_string(r.original) + " | " + r.compressor + ": " +
           std::to_string(r.compressed) + (r.stored ? " (stored)" : "") + " | " +
           (r.has_bpc() ? fmt("%.3f", r.bpc()) : "-") + " | " +
           (r.has_model_bits() ? fmt("%.3f", r.nn_bits / n) : "-") + " | " +
           (z19 ? std::to_string(z19->compressed) : "-") + " | " +
           (z19 && z19->has_bpc() ? fmt("%.3f", z19->bpc()) : "-") + " | " +
           (z19 && z19->compressed ? fmt("%+.1f%%", 100.0 * (static_cast<double>(r.compressed) / z19->compressed - 1))
                                   : "-") +
           " | " + (z22 ? std::to_string(z22->compressed) : "-") + " | " + fmt("%.1f", r.compress_kbs) + " / " +
           fmt("%.1f", r.decompress_kbs) + " | " + model_rates_text(r.rates) + " | " +
           (all_ok ? "all OK" : "FAILED") + " |\n";
  }
  return out;
}

std::string bench_svg(const std::vector<BenchRow>& rows) {
  Plot plot;
  const std::string file = rows.empty() ? "" : base_name(rows.front().file);
  plot.title = "shazip learning curve on " + file + ": bits per character as the model codes";
  plot.x_label = "bytes coded (KB, all streams, in coding order)";
  plot.y_label = "bits per character";
  const char* colors[] = {"#1f77b4", "#2ca02c", "#9467bd", "#8c564b"};
  const char* zcolors[] = {"#ff7f0e", "#d62728", "#7f7f7f"};
  double x_max = 0;
  int si = 0;
  for (const BenchRow& r : rows) {
    if (!r.is_shazip() || r.curve.empty()) continue;
    x_max = std::max(x_max, r.curve.back().first / 1024.0);
    PlotSeries running, windowed;
    running.label = r.compressor + ": running average";
    running.color = colors[si % 4];
    windowed.label = r.compressor + ": last ~5% of the input";
    windowed.color = colors[si % 4];
    windowed.width = 1.0;
    // Window: about 5% of the input, at least one sample.
    const uint64_t window = std::max<uint64_t>(r.original / 20, 1);
    size_t j = 0;
    for (size_t i = 0; i < r.curve.size(); ++i) {
      const auto [done, bits] = r.curve[i];
      if (done == 0) continue;
      running.x.push_back(done / 1024.0);
      running.y.push_back(bits / done);
      while (j + 1 < i && r.curve[i].first - r.curve[j + 1].first >= window) ++j;
      const uint64_t span = done - (j < i ? r.curve[j].first : 0);
      const double span_bits = bits - (j < i ? r.curve[j].second : 0);
      if (span > 0 && j < i) {
        windowed.x.push_back(done / 1024.0);
        windowed.y.push_back(span_bits / span);
      }
    }
    plot.series.push_back(std::move(windowed));
    plot.series.push_back(std::move(running));
    ++si;
  }
  int zi = 0;
  for (const BenchRow& r : rows) {
    if (r.is_shazip() || !r.has_bpc()) continue;
    PlotSeries line;
    line.label = r.compressor + ": " + fmt("%.3f", r.bpc()) + " (whole file)";
    line.color = zcolors[zi++ % 3];
    line.dashed = true;
    line.x = {0, std::max(x_max, r.original / 1024.0)};
    line.y = {r.bpc(), r.bpc()};
    plot.series.push_back(std::move(line));
  }
  plot.y_min = 0;
  plot.y_max = 8;
  return render_svg(plot);
}

}  // namespace shazip
