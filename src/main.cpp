// shazip command line: parses flags (zstd's conventions) and calls the archive
// layer, the way zstd's zstdcli.c sits over fileio.c. Exit codes are listed in
// --help and docs/FORMAT.md.
#include <CLI/CLI.hpp>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "model/predictor.h"
#include "model/step_kernels.h"
#include "src/archive.h"
#include "src/bench.h"
#include "src/errors.h"
#include "src/file_io.h"

using namespace shazip;

namespace {

constexpr const char* kSuffix = ".shz";

struct Options {
  std::vector<std::string> files;
  bool decompress = false, to_stdout = false, force = false, remove = false;
  bool list = false, test = false, recursive = false;
  bool no_early_store = false;  // code every input to its end (CompressOptions::give_up off)
  // Benchmark mode (-b).
  bool bench = false, json = false, csv = false, markdown = false, no_zstd = false;
  std::string plot;
  std::string levels;  // comma-separated presets
  std::string output;
  int level = model::kDefaultPreset;
  std::string device = "cpu";
  int threads = 1;
  int jobs = -1;           // -j: -1 not given (one archive per input), 0 one job per two cores
  std::string block_size;  // --block-size, as given
  int verbosity = 1;  // 0 quiet, 1 normal, 2+ verbose
  bool progress = false;  // --progress: also when standard error is no terminal
};

// -j's block size unless --block-size says otherwise: on dickens (10 MB)
// blocks of this size cost 1.3% against one archive of the whole, 4 MiB 2.3%,
// 2 MiB 4.5% (benchmarks/RESULTS.md, "Parallel blocks").
constexpr uint64_t kDefaultBlockSize = uint64_t{8} << 20;
constexpr uint64_t kMinBlockSize = uint64_t{64} << 10;

std::string human_bytes(double n) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (n >= 1024 && u < 4) {
    n /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", n, units[u]);
  return buf;
}

// "12 KB/s", or "0.7 KB/s" below 10 (the GPU presets on a CPU code under 1 KB/s,
// which a whole number showed as 0).
std::string speed_text(double bytes, double seconds) {
  const double kbs = bytes / 1024 / seconds;
  char buf[32];
  std::snprintf(buf, sizeof buf, kbs < 10 ? "%.1f KB/s" : "%.0f KB/s", kbs);
  return buf;
}

// "32.10%, 2.568 bits per char": the output's size against the input's
// (bytes > 0).
std::string ratio_text(double in_bytes, double out_bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f%%, %.3f bits per char", 100.0 * out_bytes / in_bytes,
                8.0 * out_bytes / in_bytes);
  return buf;
}

// How progress is shown on standard error: not at all; one line redrawn in
// place at most 5 times a second (a terminal); or, with --progress where
// standard error is no terminal (a log, a pipe), a new line at most once a
// second and at the end, with no control characters.
enum class ProgressMode { kOff, kTerminal, kLines };

ProgressMode progress_mode(const Options& o) {
  const bool terminal = is_terminal(STDERR_FILENO);
  if (o.progress) return terminal ? ProgressMode::kTerminal : ProgressMode::kLines;
  return o.verbosity >= 1 && terminal ? ProgressMode::kTerminal : ProgressMode::kOff;
}

// Writes one progress line in the given mode, rate-limited; a `milestone`
// (the last line of a run, a new step of -b) always goes out.
class ProgressWriter {
 public:
  explicit ProgressWriter(ProgressMode mode) : mode_(mode) {}
  ~ProgressWriter() { clear(); }
  bool enabled() const { return mode_ != ProgressMode::kOff; }

  void write(const std::string& line, bool milestone) {
    if (mode_ == ProgressMode::kOff) return;
    const auto now = std::chrono::steady_clock::now();
    const auto every = std::chrono::milliseconds(mode_ == ProgressMode::kTerminal ? 200 : 1000);
    if (!milestone && drawn_once_ && now - last_ < every) return;
    last_ = now;
    drawn_once_ = true;
    if (mode_ == ProgressMode::kTerminal) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
      drawn_ = true;
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }
  // Erases a terminal's line (lines written to a log stay).
  void clear() {
    if (drawn_) std::fprintf(stderr, "\r\033[K");
    drawn_ = false;
  }

 private:
  ProgressMode mode_;
  bool drawn_ = false, drawn_once_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Progress of one input: percent, bytes, KB/s, running bits per character, ETA.
class Progress {
 public:
  Progress(std::string name, uint64_t total, ProgressMode mode)
      : name_(std::move(name)), total_(total), out_(mode), start_(std::chrono::steady_clock::now()) {}

  void update(uint64_t done, double bits) {
    if (!out_.enabled()) return;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = secs > 0 ? done / secs : 0;
    const double pct = total_ ? 100.0 * done / total_ : 100.0;
    const double bpc = done ? bits / done : 0;
    char eta[32] = "--:--";
    if (rate > 0 && done < total_) {
      const long left = std::lround((total_ - done) / rate);
      std::snprintf(eta, sizeof eta, "%ld:%02ld", left / 60, left % 60);
    }
    char line[512];
    std::snprintf(line, sizeof line, "%s: %5.1f%%  %s / %s  %.1f KB/s  %.3f bpc  ETA %s", name_.c_str(), pct,
                  human_bytes(done).c_str(), human_bytes(total_).c_str(), rate / 1024, bpc, eta);
    out_.write(line, done >= total_);
  }
  void clear() { out_.clear(); }

