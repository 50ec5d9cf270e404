#include "src/archive.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "coder/assert.h"
#include "model/context_mix.h"
#include "src/crc32.h"
#include "src/errors.h"

namespace shazip {

namespace {

// Thrown through a task's progress callback (stoppable()) once a task
// numbered below it has failed: its own outcome no longer matters.
struct Cancelled {};

// Runs task(i, stop) for every i in [0, count) on up to `jobs` threads, the
// calling one among them. After a task throws, no new task starts, and
// stop() turns true in the running tasks numbered above it (those below run
// to their end: they might fail too); once all threads have stopped, the
// error of the lowest failing i is rethrown (so which error a user sees does
// not depend on timing).
template <class Task>
void run_parallel(size_t count, int jobs, const Task& task) {
  if (count == 0) return;
  std::atomic<size_t> next{0};
  std::atomic<size_t> lowest_failed{SIZE_MAX};
  std::vector<std::exception_ptr> errors(count);
  const auto work = [&] {
    for (size_t i; lowest_failed.load() == SIZE_MAX && (i = next.fetch_add(1)) < count;) {
      try {
        task(i, [&lowest_failed, i] { return lowest_failed.load() < i; });
      } catch (const Cancelled&) {
        // A lower task failed; its error is the one reported.
      } catch (...) {
        errors[i] = std::current_exception();
        size_t seen = lowest_failed.load();
        while (i < seen && !lowest_failed.compare_exchange_weak(seen, i)) {
        }
      }
    }
  };
  std::vector<std::thread> threads;
  const size_t helpers = std::min(count, static_cast<size_t>(std::max(jobs, 1))) - 1;
  for (size_t t = 0; t < helpers; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

// `inner` (which may be empty) as a progress callback that first throws
// Cancelled when stop() says so: the coders call it every 4 KB.
template <class Stop>
ProgressFn stoppable(ProgressFn inner, const Stop& stop) {
  return [inner = std::move(inner), stop](uint64_t done, double bits) {
    if (stop()) throw Cancelled{};
    if (inner) inner(done, bits);
  };
}

// Adds up the progress of several parts coded at once and reports the sums
// to `out`, one call at a time.
class ProgressSum {
 public:
  ProgressSum(size_t parts, const ProgressFn& out) : done_(parts, 0), bits_(parts, 0), out_(out) {}
  // The callback for part i (empty when nobody listens).
  ProgressFn part(size_t i) {
    if (!out_) return {};
    return [this, i](uint64_t done, double bits) {
      std::lock_guard<std::mutex> lock(mu_);
      total_done_ += done - done_[i];
      total_bits_ += bits - bits_[i];
      done_[i] = done;
      bits_[i] = bits;
      out_(total_done_, total_bits_);
    };
  }

 private:
  std::mutex mu_;
  std::vector<uint64_t> done_;
  std::vector<double> bits_;
  uint64_t total_done_ = 0;
  double total_bits_ = 0;
  const ProgressFn& out_;
};

// Thrown through the progress callback of give_up_check().
struct GiveUp {};

// The progress callback compress_buffer() codes n bytes with: options'
// own, and the check of kGiveUpBytes (when options.give_up), which throws
// GiveUp after setting report.gave_up_at and telling options' callback that
// the rest costs 8 bits a byte, stored.
ProgressFn give_up_check(const CompressOptions& options, int streams, uint64_t n, CompressReport& report) {
  if (!options.give_up) return options.progress;
  return [&options, &report, n, at = give_up_point(streams), checked = false](uint64_t done, double bits) mutable {
    if (!checked && done >= at && done < n) {
      checked = true;
      if (bits >= 8.0 * static_cast<double>(done)) {
        report.gave_up_at = done;
        if (options.progress) options.progress(n, bits + 8.0 * static_cast<double>(n - done));
        throw GiveUp{};
      }
    }
    if (options.progress) options.progress(done, bits);
  };
}

// The model and streams compress_buffer() codes n > 0 bytes with.
CodingParams compress_params(int preset, uint64_t n) {
  const model::Preset p = model::preset(preset);
  CodingParams params;
  params.streams = choose_streams(n, p.streams);
  params.model = model::model_for_input(p.model, params.streams, n);
  return params;
}

// Order-0 entropy, bits a byte, of data (not empty).
double order0_entropy(const std::vector<uint8_t>& data) {
  uint64_t counts[256] = {};
  for (const uint8_t c : data) ++counts[c];
  double bits = 0;
  const double n = static_cast<double>(data.size());
  for (const uint64_t c : counts) {
    if (c > 0) bits -= static_cast<double>(c) * std::log2(static_cast<double>(c) / n);
  }
  return bits / n;
}

// The memory of one coding of n bytes with this model and these streams.
uint64_t coding_memory(const model::ModelConfig& model, int streams, uint64_t n) {
  // Weights twice (the step path's and the trainer's at lag 1), gradients,
  // Adam's two moments, flat copies: 8 floats per parameter; 16 MiB for the
  // rest (activations of a segment, threads' stacks, buffers).
  uint64_t bytes = static_cast<uint64_t>(model.param_count()) * 8 * sizeof(float) + (uint64_t{16} << 20);
  if (model.mix) {
    bytes += model::ContextMixer::memory_bytes(streams, stream_length(n, streams),
                                               model::mix_tuning(model));
  }
  return bytes;
}

// Decodes one archive's body into out[0..h.original_size) and checks it.
void decode_member(const Header& h, const uint8_t* body, uint8_t* out, const ProgressFn& progress) {
  if (h.method == Method::kStored) {
    std::copy(body, body + h.original_size, out);
  } else {
    std::string why;
    if (!portable_arithmetic(h)) {
      // LibTorch, loaded only for an archive that needs it, says what it can
      // run, or why it cannot be loaded.
      try {
        why = backend_mismatch(h, model::backend_info());
      } catch (const std::runtime_error& e) {
        why = e.what();
      }
    }
    if (!why.empty()) throw Error(ErrorCode::kBackend, "cannot decode on this machine: " + why);
    CodingParams params;
    params.model = h.model;
    params.streams = h.streams;
    params.runtime.threads = h.threads;
    params.runtime.device = decode_device(h);
    decode_neural(body, h.payload_size, h.original_size, params, out, progress);
  }
  if (crc32(out, h.original_size) != h.content_crc) {
    throw Error(ErrorCode::kCorrupt, "checksum mismatch: the decoded data is not the original");
  }
}

}  // namespace

model::DeviceKind decode_device(const Header& h) {
  if (h.backend.device == model::DeviceKind::kCuda && portable_arithmetic(h) &&
      !model::cuda_available()) {
    return model::DeviceKind::kCpu;
  }
  return h.backend.device;
}

bool stored_at_a_glance(const uint8_t* data, uint64_t n, int preset, uint64_t* looked_at) {
  if (n == 0) return false;
  const int streams = compress_params(preset, n).streams;
  const uint64_t at = give_up_point(streams);
  if (n <= at) return false;  // the model codes all of it (below the check)
  // The bytes the model's check would have coded: the first of each stream,
  // stream after stream (each stream's own text in a row, as the model sees it).
  const uint64_t len = stream_length(n, streams);
  const uint64_t each = (at - 1) / static_cast<uint64_t>(streams) + 1;
  std::vector<uint8_t> sample;
  sample.reserve(at);
  for (uint64_t b = 0; b < static_cast<uint64_t>(streams) && b * len < n; ++b) {
    sample.insert(sample.end(), data + b * len, data + std::min(b * len + std::min(each, len), n));
  }
  if (looked_at) *looked_at = sample.size();
  if (order0_entropy(sample) < kGlanceEntropy) return false;

  model::MixTuning tuning = model::MixTuning::for_level(1);
  tuning.use_nn = false;
  model::ContextMixer mixer(1, sample.size(), tuning);
  coder::NullSink sink;
  coder::Encoder enc(sink);
  for (const uint8_t byte : sample) {
    mixer.begin(0);
    for (int k = 7; k >= 0; --k) {
      const int bit = (byte >> k) & 1;
      enc.encode_bit(bit, mixer.predict(0));
      mixer.update(bit);
    }
  }
  enc.finish();
  return enc.bytes_out() >= sample.size();
}

std::vector<uint8_t> compress_buffer(const uint8_t* data, uint64_t n, const CompressOptions& options,
                                     CompressReport* report) {
  const uint32_t content_crc = crc32(data, n);
  Header h;
  h.original_size = n;
  h.content_crc = content_crc;
  CompressReport local;
  CompressReport& rep = report ? *report : local;
  rep = CompressReport{};

  std::vector<uint8_t> payload;
  bool gave_up = false;
  uint64_t looked_at = 0;
  if (options.give_up && options.glance && stored_at_a_glance(data, n, options.preset, &looked_at)) {
    gave_up = true;  // stored below, the model never built
    rep.at_a_glance = true;
    rep.gave_up_at = looked_at;
    if (options.progress) options.progress(n, 8.0 * static_cast<double>(n));  // all of it at 8 bits a byte
  } else if (n > 0) {
    if (options.before_model) options.before_model();
    CodingParams params = compress_params(options.preset, n);
    params.runtime = options.runtime;
    params.lookahead = lookahead_pays(params, options.sharers);
    coder::VectorSink<std::vector<uint8_t>> sink(payload);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      rep.stats = encode_neural(data, n, params, sink, give_up_check(options, params.streams, n, rep));
    } catch (const GiveUp&) {
      gave_up = true;
      rep.stats = CodingStats{};
      rep.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    h.method = Method::kNeural;
    h.preset = options.preset;
    h.model = params.model;
    h.streams = params.streams;
    h.threads = params.runtime.threads;
    h.backend = current_backend(params.runtime.device);
    h.payload_size = payload.size();
  }
  std::vector<uint8_t> out = write_header(h);
  if (gave_up || (h.method == Method::kNeural && out.size() + payload.size() >= n + kStoredHeaderSize)) {
    // The model could not shrink this input: store it.
    rep.stored_blocks = 1;
    h = Header{};
    h.original_size = n;
    h.content_crc = content_crc;
    out = write_header(h);
  }
  if (h.method == Method::kNeural) {
    out.insert(out.end(), payload.begin(), payload.end());
  } else {
    out.insert(out.end(), data, data + n);
  }
  rep.header = h;
  return out;
}

std::vector<uint8_t> compress_blocks(const uint8_t* data, uint64_t n, uint64_t block_size, int jobs,
                                     const CompressOptions& options, CompressReport* report) {
  SHAZIP_ASSERT(block_size > 0 && jobs >= 1);
  const uint64_t blocks = block_count(n, block_size);
  if (blocks == 1) return compress_buffer(data, n, options, report);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<uint8_t>> parts(blocks);
  std::vector<CompressReport> reports(blocks);
  ProgressSum progress(blocks, options.progress);
  // One GPU: one job at a time (the blocks, and so the result, stay the same).
  const int parallel = options.runtime.device == model::DeviceKind::kCuda ? 1 : jobs;
  run_parallel(blocks, parallel, [&](size_t i, const auto& stop) {
    CompressOptions block = options;
    block.progress = stoppable(progress.part(i), stop);
    block.sharers = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(parallel), blocks));
    const uint64_t at = i * block_size;
    parts[i] = compress_buffer(data + at, std::min(block_size, n - at), block, &reports[i]);
  });

