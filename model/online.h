// What both online predictors share (KernelPredictor, and the LibTorch
// module's in model/torch_predictor.cpp): the training worker, which runs
// the training steps inline or on a thread of their own, one at a time, and
// the bookkeeping of segments, positions, steps and timings. Torch-free.
#pragma once

#include <malloc.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "coder/assert.h"

namespace shazip::model {

// The training steps, run inline or on a thread of their own. One job at a
// time: the predictor submits the step for segment k and, one segment later,
// waits for it before taking its weights (train_lag 1); with train_lag 0 it
// runs each job inline and the step path uses the trained weights directly.
//
// A job may hand part of its work to the thread that waits for it: share()
// runs a loop of independent chunks, and a thread blocked in wait()
// meanwhile takes chunks too. On small inputs the training thread is the
// longer one and the coding thread waits for it at every segment's end.
class TrainWorker {
 public:
  using Job = std::function<void()>;
  using Chunk = std::function<void(int64_t)>;

  // threaded: run jobs on a thread of its own, which first calls `setup`
  // (thread-local settings the arithmetic depends on).
  TrainWorker(bool threaded, std::function<void()> setup) {
    if (threaded) thread_ = std::thread([this, setup = std::move(setup)] { loop(setup); });
  }
  ~TrainWorker() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      events_.fetch_add(1);
    }
    cv_.notify_all();
    thread_.join();
  }
  TrainWorker(const TrainWorker&) = delete;
  TrainWorker& operator=(const TrainWorker&) = delete;

  // Starts `job` (inline: runs it). The previous job must have been waited for.
  void submit(Job job) {
    if (!thread_.joinable()) {
      job();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      SHAZIP_ASSERT(!job_ && !busy_);
      job_ = std::move(job);
      busy_ = true;
      events_.fetch_add(1);
    }
    cv_.notify_all();
  }

  // Blocks until the submitted job has finished, taking chunks of what it
  // shares meanwhile; rethrows what the job threw.
  void wait() {
    if (!thread_.joinable()) return;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      await(lock, &spin_wait_, [this] { return !busy_ || (chunk_ && next_.load() < chunks_); });
      if (!busy_) break;
      const Chunk* chunk = chunk_;
      const int64_t chunks = chunks_;
      ++helpers_;
      lock.unlock();
      run_chunks(*chunk, chunks);
      lock.lock();
      --helpers_;
      events_.fetch_add(1);
      cv_.notify_all();
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  // From a job: chunk(0), ..., chunk(chunks - 1), each once, in any order,
  // on this thread and on one waiting in wait(); returns when all are done.
  // So the chunks must not depend on each other or on which thread runs
  // them, and must not throw. (Inline: runs them in order.)
  void share(int64_t chunks, const Chunk& chunk) {
    if (!thread_.joinable()) {
      for (int64_t c = 0; c < chunks; ++c) chunk(c);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      SHAZIP_ASSERT(busy_ && !chunk_ && std::this_thread::get_id() == thread_.get_id());
      next_.store(0);
      chunk_ = &chunk;
      chunks_ = chunks;
      events_.fetch_add(1);
    }
    cv_.notify_all();
    run_chunks(chunk, chunks);
    // Every chunk is taken; a helper still in one (it takes microseconds)
    // has counted itself in helpers_ and leaves once it is done, so the
    // chunks are all done, and the counters free, when none is left.
    std::unique_lock<std::mutex> lock(mu_);
    chunk_ = nullptr;
    await(lock, &spin_share_, [this] { return helpers_ == 0; });
  }

 private:
  // Waits until ready() (called with the lock held): first for up to *spin
  // awake, looking at the events between the threads, and only then on the
  // condition variable. On the VMs measured a thread's sleep and wake-up
  // took tens of microseconds of both threads' time in the kernel, as long
  // as the waits between them on small inputs (RESULTS.md, "Waits between
  // the threads"). Each place that waits keeps its own spin: kSpin after a
  // wait that ended within it (or that would have, had it spun that long),
  // kSpinAfterLong after a longer one (on large inputs the training thread
  // waits long for every job: spinning there only burnt 3-5% more CPU time).
  template <class Ready>
  void await(std::unique_lock<std::mutex>& lock, std::chrono::microseconds* spin, Ready ready) {
    const auto start = std::chrono::steady_clock::now();
    const auto until = start + *spin;
    *spin = kSpin;
    while (!ready()) {
      const uint64_t seen = events_.load();
      lock.unlock();
      bool late = false;
      while (events_.load() == seen && !(late = std::chrono::steady_clock::now() >= until)) {
        std::this_thread::yield();
      }
      lock.lock();
      if (late) {
        cv_.wait(lock, ready);
        if (std::chrono::steady_clock::now() - start > kSpin) *spin = kSpinAfterLong;
        return;
      }
    }
  }

  void run_chunks(const Chunk& chunk, int64_t chunks) {
    for (int64_t c = next_.fetch_add(1); c < chunks; c = next_.fetch_add(1)) chunk(c);
  }

  void loop(const std::function<void()>& setup) {
    setup();
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      await(lock, &spin_loop_, [this] { return stop_ || job_; });
      if (stop_) return;
      Job job = std::move(job_);
      job_ = nullptr;
      lock.unlock();
      std::exception_ptr error;
      try {
        job();
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      error_ = error;
      busy_ = false;
      events_.fetch_add(1);
      cv_.notify_all();
    }
  }

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  Job job_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  // The job's shared loop, while share() runs (guarded by mu_), the next
  // chunk to take, and the waiting threads taking chunks (guarded by mu_).
  const Chunk* chunk_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  int helpers_ = 0;
  // Changes of the state above that a waiting thread may be waiting for.
  std::atomic<uint64_t> events_{0};
  static constexpr std::chrono::microseconds kSpin{100}, kSpinAfterLong{10};
  std::chrono::microseconds spin_wait_ = kSpin, spin_share_ = kSpin, spin_loop_ = kSpin;
};