 private:
  std::string name_;
  uint64_t total_;
  ProgressWriter out_;
  std::chrono::steady_clock::time_point start_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string display_name(const std::string& path) { return path == "-" ? "(stdin)" : path; }

model::RuntimeOptions runtime_from(const Options& o) {
  model::RuntimeOptions rt;
  rt.threads = o.threads;
  if (o.device == "cpu") return rt;
  const bool cuda = model::cuda_available();
  if (o.device == "cuda") {
    if (!cuda) throw Error(ErrorCode::kBackend, "--device cuda: no CUDA device or this build has no CUDA");
    rt.device = model::DeviceKind::kCuda;
  } else if (o.device == "auto") {
    rt.device = cuda ? model::DeviceKind::kCuda : model::DeviceKind::kCpu;
  }
  return rt;
}

// Compressing with a GPU preset on the CPU: it runs, with the CPU's
// archive, but tens to hundreds of times slower than the default (preset 6:
// 2.2 KB/s against 47 on dickens, benchmarks/RESULTS.md). Says so once per
// process, unless -q.
void note_gpu_preset_on_cpu(const Options& o, const model::RuntimeOptions& rt) {
  static bool said = false;
  if (said || o.verbosity < 1 || o.level < model::kFirstGpuPreset || rt.device != model::DeviceKind::kCpu) return;
  said = true;
  const double times = model::preset(o.level).model.flops_per_byte().total() /
                       model::preset(model::kDefaultPreset).model.flops_per_byte().total();
  const std::string advice = model::cuda_available()
                                ? "this machine has a GPU: --device cuda"
                                : "presets 1-" + std::to_string(model::kFirstGpuPreset - 1) + " suit a CPU";
  std::fprintf(stderr, "shazip: preset %d is sized for a GPU; on the CPU it does %.0fx the default preset's arithmetic "
               "per byte and codes that much slower (%s)\n",
               o.level, times, advice.c_str());
}

// Jobs to run at once: -j N, or with -j 0 one per two of the cores this
// process may use (each job keeps a core busy coding and one training).
int jobs_from(const Options& o) {
  if (o.jobs > 0) return o.jobs;
  if (o.jobs < 0) return 1;
  return std::max(1, usable_cores() / 2);
}

// "8M" -> 8 MiB; K, M and G (also KB, KiB, ...) are powers of 1024, as in
// zstd's options. At most 1024G. Throws Error(kUsage).
uint64_t parse_size(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::string unit = text.substr(digits);
  if (unit.size() == 3 && unit.substr(1) == "iB") unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'B') unit.pop_back();
  int shift = -1;
  if (unit.empty()) shift = 0;
  else if (unit == "K" || unit == "k" || unit == "Ki") shift = 10;
  else if (unit == "M" || unit == "m" || unit == "Mi") shift = 20;
  else if (unit == "G" || unit == "g" || unit == "Gi") shift = 30;
  if (digits == 0 || digits > 13 || shift < 0) {
    throw Error(ErrorCode::kUsage, "--block-size: '" + text + "' is not a size (e.g. 8M, 512K, 1G)");
  }
  const uint64_t value = std::stoull(text.substr(0, digits));
  if (value > (uint64_t{1} << 40) >> shift) throw Error(ErrorCode::kUsage, "--block-size: at most 1024G");
  return value << shift;
}

// Compressing with -j or --block-size: the size of the blocks; 0: one archive.
uint64_t block_size_from(const Options& o) {
  if (o.block_size.empty()) return o.jobs < 0 ? 0 : kDefaultBlockSize;
  const uint64_t size = parse_size(o.block_size);
  if (size < kMinBlockSize) throw Error(ErrorCode::kUsage, "--block-size: at least 64K");
  return size;
}

// The jobs for `units` blocks that take `per_job` bytes of memory each: -j's
// count (no more than the blocks), fewer where that many would not fit in the
// memory available (as xz does with its threads), saying so unless -q. The
// output does not depend on it.
int jobs_for(const std::string& in, const Options& o, uint64_t units, uint64_t per_job) {
  const int wanted =
      static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(jobs_from(o)), std::max<uint64_t>(units, 1)));
  if (wanted <= 1) return 1;
  const uint64_t available = available_memory();
  const int jobs = jobs_within_memory(wanted, per_job, available);
  if (jobs < wanted && o.verbosity >= 1) {
    std::fprintf(stderr, "shazip: %s: %d jobs would take about %s of memory, %s is available: running %d\n",
                 display_name(in).c_str(), wanted, human_bytes(static_cast<double>(per_job) * wanted).c_str(),
                 human_bytes(static_cast<double>(available)).c_str(), jobs);
  }
  return jobs;
}