  CompressReport sum;
  sum.header = reports[0].header;
  sum.blocks = blocks;
  size_t total = 0;
  for (size_t i = 0; i < blocks; ++i) {
    const CodingStats& s = reports[i].stats;
    sum.stats.coded_bytes += s.coded_bytes;
    sum.stats.model_bits += s.model_bits;
    sum.stats.nn_bits += s.nn_bits;
    sum.stats.predict_seconds += s.predict_seconds;
    sum.stats.train_seconds += s.train_seconds;
    sum.gave_up_at += reports[i].gave_up_at;
    sum.stored_blocks += reports[i].stored_blocks;
    total += parts[i].size();
  }
  // Stored early, every such block at a glance.
  sum.at_a_glance = sum.gave_up_at > 0 && std::all_of(reports.begin(), reports.end(), [](const CompressReport& r) {
                      return r.gave_up_at == 0 || r.at_a_glance;
                    });
  sum.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (report) *report = sum;
  std::vector<uint8_t> out;
  out.reserve(total);
  for (std::vector<uint8_t>& part : parts) {
    out.insert(out.end(), part.begin(), part.end());
    std::vector<uint8_t>().swap(part);
  }
  return out;
}

uint64_t compress_memory(int preset, uint64_t n) {
  if (n == 0) return 0;
  const CodingParams params = compress_params(preset, n);
  return coding_memory(params.model, params.streams, n);
}

uint64_t decode_memory(const Header& h) {
  return h.method == Method::kNeural ? coding_memory(h.model, h.streams, h.original_size) : 0;
}

int jobs_within_memory(int jobs, uint64_t per_job, uint64_t available) {
  const uint64_t fit = available / std::max<uint64_t>(per_job, 1);
  return static_cast<int>(std::clamp<uint64_t>(fit, 1, static_cast<uint64_t>(std::max(jobs, 1))));
}

std::vector<uint8_t> decompress_buffer(const uint8_t* archive, size_t size, const ProgressFn& progress) {
  return decompress_members(archive, split_members(archive, size), progress);
}

std::vector<uint8_t> decompress_members(const uint8_t* file, const std::vector<Member>& members,
                                        const ProgressFn& progress, int jobs) {
  std::vector<uint8_t> out(content_size(members));
  std::vector<uint64_t> at(members.size(), 0);
  for (size_t i = 1; i < members.size(); ++i) at[i] = at[i - 1] + members[i - 1].header.original_size;
  // Several at once where each is stored or portable, and none needs the
  // GPU (one GPU codes one archive at a time, as in compression).
  const bool independent = std::all_of(members.begin(), members.end(), [](const Member& m) {
    return m.header.method == Method::kStored ||
           (portable_arithmetic(m.header) && decode_device(m.header) == model::DeviceKind::kCpu);
  });
  ProgressSum sum(members.size(), progress);
  run_parallel(members.size(), independent ? jobs : 1, [&](size_t i, const auto& stop) {
    const Member& m = members[i];
    decode_member(m.header, file + m.offset + m.header_size, out.data() + at[i], stoppable(sum.part(i), stop));
  });
  return out;
}

}  // namespace shazip