// Every segment's training step allocates and frees the same megabyte-sized
// buffers; keeps them in the heap instead of mmap/munmap (page faults were
// ~5% of the time). Process-wide; both predictors call it.
inline void keep_scratch_in_heap() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

// Seconds on a monotonic clock, for the predictors' timings.
inline double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One truncated-BPTT schedule (nncp's): the bytes of the segment being coded,
// B streams by T + 1 (column 0 the byte before the segment), a training step
// at the end of each segment unless no later prediction would use it, the
// predict/observe alternation, and the time spent in each.
class SegmentBook {
 public:
  SegmentBook(int streams, int seg_len, int train_lag)
      : streams_(streams), seg_len_(seg_len), train_lag_(train_lag),
        bytes_(static_cast<size_t>(streams) * (seg_len + 1), 0) {}

  // predict() starts (after an observe(), or first); returns the time.
  double begin_predict() const {
    SHAZIP_ASSERT(!predicted_);
    return seconds_now();
  }
  void end_predict(double t0) {
    predicted_ = true;
    predict_s_ += seconds_now() - t0;
  }
  // observe(): the next byte of every stream. True when it ends a segment.
  bool observe(const uint8_t* bytes) {
    SHAZIP_ASSERT(predicted_);
    predicted_ = false;
    ++seg_pos_;
    for (int b = 0; b < streams_; ++b) bytes_[static_cast<size_t>(b) * (seg_len_ + 1) + seg_pos_] = bytes[b];
    ++positions_;
    return seg_pos_ == seg_len_;
  }
  // At a segment's end: whether a training step started now would be used
  // by a later prediction (at lag 0 the next position's; at lag 1 only
  // after the next full segment), and if so its number, counting it.
  bool take_step(int64_t* step) {
    if (total_positions_ >= 0) {
      const int64_t left = total_positions_ - positions_;
      if (!(train_lag_ ? left > seg_len_ : left > 0)) return false;
    }
    *step = steps_++;
    return true;
  }
  // The segment's bytes, (B, T + 1) row-major.
  const std::vector<int64_t>& bytes() const { return bytes_; }
  // Starts the next segment: the last column becomes its column 0.
  void next_segment() {
    for (int b = 0; b < streams_; ++b) {
      int64_t* row = bytes_.data() + static_cast<size_t>(b) * (seg_len_ + 1);
      row[0] = row[seg_len_];
    }
    seg_pos_ = 0;
  }
  void expect_positions(int64_t total) {
    SHAZIP_ASSERT(total >= positions_);
    total_positions_ = total;
  }
  // From the training worker's thread.
  void add_train_seconds(double s) { train_s_.store(train_s_.load() + s); }

  int64_t positions() const { return positions_; }
  int64_t steps() const { return steps_; }
  double predict_seconds() const { return predict_s_; }
  double train_seconds() const { return train_s_.load(); }

 private:
  int streams_, seg_len_, train_lag_;
  std::vector<int64_t> bytes_;
  int seg_pos_ = 0;
  int64_t positions_ = 0;
  int64_t total_positions_ = -1;  // unknown
  int64_t steps_ = 0;             // training steps started
  bool predicted_ = false;
  double predict_s_ = 0;
  std::atomic<double> train_s_{0};
};

}  // namespace shazip::model