void list_member(const Member& m, const Options& o) {
  const Header& h = m.header;
  const double n = static_cast<double>(h.original_size);
  std::printf("  format version   %d\n", h.version);
  std::printf("  method           %s", method_name(h.method));
  if (h.method == Method::kNeural && h.preset) std::printf(" (preset %d)", h.preset);
  std::printf("\n  original size    %llu bytes\n", static_cast<unsigned long long>(h.original_size));
  std::printf("  archive size     %llu bytes (header %zu)\n", static_cast<unsigned long long>(m.size), m.header_size);
  if (h.original_size) {
    std::printf("  ratio            %.3f\n", n / static_cast<double>(m.size));
    std::printf("  bits per char    %.4f\n", 8.0 * static_cast<double>(m.size) / n);
  }
  if (h.method == Method::kNeural) {
    std::printf("  model            SHA-RNN %s (%lld parameters)\n", h.model.describe().c_str(),
                static_cast<long long>(h.model.param_count()));
    if (o.verbosity >= 2) {
      // (The block norm is the training kernels'; LibTorch's Adam takes one norm.)
      const bool own_training = h.backend.device == model::DeviceKind::kCuda ? h.model.cuda_training_kernels()
                                                                             : h.model.train_kernels;
      std::printf("  optimizer        Adam (%s) beta1=%g beta2=%g eps=%g clip=%g lr decay=%g seed=%llu\n",
                  !h.model.flat_train                    ? "tensor by tensor"
                  : own_training && h.model.block_norm ? "all weights at once, the clip's norm in blocks"
                                                       : "all weights at once",
                  h.model.beta1,
                  h.model.beta2, h.model.adam_eps, h.model.clip, h.model.lr_decay,
                  static_cast<unsigned long long>(h.model.seed));
      // On CUDA the step path and the training step follow their own
      // switches (model/config.h).
      const bool cuda = h.backend.device == model::DeviceKind::kCuda;
      const char* step = cuda ? (h.model.cuda_step_kernels ? "shazip's CUDA kernels, the CPU kernels' sums"
                                                           : "LibTorch's operators and cuBLAS")
                              : (h.model.step_kernels ? "shazip's kernels, sums in a fixed order"
                                                      : "LibTorch's operators and the BLAS");
      const char* train = cuda ? (h.model.cuda_training_kernels() ? "shazip's CUDA kernels, the CPU kernels' sums"
                                                             : "LibTorch's autograd and cuBLAS")
                               : (h.model.train_kernels ? "shazip's kernels, sums in a fixed order"
                                                        : "LibTorch's autograd and the BLAS");
      std::printf("  step path        %s\n", step);
      std::printf("  training step    %s\n", train);
    }
    const char* used =
        h.model.train_lag ? "used from the segment after next (lag 1)" : "used from the next segment (lag 0)";
    if (h.model.train_groups > 1) {
      std::printf("  training         %d Adam steps per %d positions, each on 1/%d of the streams, their weights %s\n",
                  h.model.train_groups, h.model.seg_len, h.model.train_groups, used);
    } else {
      std::printf("  training         one Adam step per %d positions, its weights %s\n", h.model.seg_len, used);
    }
    if (h.model.mix) {
      const model::MixTuning tuning = model::mix_tuning(h.model);
      // ", with stream, class, text, scope, word indirect and shape contexts", or those of them in
      // use, or nothing
      std::vector<std::string> kinds;
      if (model::uses_stream_contexts(h.streams, tuning)) kinds.push_back("stream");
      if (model::uses_class_contexts(tuning)) kinds.push_back("class");
      if (model::uses_text_contexts(tuning)) kinds.push_back("text");
      if (model::uses_scope_context(tuning)) kinds.push_back("scope");
      if (model::uses_word_indirect(tuning)) kinds.push_back("word indirect");
      if (model::uses_shape_contexts(tuning)) kinds.push_back("shape");
      std::string with;
      for (size_t i = 0; i < kinds.size(); ++i) {
        with += (i == 0 ? ", with " : i + 1 == kinds.size() ? " and " : ", ") + kinds[i];
      }
      if (!with.empty()) with += " contexts";
      if (model::uses_own_rates(tuning)) with += ", own rates";
      if (model::uses_one_sided(tuning)) with += ", one-sided inputs";
      if (model::uses_nibble_groups(tuning)) with += ", nibble groups";
      if (model::uses_table_shapes(tuning)) with += ", table shapes";
      if (model::uses_long_matches(tuning)) with += ", long matches";
      if (model::uses_more_runs(tuning)) with += ", six run maps";
      if (model::uses_mixer_selectors(tuning)) with += ", mixer selectors";
      if (model::uses_layer2_inputs(tuning)) with += ", layer-2 inputs";
      std::printf("  coding           bitwise, SHA-RNN mixed with context models (mix level %d%s)\n", h.model.mix,
                  with.c_str());
    } else {
      std::printf("  coding           whole bytes, SHA-RNN alone\n");
    }
    std::printf("  streams          %d\n", h.streams);
    std::printf("  memory           about %s for the model and its tables (each -j job)\n",
                human_bytes(static_cast<double>(decode_memory(h))).c_str());
    std::printf("  threads          %d\n", h.threads);
    if (h.backend.device == model::DeviceKind::kCuda) {
      // CUDA archives keep the GPU and the CUDA runtime in the BLAS and CPU
      // capability fields (docs/FORMAT.md).
      std::printf("  backend          cuda, LibTorch %s, GPU %s, %s%s\n", h.backend.torch_version.c_str(),
                  h.backend.blas.c_str(), h.backend.cpu_capability.c_str(),
                  portable_arithmetic(h) ? " (not needed to decode: the CPU decodes it too)" : "");
    } else if (h.backend.blas == "none") {
      // Made on shazip's CPU kernels without loading LibTorch (shazip 0.21 on).
      std::printf("  backend          cpu, shazip's kernels (a LibTorch %s build, no BLAS), CPU kernels %s "
                  "(not needed to decode)\n",
                  h.backend.torch_version.c_str(), h.backend.cpu_capability.c_str());
    } else {
      std::printf("  backend          %s, LibTorch %s, %s, ATen CPU capability %s%s\n", device_name(h.backend.device),
                  h.backend.torch_version.c_str(), h.backend.blas.c_str(), h.backend.cpu_capability.c_str(),
                  portable_arithmetic(h) ? " (not needed to decode)" : "");
    }
  }
  std::printf("  checksum         CRC-32 %08x\n", h.content_crc);
}

