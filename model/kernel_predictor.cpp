// The online predictor on the CPU kernels alone; see kernel_predictor.h. Each
// step mirrors the LibTorch module's predictor (torch_predictor.cpp) on the
// same kernels: the step path (ShaRnn::step_own), the training step
// (ShaRnn::train_segment), flat Adam (FlatAdam::step_own), the segments,
// groups and lag.
#include "model/kernel_predictor.h"

#include <algorithm>
#include <utility>

#include "coder/assert.h"
#include "coder/quantize.h"
#include "model/step_kernels.h"

namespace shazip::model {

bool KernelPredictor::handles(const ModelConfig& cfg, bool on_cpu) {
  return on_cpu && cfg.step_kernels && cfg.train_kernels && cfg.flat_train;
}

KernelPredictor::KernelPredictor(const ModelConfig& cfg, int streams, bool async_train)
    : cfg_(cfg), streams_(streams), layout_(cfg), book_(streams, cfg.seg_len, cfg.train_lag) {
  SHAZIP_ASSERT(cfg_.validate().empty() && streams_ >= 1 && handles(cfg_, true));
  keep_scratch_in_heap();
  const int64_t d = cfg_.dim, b = streams_, n = layout_.size();

  weights_[0].flat.resize(static_cast<size_t>(n));
  layout_.init(weights_[0].flat.data());
  refresh_gates(weights_[0]);
  if (cfg_.train_lag) weights_[1] = weights_[0];
  grad_.assign(static_cast<size_t>(n), 0.0f);  // the padding's stay zero
  if (cfg_.beta1 != 0) exp_avg_.assign(static_cast<size_t>(n), 0.0f);  // else unused (train::AdamConstants)
  exp_avg_sq_.assign(static_cast<size_t>(n), 0.0f);

  for (int l = 0; l < cfg_.layers; ++l) {
    state_.h.emplace_back(static_cast<size_t>(b * d), 0.0f);
    state_.c.emplace_back(static_cast<size_t>(b * d), 0.0f);
  }
  if (cfg_.attn_layer >= 0) state_.mem.assign(static_cast<size_t>(b * (cfg_.mem_len + 1) * d), 0.0f);
  starts_[0] = starts_[1] = state_;
  // The step path's shape, state and weights as the kernels take them: the
  // buffers behind them keep their places from here on (state_ is only
  // copied from, the weights only written in place).
  step_shape_ = step_shape_for(cfg_, b);
  for (int l = 0; l < cfg_.layers; ++l) {
    step_state_.h.push_back(state_.h[l].data());
    step_state_.c.push_back(state_.c[l].data());
  }
  step_state_.mem = state_.mem.empty() ? nullptr : state_.mem.data();
  for (int i = 0; i < (cfg_.train_lag ? 2 : 1); ++i) views_[i] = layout_.view<const float*>(weights_[i].flat.data());
  grads_ = layout_.view<float*>(grad_.data());
  prev_.assign(static_cast<size_t>(b), 0);
  probs_.assign(static_cast<size_t>(b) * 256, 0.0f);
  // Last: the worker's thread uses the members above.
  worker_ = std::make_unique<TrainWorker>(cfg_.train_lag && async_train, [] {});
}

KernelPredictor::~KernelPredictor() = default;

void KernelPredictor::refresh_gates(Weights& w) const {
  if (cfg_.attn_layer < 0) return;
  w.query_gate.resize(static_cast<size_t>(cfg_.dim));
  w.value_gate.resize(static_cast<size_t>(cfg_.dim));
  train::attention_gates(layout_.view<const float*>(w.flat.data()).attn, cfg_.dim, w.query_gate.data(),
                         w.value_gate.data());
}

void KernelPredictor::predict(uint32_t* cdfs) {
  const double t0 = book_.begin_predict();
  const bool attn = cfg_.attn_layer >= 0;
  const Weights& net = weights_[net_at_];
  step::forward(step_shape_, views_[net_at_], attn ? net.query_gate.data() : nullptr,
                attn ? net.value_gate.data() : nullptr, step_state_, &state_.mem_pos, &state_.mem_fill,
                prev_.data(), scratch_, probs_.data());
  for (int b = 0; b < streams_; ++b) {
    float* p = probs_.data() + static_cast<size_t>(b) * 256;
    step::softmax(p, 256);
    coder::quantize_probs(p, cdfs + static_cast<size_t>(b) * coder::kCdfSize);
  }
  book_.end_predict(t0);
}

void KernelPredictor::observe(const uint8_t* bytes) {
  for (int b = 0; b < streams_; ++b) prev_[b] = bytes[b];
  if (book_.observe(bytes)) end_segment();
}

void KernelPredictor::end_segment() {
  // The step path moves on to the weights of the previous step (lag 1).
  worker_->wait();
  if (stepped_) {
    net_at_ ^= 1;
    refresh_gates(weights_[net_at_]);
    stepped_ = false;
  }
  // The segment just coded trains from its start; the other buffer, free
  // now that the last job is done, becomes the next segment's start.
  const State& start = starts_[start_at_];
  start_at_ ^= 1;
  refresh_start(starts_[start_at_]);
  int64_t step = 0;
  if (book_.take_step(&step)) {
    worker_->submit([this, bytes = book_.bytes(), &start, step, from = net_at_] { train(bytes, start, step, from); });
    stepped_ = cfg_.train_lag != 0;
  }
  book_.next_segment();
}

// `to` held the step path's state some positions ago; it becomes the state
// now. The step path writes one memory slot per stream and position, at
// the ring position, so of the memory only the slots written since are
// copied (at preset 2 and 16 streams two segments' 16 of 65: a copy of 0.4
// MB per segment on the coding thread was 1.8% of its time on book1).
void KernelPredictor::refresh_start(State& to) {
  for (size_t l = 0; l < state_.h.size(); ++l) {
    std::copy(state_.h[l].begin(), state_.h[l].end(), to.h[l].begin());
    std::copy(state_.c[l].begin(), state_.c[l].end(), to.c[l].begin());
  }
  const int64_t now = book_.positions();
  if (!state_.mem.empty()) {
    const int64_t slots = step_shape_.slots, d = cfg_.dim;
    if (now - to.positions >= slots) {
      std::copy(state_.mem.begin(), state_.mem.end(), to.mem.begin());
    } else {
      for (int64_t j = 0; j < now - to.positions; ++j) {
        const int64_t slot = (to.mem_pos + j) % slots;
        for (int64_t b = 0; b < streams_; ++b) {
          const auto from = state_.mem.begin() + (b * slots + slot) * d;
          std::copy(from, from + d, to.mem.begin() + (b * slots + slot) * d);
        }
      }
    }
  }
  to.mem_fill = state_.mem_fill;
  to.mem_pos = state_.mem_pos;
  to.positions = now;
}

// Training groups (format 8): G Adam steps, one after the other, group g on
// streams [g B / G, (g + 1) B / G), each from the weights the one before it
// left; step s of the schedule is the s-th Adam step. From weights_[from]
// (the step path's) into the other buffer at lag 1, in place at lag 0.
void KernelPredictor::train(const std::vector<int64_t>& bytes, const State& start, int64_t step, int from) {
  const int to = cfg_.train_lag ? from ^ 1 : from;
  const double t0 = seconds_now();
  const int64_t rows = streams_, d = cfg_.dim, t = cfg_.seg_len;
  const int64_t slots = step_shape_.slots;
  const int64_t groups = std::min<int64_t>(cfg_.train_groups, rows);
  for (int64_t k = 0; k < groups; ++k) {
    const int64_t first = k * rows / groups, count = (k + 1) * rows / groups - first;
    const train::Shape shape = train_shape_for(cfg_, count);
    train::Start st;
    for (int l = 0; l < cfg_.layers; ++l) {
      st.h.push_back(start.h[l].data() + first * d);
      st.c.push_back(start.c[l].data() + first * d);
    }
    if (cfg_.attn_layer >= 0) {
      st.mem = start.mem.data() + first * slots * d;
      st.slots = slots;
      st.mem_fill = start.mem_fill;
    }
    const int in = k == 0 ? from : to;  // later groups from the group before
    pass_.run(shape, views_[in], st, bytes.data() + first * (t + 1), grads_);
    const int64_t schedule = step * groups + k;
    adam_step(cfg_.lr / (1.0 + cfg_.lr_decay * static_cast<double>(schedule)), weights_[in].flat.data(),
              weights_[to].flat.data());
  }
  if (!cfg_.train_lag) refresh_gates(weights_[0]);
  book_.add_train_seconds(seconds_now() - t0);
}

// FlatAdam::step_own's step: the bias corrections' powers by repeated
// multiplication, the clip and the step on train::adam_step's parts, the
// elements in chunks that the coding thread shares when it is waiting for
// this step (TrainWorker::share; the same bits whoever takes which).
void KernelPredictor::adam_step(double lr, const float* w, float* w_out) {
  const double beta1 = cfg_.beta1, beta2 = cfg_.beta2;
  beta1_pow_ *= beta1;
  beta2_pow_ *= beta2;
  const train::AdamConfig adam{lr, beta1, beta2, cfg_.adam_eps, cfg_.clip, cfg_.block_norm != 0};
  const int64_t n = layout_.size();
  const train::AdamConstants k = train::adam_constants(adam, beta1_pow_, beta2_pow_, n, grad_.data());
  worker_->share((n + kAdamChunk - 1) / kAdamChunk, [&](int64_t c) {
    train::adam_range(k, c * kAdamChunk, std::min(n, (c + 1) * kAdamChunk), w, w_out, grad_.data(), exp_avg_.data(),
                      exp_avg_sq_.data());
  });
}

}  // namespace shazip::model
