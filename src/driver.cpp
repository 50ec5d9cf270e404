// The coding loop: predict, code (whole bytes, or bit by bit through the
// mixing stage), observe.
#include "src/driver.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "coder/assert.h"
#include "model/context_mix.h"

#include "src/errors.h"

namespace shazip {
namespace {

// -log2 of the SHA-RNN's float probability of the bytes at position i, over
// the streams that still have one: the statistic nn_bits.
double nn_bits_at(const float* probs, const uint8_t* bytes, int streams, uint64_t i, uint64_t len, uint64_t n) {
  double bits = 0;
  for (int b = 0; b < streams; ++b) {
    if (b * len + i < n) bits -= std::log2(static_cast<double>(probs[b * 256 + bytes[b]]));
  }
  return bits;
}

// Where walk() takes each position's tables from. A Model offers
//   const uint32_t* next();                    streams x kCdfSize integers for
//                                              the next position
//   void done(uint64_t i, const uint8_t* b);   the bytes coded at position i
//                                              (fillers for ended streams)
//   void finish(CodingStats&);                 the model's share of the stats
//
// InlineModel runs the predictor on the coding thread: predict, code, observe.
// The decoder needs this order, since the model observes what was decoded.
class InlineModel {
 public:
  InlineModel(const CodingParams& params, uint64_t len, uint64_t n)
      : predictor_(params.model, params.streams, params.runtime),
        cdfs_(static_cast<size_t>(params.streams) * coder::kCdfSize),
        len_(len), n_(n) {
    predictor_.expect_positions(static_cast<int64_t>(len));
  }
  const uint32_t* next() {
    predict_into(cdfs_.data());
    return cdfs_.data();
  }
  // next(), writing the tables to `cdfs` (streams x kCdfSize) instead.
  void predict_into(uint32_t* cdfs) { predictor_.predict(cdfs); }
  void done(uint64_t i, const uint8_t* bytes) {
    nn_bits_ += nn_bits_at(predictor_.probs(), bytes, predictor_.streams(), i, len_, n_);
    predictor_.observe(bytes);
  }
  void finish(CodingStats& stats) const {
    stats.nn_bits = nn_bits_;
    stats.predict_seconds = predictor_.predict_seconds();
    stats.train_seconds = predictor_.train_seconds();
  }

 private:
  model::Predictor predictor_;
  std::vector<uint32_t> cdfs_;
  uint64_t len_, n_;
  double nn_bits_ = 0;
};

// The encoder's model: every byte the model observes is known in advance, so
// a thread of its own runs an InlineModel up to `depth` positions ahead of the
// coder and leaves the tables in a ring. The arithmetic is InlineModel's (it is
// built on that thread, so its thread settings apply there); only the coder and
// the mixing stage no longer wait for it, nor it for them.
class ModelAhead {
 public:
  ModelAhead(const CodingParams& params, const uint8_t* data, uint64_t len, uint64_t n)
      : params_(params), data_(data), len_(len), n_(n),
        slot_size_(static_cast<size_t>(params.streams) * coder::kCdfSize) {
    // A few MB of tables: enough to ride out a training step's wait.
    depth_ = std::clamp<uint64_t>((size_t{16} << 20) / (slot_size_ * sizeof(uint32_t)), 2, 64);
    ring_.resize(depth_ * slot_size_);
    thread_ = std::thread([this] { run(); });
  }
  ~ModelAhead() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  ModelAhead(const ModelAhead&) = delete;
  ModelAhead& operator=(const ModelAhead&) = delete;

  const uint32_t* next() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return produced_ > consumed_ || error_ || finished_; });
    if (produced_ > consumed_) return ring_.data() + (consumed_ % depth_) * slot_size_;
    if (error_) std::rethrow_exception(error_);
    SHAZIP_ASSERT(!"walk() asked for a position past the end");
    return nullptr;
  }
  void done(uint64_t, const uint8_t*) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++consumed_;
    }
    cv_.notify_all();
  }
  void finish(CodingStats& stats) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return finished_; });
    if (error_) std::rethrow_exception(error_);
    stats.nn_bits = model_stats_.nn_bits;
    stats.predict_seconds = model_stats_.predict_seconds;
    stats.train_seconds = model_stats_.train_seconds;
  }

 private:
  void run() {
    std::exception_ptr error;
    try {
      InlineModel model(params_, len_, n_);
      std::vector<uint8_t> bytes(params_.streams);
      for (uint64_t i = 0; i < len_; ++i) {
        {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock, [this] { return stop_ || produced_ - consumed_ < depth_; });
          if (stop_) return;
        }
        model.predict_into(ring_.data() + (i % depth_) * slot_size_);
        for (int b = 0; b < params_.streams; ++b) {
          const uint64_t at = b * len_ + i;
          bytes[b] = at < n_ ? data_[at] : 0;
        }
        model.done(i, bytes.data());
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++produced_;
        }
        cv_.notify_all();
      }
      model.finish(model_stats_);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = error;
      finished_ = true;
    }
    cv_.notify_all();
  }

  const CodingParams params_;
  const uint8_t* data_;
  const uint64_t len_, n_;
  const size_t slot_size_;
  uint64_t depth_ = 2;
  std::vector<uint32_t> ring_;  // depth_ slots; position i in slot i % depth_
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t produced_ = 0, consumed_ = 0;  // positions: slots [consumed_, produced_) are filled
  bool stop_ = false, finished_ = false;
  std::exception_ptr error_;
  CodingStats model_stats_;  // the model's share, written by the thread before finished_ is set
  std::thread thread_;  // last: starts once everything above exists
};