void list_archive(const std::string& path, const Options& o) {
  const std::vector<uint8_t> data = read_file(path);
  const std::vector<Member> members = split_members(data.data(), data.size());
  std::printf("%s\n", display_name(path).c_str());
  if (members.size() > 1) {
    std::printf("  %zu archives back to back, %llu bytes of content in all\n", members.size(),
                static_cast<unsigned long long>(content_size(members)));
  }
  for (size_t i = 0; i < members.size(); ++i) {
    if (members.size() > 1) std::printf("archive %zu of %zu, at byte %llu\n", i + 1, members.size(),
                                        static_cast<unsigned long long>(members[i].offset));
    list_member(members[i], o);
  }
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// What to say of an exception that is not shazip's Error (exit code 2):
// std::bad_alloc, or one of LibTorch's (c10::Error, whose allocator's failure
// says "can't allocate memory" and whose backtrace follows the first line).
std::string unexpected_error_text(const std::exception& e) {
  const std::string what = e.what();
  const std::string line = what.substr(0, what.find('\n'));
  if (dynamic_cast<const std::bad_alloc*>(&e) || line.find("allocate memory") != std::string::npos) {
    return "out of memory";
  }
  return line;
}

// SHAZIP_NO_GLANCE set: no input stored at a glance (CompressOptions::glance),
// the model's own check alone decides (shazip 0.27's archives; tests).
bool glance_wanted() { return std::getenv("SHAZIP_NO_GLANCE") == nullptr; }

// A model, tables and data larger than the machine's memory would fail part way
// (LibTorch's allocator) or be killed; an archive's header can ask for any
// size (d=8192 with 64 layers: 1.5 TB). Refused before anything is allocated.
void refuse_beyond_memory(uint64_t needed, const char* what) {
  const MemoryCeiling ceiling = memory_ceiling();
  if (needed <= ceiling.bytes) return;
  throw Error(ErrorCode::kIo, std::string(what) + " needs about " + human_bytes(static_cast<double>(needed)) +
                                  " of memory for its model, tables and data, more than the " +
                                  human_bytes(static_cast<double>(ceiling.bytes)) + " " + ceiling.limited_by);
}

// Runs a coding that refuse_beyond_memory() let through; where an allocation
// fails all the same (the machine's memory taken by others, or the estimate
// short of a limit), the error says what the coding needed.
template <class Coding>
auto within_memory(uint64_t needed, const char* what, Coding&& coding) -> decltype(coding()) {
  try {
    return coding();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    if (unexpected_error_text(e) != "out of memory") throw;
    throw Error(ErrorCode::kIo, "out of memory: " + std::string(what) + " needs about " +
                                    human_bytes(static_cast<double>(needed)) + " for its model, tables and data");
  }
}

// Whether both paths name one file (a hard or symbolic link counts).
bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// As zcat -f and zstd -dcf: decompressing to standard output with -f, an
// input that is no shazip archive (not even its first four bytes) is copied
// out as it is, so that `shazipcat -f *` reads archives and plain files
// alike. A damaged or truncated archive still fails.
bool passes_through(const std::vector<uint8_t>& input, const std::string& out, const Options& o) {
  return o.decompress && !o.test && o.force && out == "-" &&
         (input.size() < sizeof kMagic || std::memcmp(input.data(), kMagic, sizeof kMagic) != 0);
}

// What the inputs done so far came to (compressed or tested; a failed one
// not counted), for the summary line after several.
struct Totals {
  int files = 0;
  uint64_t in = 0, out = 0;
  void add(uint64_t read, uint64_t written) {
    ++files;
    in += read;
    out += written;
  }
};

// After two inputs or more, as zstd: "3 files: 30000 => 9000 bytes (...)"
// compressing, "3 archives OK (30000 bytes)" testing; decompressing is
// silent, file by file too.
void print_totals(const Totals& t, const Options& o) {
  if (o.verbosity < 1 || t.files < 2 || o.list || (o.decompress && !o.test)) return;
  const auto in = static_cast<unsigned long long>(t.in), out = static_cast<unsigned long long>(t.out);
  if (o.test) {
    std::fprintf(stderr, "%d archives OK (%llu bytes)\n", t.files, out);
    return;
  }
  const double n = static_cast<double>(t.in);
  const std::string ratio = n ? " (" + ratio_text(n, static_cast<double>(t.out)) + ")" : "";
  std::fprintf(stderr, "%d files: %llu => %llu bytes%s\n", t.files, in, out, ratio.c_str());
}

// Compresses, decompresses or tests one input, adding it to `totals`.
// Throws Error.
void process(const std::string& in, const Options& o, Totals* totals) {
  const bool is_stdin = in == "-";
  std::string out = o.output;
  if (o.test) {
    out.clear();
  } else if (o.to_stdout || (is_stdin && out.empty())) {
    out = "-";
  } else if (out.empty()) {
    // As gzip and zstd: FILE.shz beside a device or a pipe (/dev/null.shz in
    // /dev) is never what was meant; -c and -o still take them.
    struct stat st {};
    if (stat(in.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
      throw Error(ErrorCode::kUsage, "not a regular file; use -c or -o NAME");
    }
    if (o.decompress) {
      if (!ends_with(in, kSuffix)) throw Error(ErrorCode::kUsage, "unknown suffix (expected .shz); use -o NAME");
      out = in.substr(0, in.size() - std::strlen(kSuffix));
    } else {
      if (ends_with(in, kSuffix)) {
        throw Error(ErrorCode::kUsage, "already has the .shz suffix; use -f -o NAME to compress it again");
      }
      out = in + kSuffix;
    }
  }
  if (!o.decompress && !o.test && out == "-" && is_terminal(STDOUT_FILENO) && !o.force) {
    throw Error(ErrorCode::kUsage, "refusing to write compressed data to a terminal (use -o FILE or -f)");
  }
  // Refuse an existing output before hours of work, not after; and never
  // the input itself, even with -f (-o names it, or a link to it): as in zstd.
  if (!out.empty() && out != "-" && !is_stdin && same_file(in, out)) {
    throw Error(ErrorCode::kUsage, "output " + out + " is the input itself; choose another name");
  }
  if (!out.empty()) check_output(out, o.force);

  std::vector<uint8_t> input = read_file(in);
  const uint64_t read = input.size();
  const ProgressMode show = progress_mode(o);
  std::vector<uint8_t> result;
  if (passes_through(input, out, o)) {
    result = std::move(input);
  } else if (o.decompress || o.test) {
    // Every archive's header is checked before anything is decoded.
    const std::vector<Member> members = split_members(input.data(), input.size());
    const uint64_t content = content_size(members);
    Progress progress(display_name(in), content, show);
    uint64_t per_job = 0;
    for (const Member& m : members) per_job = std::max(per_job, decode_memory(m.header));
    refuse_beyond_memory(per_job + content, "decoding");  // and the output, held whole
    const int jobs = jobs_for(in, o, members.size(), per_job);
    // A GPU's archive that this process decodes on its CPU (format 10): the
    // same bytes, but a GPU preset's model runs far slower there.
    const auto on_cpu = std::find_if(members.begin(), members.end(), [](const Member& m) {
      return m.header.method == Method::kNeural && m.header.backend.device == model::DeviceKind::kCuda &&
             decode_device(m.header) == model::DeviceKind::kCpu;
    });
    if (on_cpu != members.end() && o.verbosity >= 1) {
      std::fprintf(stderr, "shazip: %s: made on a GPU (%s), decoding on the CPU: no GPU here; it takes longer\n",
                   display_name(in).c_str(), on_cpu->header.backend.blas.c_str());
    }
    result = within_memory(per_job * jobs + content, "decoding", [&] {
      return decompress_members(
          input.data(), members, [&](uint64_t done, double bits) { progress.update(done, bits); }, jobs);
    });
    progress.clear();
    if (o.test) {
      if (o.verbosity >= 1) std::fprintf(stderr, "%s: OK (%zu bytes)\n", display_name(in).c_str(), result.size());
      totals->add(read, result.size());
      return;
    }
  } else {
    CompressOptions co;
    co.preset = o.level;
    co.runtime = runtime_from(o);
    co.give_up = !o.no_early_store;
    co.glance = glance_wanted();
    note_gpu_preset_on_cpu(o, co.runtime);
    Progress progress(display_name(in), input.size(), show);
    co.progress = [&](uint64_t done, double bits) { progress.update(done, bits); };
    CompressReport report;
    const uint64_t block_size = block_size_from(o);
    const uint64_t len = input.size();
    const uint64_t per_job = compress_memory(o.level, block_size ? std::min(block_size, len) : len);
    // The memory is checked for each block once the glance has let it
    // through: an input stored at a glance needs none of the model's.
    co.before_model = [&] { refuse_beyond_memory(per_job + len, "compressing"); };  // and the input, held whole
    const int jobs = block_size ? jobs_for(in, o, block_count(len, block_size), per_job) : 1;
    result = within_memory(per_job * jobs + len, "compressing", [&] {
      return block_size ? compress_blocks(input.data(), len, block_size, jobs, co, &report)
                        : compress_buffer(input.data(), len, co, &report);
    });
    progress.clear();
    if (o.verbosity >= 1) {
      const double n = static_cast<double>(input.size());
      // Blocks: how many, and how many of them stored where some are.
      std::string blocks = report.blocks > 1 ? ", " + std::to_string(report.blocks) + " blocks" : "";
      if (!report.fell_back() && report.stored_blocks > 0) {
        blocks += ", " + std::to_string(report.stored_blocks) + " stored";
      }
      // Stored early (kGiveUpBytes): say how much the model tried.
      const std::string stored =
          !report.fell_back() ? ""
          : report.at_a_glance
              ? ", stored at a glance: the context models saved nothing over " + human_bytes(report.gave_up_at)
          : report.gave_up_at ? ", stored: the model saved nothing over " + human_bytes(report.gave_up_at) + " tried"
                              : ", stored";
      // An empty input has no ratio (zstd prints none either).
      const std::string ratio =
          n ? " (" + ratio_text(n, static_cast<double>(result.size())) + stored + blocks + ")" : "";
      std::fprintf(stderr, "%s: %llu => %zu bytes%s, %s%s\n", display_name(in).c_str(),
                   static_cast<unsigned long long>(input.size()), result.size(), ratio.c_str(),
                   out == "-" ? "(stdout)" : out.c_str(),
                   report.stats.seconds > 0 ? (", " + speed_text(n, report.stats.seconds)).c_str() : "");
    }
    // -v, where the model coded all of it: what coded it, and the SHA-RNN's
    // own code length (before the mixing stage).
    const Header& h = report.header;
    if (o.verbosity >= 2 && h.method == Method::kNeural && report.stored_blocks == 0 && !input.empty()) {
      std::fprintf(stderr, "  preset %d, SHA-RNN %s, %d stream%s%s: the SHA-RNN alone %.3f bits per char; %.1f s\n",
                   h.preset, h.model.describe().c_str(), h.streams, h.streams == 1 ? "" : "s",
                   report.blocks > 1 ? " (the first block)" : "",
                   report.stats.nn_bits / static_cast<double>(input.size()), report.stats.seconds);
    }
  }
  OutputFile file(out, o.force);
  file.write(result.data(), result.size());
  file.copy_metadata_from(in);
  file.commit();
  // Decompressing is silent, as gzip's and zstd's; -v says what was written, as theirs do.
  if (o.decompress && o.verbosity >= 2) {
    std::fprintf(stderr, "%s: %zu bytes, %s\n", display_name(in).c_str(), result.size(),
                 out == "-" ? "(stdout)" : out.c_str());
  }
  if (o.remove && !is_stdin && out != "-" && is_regular_file(in)) {  // never a device or a pipe (-o)
    if (unlink(in.c_str()) != 0) {
      throw Error(ErrorCode::kIo, std::string("cannot remove input: ") + std::strerror(errno));
    }
  }
  totals->add(read, result.size());
}

// gzip's and zstd's rule: compressed data is not read from a terminal (a user
// who typed `shazip -d` alone would wait on a keyboard); -f reads it anyway.
bool refuses_terminal_input(const std::string& f, const Options& o) {
  return f == "-" && (o.decompress || o.list) && !o.force && is_terminal(STDIN_FILENO);
}

// -r: each directory among the inputs stands for the regular files under it,
// at any depth, in name order; symbolic links inside it are skipped (as gzip
// does). `archives`: decompressing, testing and listing take only .shz files;
// compressing (and -b) skips them. Other inputs pass through unchanged. A
// directory that cannot be read is reported and sets `status`.
std::vector<std::string> expand_directories(const std::vector<std::string>& inputs, bool archives, int* status) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const std::string& in : inputs) {
    std::error_code ec;
    if (in == "-" || !fs::is_directory(in, ec)) {
      out.push_back(in);
      continue;
    }
    std::vector<std::string> found;
    fs::recursive_directory_iterator it(in, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code type_ec;
      if (!it->is_regular_file(type_ec) || it->is_symlink(type_ec)) continue;
      const std::string path = it->path().string();
      if (ends_with(path, kSuffix) == archives) found.push_back(path);
    }
    if (ec) {
      std::fprintf(stderr, "shazip: %s: cannot read directory: %s\n", in.c_str(), ec.message().c_str());
      if (*status == 0) *status = static_cast<int>(ErrorCode::kIo);
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

// A directory among the inputs without -r: refused with a hint (read_file's
// own "is a directory" does not know about -r).
void refuse_directory(const std::string& f) {
  std::error_code ec;
  if (f != "-" && std::filesystem::is_directory(f, ec)) {
    throw Error(ErrorCode::kIo, "is a directory (-r takes the files under it)");
  }
}

// "1,3,4" -> {1, 3, 4}; empty -> {fallback}. Throws Error(kUsage).
std::vector<int> parse_levels(const std::string& list, int fallback) {
  if (list.empty()) return {fallback};
  std::vector<int> levels;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, end - start);
    if (item.size() != 1 || item[0] < '0' + model::kMinPreset || item[0] > '0' + model::kMaxPreset) {
      throw Error(ErrorCode::kUsage, "--levels: '" + item + "' is not a preset 1..9");
    }
    levels.push_back(item[0] - '0');
    start = end + 1;
  }
  return levels;
}

// Benchmark mode: every input through shazip and zstd, one report at the end.
int run_bench(const Options& o) {
  BenchOptions bo;
  bo.presets = parse_levels(o.levels, o.level);
  bo.runtime = runtime_from(o);
  bo.zstd = !o.no_zstd;
  bo.give_up = !o.no_early_store;
  bo.glance = glance_wanted();
  // The run in progress (which preset, how far), shared by the callback's
  // copies.
  auto progress = std::make_shared<ProgressWriter>(progress_mode(o));
  if (progress->enabled()) {
    bo.status = [progress](const std::string& line, bool milestone) {
      if (line.empty()) {
        progress->clear();
      } else {
        progress->write(line, milestone);
      }
    };
  }
  std::vector<BenchRow> rows;
  int status = 0;
  for (const auto& f : o.files) {
    try {
      refuse_directory(f);
      const std::vector<uint8_t> input = read_file(f);
      // The largest preset's coding, with the input, its archive and the
      // decoded copy held at once.
      uint64_t needed = 0;
      for (const int preset : bo.presets) needed = std::max(needed, compress_memory(preset, input.size()));
      needed += 3 * input.size();
      refuse_beyond_memory(needed, "benchmarking");
      const std::vector<BenchRow> r = within_memory(
          needed, "benchmarking", [&] { return bench_buffer(f == "-" ? "(stdin)" : f, input, bo); });
      if (!o.plot.empty() && rows.empty()) {
        // The first file's learning curve.
        OutputFile svg(o.plot, true);
        const std::string doc = bench_svg(r);
        svg.write(reinterpret_cast<const uint8_t*>(doc.data()), doc.size());
        svg.commit();
      }
      for (const BenchRow& row : r) {
        if (!row.round_trip) {
          std::fprintf(stderr, "shazip: %s: %s round trip FAILED\n", display_name(f).c_str(), row.compressor.c_str());
          status = static_cast<int>(ErrorCode::kCorrupt);
        }
      }
      rows.insert(rows.end(), r.begin(), r.end());
    } catch (const Error& e) {
      progress->clear();
      std::fprintf(stderr, "shazip: %s: %s\n", display_name(f).c_str(), e.what());
      if (status == 0) status = static_cast<int>(e.code());
    } catch (const std::exception& e) {
      progress->clear();
      std::fprintf(stderr, "shazip: %s: %s\n", display_name(f).c_str(), unexpected_error_text(e).c_str());
      if (status == 0) status = static_cast<int>(ErrorCode::kIo);
    }
  }
  // Every input failed, and said why: no empty table, but JSON's empty array,
  // so that a script reading standard output still parses it.
  if (rows.empty() && !o.json) return status;
  const std::string out = o.json ? bench_json(rows) : o.csv ? bench_csv(rows) : o.markdown ? bench_markdown(rows)
                                                                                          : bench_table(rows);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return status;
}

// CLI11 does not take options named by a digit: maps zstd's -1 .. -9 to
// --level=N, alone or in a bundle of short flags (-9c, -kq1), except where
// the argument is an option's value (-o -9 names a file, -j -1 is a bad job
// count) or follows "--". A run of digits (-19, as zstd users type) is no
// preset: sets *error and returns nothing.
std::vector<std::string> rewrite_levels(const CLI::App& app, int argc, char** argv, std::string* error) {
  const auto takes_value = [&](const std::string& name) {
    const CLI::Option* opt = app.get_option_no_throw(name);
    return opt != nullptr && opt->get_items_expected_max() > 0;
  };
  std::vector<std::string> args;
  bool value_next = false, after_dashdash = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (after_dashdash || value_next || a.size() < 2 || a[0] != '-') {
      value_next = false;
      args.push_back(a);
      continue;
    }
    if (a == "--") {
      after_dashdash = true;
      args.push_back(a);
      continue;
    }
    if (a[1] == '-') {  // --name or --name=value
      value_next = a.find('=') == std::string::npos && takes_value(a);
      args.push_back(a);
      continue;
    }
    // Short options bundled: flags, the level's digit, and last maybe an
    // option with its value (-j2) or with the next argument as its value.
    // Anything else (-5.txt) goes to CLI11 as it is.
    std::string flags = "-", level;
    bool known = true;
    for (size_t k = 1; k < a.size(); ++k) {
      if (a[k] >= '0' && a[k] <= '9') {
        level += a[k];
        continue;
      }
      const std::string name{'-', a[k]};
      known = app.get_option_no_throw(name) != nullptr;
      if (!known) break;
      flags += a[k];
      if (takes_value(name)) {
        flags += a.substr(k + 1);
        value_next = k + 1 == a.size();
        break;
      }
    }
    if (!known) {
      args.push_back(a);
      continue;
    }
    if (!level.empty()) {
      if (level.size() != 1 || level == "0") {
        *error = a + ": no such preset; they are -1 (fastest) to -9 (largest)";
        return {};
      }
      args.push_back("--level=" + level);
    }
    if (flags.size() > 1) args.push_back(flags);
  }
  std::reverse(args.begin(), args.end());  // CLI11's parse(vector) takes them reversed
  return args;
}

