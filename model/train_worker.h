// The predictors' training worker: training steps run inline or on a thread
// of their own, one at a time. Torch-free.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "coder/assert.h"

namespace shazip::model {

// The training steps, run inline or on a thread of their own. One job at a
// time: the predictor submits the step for segment k and, one segment later,
// waits for it before taking its weights (train_lag 1); with train_lag 0 it
// runs each job inline and the step path uses the trained weights directly.
class TrainWorker {
 public:
  using Job = std::function<void()>;

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
    }
    cv_.notify_all();
  }

  // Blocks until the submitted job has finished; rethrows what it threw.
  void wait() {
    if (!thread_.joinable()) return;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !busy_; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void loop(const std::function<void()>& setup) {
    setup();
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || job_; });
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
      cv_.notify_all();
    }
  }

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  Job job_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
};

// Seconds on a monotonic clock, for the predictors' timings.
inline double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace shazip::model