// Shared walk over positions. The Side codes or decodes:
//   int byte(at, cdf):      the byte at offset `at` with the SHA-RNN's table;
//   int bit(at, k, p16):    bit k (0 = most significant) of that byte with
//                           probability p16 / 2^16 of a 1 (mixing stage).
template <class Model, class Side>
CodingStats walk(uint64_t n, uint64_t len, const CodingParams& params, Model& model, Side& side,
                 const ProgressFn& progress, uint64_t progress_every) {
  CodingStats stats;
  const auto t0 = std::chrono::steady_clock::now();
  const int streams = params.streams;
  std::unique_ptr<model::ContextMixer> mixer;
  if (params.model.mix) {
    mixer = std::make_unique<model::ContextMixer>(streams, len, model::mix_tuning(params.model));
  }
  std::vector<uint8_t> bytes(streams, 0);
  uint64_t done = 0, next_report = progress_every;
  for (uint64_t i = 0; i < len; ++i) {
    const uint32_t* cdfs = model.next();
    for (int b = 0; b < streams; ++b) {
      const uint64_t at = b * len + i;
      if (at >= n) {
        bytes[b] = 0;  // filler for a stream that has ended
        continue;
      }
      const uint32_t* cdf = cdfs + static_cast<size_t>(b) * coder::kCdfSize;
      uint8_t byte;
      if (mixer) {
        mixer->begin(b);
        for (int k = 0; k < 8; ++k) {
          const uint32_t p16 = mixer->predict(model::nn_bit_p12(cdf, mixer->c0()));
          const int bit = side.bit(at, k, p16);
          stats.model_bits -= std::log2((bit ? p16 : coder::kBitTotal - p16) / double{coder::kBitTotal});
          mixer->update(bit);
        }
        byte = static_cast<uint8_t>(mixer->byte());
      } else {
        byte = static_cast<uint8_t>(side.byte(at, cdf));
        stats.model_bits -= std::log2(static_cast<double>(cdf[byte + 1] - cdf[byte]) / coder::kFreqTotal);
      }
      bytes[b] = byte;
      ++done;
    }
    model.done(i, bytes.data());
    if (progress && progress_every && done >= next_report) {
      progress(done, stats.model_bits);
      next_report = done + progress_every;
    }
  }
  if (progress) progress(done, stats.model_bits);
  model.finish(stats);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

struct EncodeSide {
  const uint8_t* data;
  coder::Encoder& enc;
  int byte(uint64_t at, const uint32_t* cdf) {
    enc.encode(cdf, data[at]);
    return data[at];
  }
  int bit(uint64_t at, int k, uint32_t p16) {
    const int b = (data[at] >> (7 - k)) & 1;
    enc.encode_bit(b, p16);
    return b;
  }
};

struct DecodeSide {
  coder::Decoder& dec;
  uint8_t* out;
  int byte(uint64_t at, const uint32_t* cdf) {
    out[at] = static_cast<uint8_t>(dec.decode(cdf));
    return out[at];
  }
  int bit(uint64_t at, int k, uint32_t p16) {
    const int b = dec.decode_bit(p16);
    if (k == 0) out[at] = 0;
    out[at] = static_cast<uint8_t>(out[at] | b << (7 - k));
    return b;
  }
};

}  // namespace

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return sched_getaffinity(0, sizeof set, &set) == 0 ? std::max(CPU_COUNT(&set), 1) : 1;
}

bool lookahead_pays(const CodingParams& params, int sharers) {
  if (params.runtime.device == model::DeviceKind::kCuda) return true;
  const bool trainer = params.model.train_lag && params.runtime.async_train;
  return usable_cores() >= std::max(sharers, 1) * (params.runtime.threads * (trainer ? 2 : 1) + 1);
}

int choose_streams(uint64_t n, int max_streams, uint64_t min_stream_bytes) {
  const uint64_t by_size = std::max<uint64_t>(1, n / std::max<uint64_t>(1, min_stream_bytes));
  return static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(std::max(1, max_streams)), by_size));
}

CodingStats encode_neural(const uint8_t* data, uint64_t n, const CodingParams& params,
                          coder::ByteSink& sink, const ProgressFn& progress,
                          uint64_t progress_every) {
  coder::Encoder enc(sink);
  EncodeSide side{data, enc};
  CodingStats stats;
  if (n > 0) {
    const uint64_t len = stream_length(n, params.streams);
    if (params.lookahead) {
      ModelAhead model(params, data, len, n);
      stats = walk(n, len, params, model, side, progress, progress_every);
    } else {
      InlineModel model(params, len, n);
      stats = walk(n, len, params, model, side, progress, progress_every);
    }
  }
  enc.finish();
  stats.coded_bytes = enc.bytes_out();
  return stats;
}

CodingStats decode_neural(const uint8_t* payload, size_t size, uint64_t n,
                          const CodingParams& params, uint8_t* out,
                          const ProgressFn& progress, uint64_t progress_every) {
  coder::Decoder dec(payload, size);
  DecodeSide side{dec, out};
  CodingStats stats;
  if (n > 0) {
    const uint64_t len = stream_length(n, params.streams);
    InlineModel model(params, len, n);
    stats = walk(n, len, params, model, side, progress, progress_every);
  }
  // The container has already checked that the payload is complete, so a
  // decoder that runs past its end was led there by damaged data.
  if (dec.overran()) throw Error(ErrorCode::kCorrupt, "corrupt archive: the coded data is damaged (it ends too early)");
  if (dec.corrupt()) throw Error(ErrorCode::kCorrupt, "corrupt archive: the coded data is damaged");
  stats.coded_bytes = size;
  return stats;
}

}  // namespace shazip