// Called as unshazip (as gunzip and unzstd are) shazip decompresses; as
// shazipcat (zcat, zstdcat) it decompresses to standard output. Options given
// still apply on top (-z compresses, -t tests).
void apply_program_name(const char* argv0, Options* o) {
  const std::string path = argv0 ? argv0 : "";
  const std::string name = path.substr(path.find_last_of('/') + 1);
  if (name == "unshazip") {
    o->decompress = true;
  } else if (name == "shazipcat") {
    o->decompress = o->to_stdout = true;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  apply_program_name(argc > 0 ? argv[0] : nullptr, &o);
  CLI::App app{
      "shazip: neural text compressor (SHA-RNN language model + range coder, learning online)",
      "shazip"};
  app.footer(
      "Examples:\n"
      "  shazip FILE           compress FILE to FILE.shz (keeps FILE)\n"
      "  shazip -d FILE.shz    decompress to FILE\n"
      "  shazip -5 --rm FILE   preset 5, remove FILE after success\n"
      "  shazip -c FILE > x    compress to standard output\n"
      "  shazip -r DIR         compress every file under DIR, each to its own .shz\n"
      "  shazip -j 4 BIG       compress BIG in 8 MiB blocks, four at a time\n"
      "  cat FILE | shazip > FILE.shz\n"
      "  shazip -l FILE.shz    show the archive's header\n"
      "  shazip -t FILE.shz    decode and verify, write nothing\n"
      "  shazip -b FILE        benchmark against zstd -3, -19, -22 --long; --json, --csv,\n"
      "                        --plot curve.svg (learning curve of the first file)\n"
      "\n"
      "Called as unshazip it decompresses (-d), as shazipcat to standard output (-dc).\n"
      "\n"
      "Exit codes: 0 success, 1 usage or refused (existing output, terminal, a device or\n"
      "pipe without -c or -o), 2 I/O error or out of memory (missing file, directory,\n"
      "permission, disk full, a model larger than the machine), 3 not a shazip archive,\n"
      "4 truncated archive, 5 corrupt archive or checksum mismatch, 6 newer format version,\n"
      "7 archive made on a backend this build cannot reproduce; 128+N when killed by\n"
      "signal N.");
  app.add_option("files", o.files, "Input files ('-' or none: standard input)");
  app.add_flag("-d,--decompress", o.decompress, "Decompress");
  app.add_flag("-z,--compress", [&](int64_t) { o.decompress = false; }, "Compress (default)");
  app.add_flag("-c,--stdout", o.to_stdout, "Write to standard output");
  app.add_option("-o", o.output, "Output file (one input only)");
  app.add_flag("-f,--force", o.force,
               "Overwrite existing outputs; allow compressed data to or from a terminal; with -dc, "
               "pass input that is no archive through unchanged");
  // As in zstd, the last of -k and --rm given wins: their callbacks run as
  // they are parsed.
  app.add_flag("-k,--keep", [&](int64_t) { o.remove = false; }, "Keep the input (default)")->trigger_on_parse();
  app.add_flag("--rm", [&](int64_t) { o.remove = true; },
               "Remove the input after success (a regular file, never a device or pipe)")
      ->trigger_on_parse();
  app.add_flag("-r,--recursive", o.recursive,
               "Directories among the inputs: every file under them (compressing skips .shz files, "
               "-d, -t and -l take only them)");
  app.add_flag("-l,--list", o.list, "Show the archive's header without decoding");
  app.add_flag("-t,--test", o.test, "Decode and verify without writing");
  app.add_flag("-b,--bench", o.bench, "Benchmark mode: shazip against zstd on each input, nothing written");
  app.add_option("--levels", o.levels, "Benchmark these presets (e.g. --levels 1,3,4); default: the -# level");
  app.add_flag("--json", o.json, "Benchmark report as JSON");
  app.add_flag("--csv", o.csv, "Benchmark report as CSV");
  app.add_flag("--markdown", o.markdown, "Benchmark report as a Markdown table");
  app.add_option("--plot", o.plot, "Write the first file's learning curve to this SVG file");
  app.add_flag("--no-zstd", o.no_zstd, "Benchmark shazip only");
  app.add_option("--level", o.level, "Preset 1 (fastest) .. 9 (largest); also -1 .. -9")
      ->check(CLI::Range(model::kMinPreset, model::kMaxPreset));
  app.add_option("--device", o.device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app.add_option("-T,--threads", o.threads,
                 "LibTorch intra-op threads (recorded; decoding reuses it; unused by format 7 on the CPU)")
      ->check(CLI::Range(1, 256));
  app.add_flag("--no-early-store", o.no_early_store,
               "Code every input to its end, even one the model saves nothing on over its first 128 KB "
               "(stored early otherwise)");
  app.add_option("-j,--jobs", o.jobs,
                 "Parallel blocks, N at a time (0: one job per two cores): compressing cuts each input into "
                 "--block-size blocks, separate archives (some ratio lost); -d and -t decode N blocks at once")
      ->check(CLI::Range(0, 256));
  app.add_option("--block-size", o.block_size, "Block size for -j (default 8M; K, M, G suffixes; at least 64K)");
  app.add_flag("-v,--verbose", [&](int64_t n) { o.verbosity += static_cast<int>(n); }, "More output");
  app.add_flag("-q,--quiet", [&](int64_t) { o.verbosity = 0; }, "No output but errors");
  app.add_flag("--progress", o.progress,
               "Show progress even when standard error is not a terminal (then a line a second, for logs)");
  app.add_flag("-V,--version",
               [&](int64_t) {
                 // LibTorch is loaded only to ask for a GPU (CUDA builds). The CPU
                 // kernels give the same bits whichever set runs; the set says what
                 // speed to expect.
                 const char* kernels = model::step::avx512() ? "AVX-512 + AVX2 + FMA"
                                       : model::step::simd() ? "AVX2 + FMA"
                                                             : "plain C++";
                 std::printf("shazip %s (archive format %d), LibTorch %s (for archives before format 7 and "
                             "the GPU), CUDA %s, CPU kernels %s\n",
                             SHAZIP_VERSION, kFormatVersion, model::kernel_backend_info().torch_version.c_str(),
                             model::cuda_available() ? "available" : "not available", kernels);
                 std::exit(0);
               },
               "Print version and exit");

  try {
    std::string error;
    std::vector<std::string> args = rewrite_levels(app, argc, argv, &error);
    if (!error.empty()) {
      std::fprintf(stderr, "shazip: %s (see --help)\n", error.c_str());
      return static_cast<int>(ErrorCode::kUsage);
    }
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "shazip: %s (see --help)\n", e.what());
    return static_cast<int>(ErrorCode::kUsage);
  }
  if (o.test) o.decompress = true;
  if (o.files.empty()) o.files.push_back("-");
  int status = 0;
  if (o.recursive) o.files = expand_directories(o.files, o.decompress || o.list, &status);
  if (!o.output.empty() && o.files.size() > 1) {
    std::fprintf(stderr, "shazip: -o takes one input file\n");
    return static_cast<int>(ErrorCode::kUsage);
  }
  install_signal_cleanup();
  if (o.bench) {
    if (o.decompress || o.list || !o.output.empty() || o.to_stdout || o.jobs >= 0 || !o.block_size.empty()) {
      std::fprintf(stderr, "shazip: -b does not combine with -d, -t, -l, -c, -o, -j or --block-size\n");
      return static_cast<int>(ErrorCode::kUsage);
    }
    try {
      const int bench_status = run_bench(o);
      return status ? status : bench_status;
    } catch (const Error& e) {
      std::fprintf(stderr, "shazip: %s\n", e.what());
      return static_cast<int>(e.code());
    }
  }
  if (!o.block_size.empty()) {
    if (o.decompress || o.list) {
      std::fprintf(stderr, "shazip: --block-size is for compressing (-d and -t take the archive's blocks)\n");
      return static_cast<int>(ErrorCode::kUsage);
    }
    try {
      block_size_from(o);
    } catch (const Error& e) {
      std::fprintf(stderr, "shazip: %s\n", e.what());
      return static_cast<int>(e.code());
    }
  }
  if (o.json || o.csv || o.markdown || !o.plot.empty() || !o.levels.empty() || o.no_zstd) {
    std::fprintf(stderr, "shazip: --json, --csv, --markdown, --plot, --levels and --no-zstd need -b\n");
    return static_cast<int>(ErrorCode::kUsage);
  }

  Totals totals;
  for (const auto& f : o.files) {
    try {
      refuse_directory(f);
      if (refuses_terminal_input(f, o)) {
        throw Error(ErrorCode::kUsage, "refusing to read compressed data from a terminal (use -f to read it anyway)");
      }
      if (o.list) {
        list_archive(f, o);
      } else {
        process(f, o, &totals);
      }
    } catch (const Error& e) {
      std::fprintf(stderr, "shazip: %s: %s\n", display_name(f).c_str(), e.what());
      if (status == 0) status = static_cast<int>(e.code());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "shazip: %s: %s\n", display_name(f).c_str(), unexpected_error_text(e).c_str());
      if (status == 0) status = static_cast<int>(ErrorCode::kIo);
    }
  }
  print_totals(totals, o);
  return status;
}
