// The online predictor on shazip's own CPU kernels alone: the step path
// (model/step_kernels.h), the training step and Adam (model/train_kernels.h)
// over flat float arrays, with no LibTorch tensor, module or operator in
// between. It codes the models of format 7 on (ModelConfig::step_kernels,
// train_kernels and flat_train) on the CPU, computing the same bits as the
// LibTorch-held ShaRnn on the same kernels did before (tests/test_model.cpp
// compares the two), without ATen's per-call costs. model::Predictor hands
// such models to it (handles()); it has Predictor's contract (predictor.h).
//
// Torch-free.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/online.h"
#include "model/params.h"
#include "model/step_kernels.h"
#include "model/torch_backend.h"
#include "model/train_kernels.h"

namespace shazip::model {

class KernelPredictor final : public PredictorBackend {
 public:
  // Whether a model runs on the kernels from end to end: step and training
  // kernels with flat training (format 7 on), on the CPU.
  static bool handles(const ModelConfig& cfg, bool on_cpu);

  // async_train: at train_lag 1, training steps on a thread of their own.
  KernelPredictor(const ModelConfig& cfg, int streams, bool async_train);
  ~KernelPredictor() override;
  KernelPredictor(const KernelPredictor&) = delete;
  KernelPredictor& operator=(const KernelPredictor&) = delete;

  int streams() const override { return streams_; }
  const ModelConfig& config() const override { return cfg_; }
  void predict(uint32_t* cdfs) override;
  const float* probs() const override { return probs_.data(); }
  void observe(const uint8_t* bytes) override;
  void expect_positions(int64_t total) override { book_.expect_positions(total); }
  int64_t positions() const override { return book_.positions(); }
  int64_t train_steps() const override { return book_.steps(); }
  double predict_seconds() const override { return book_.predict_seconds(); }
  double train_seconds() const override { return book_.train_seconds(); }

 private:
  // The recurrent state of B streams: per layer h and c (B, d), the
  // attention's memory (B, S, d) with its ring position.
  struct State {
    std::vector<std::vector<float>> h, c;
    std::vector<float> mem;
    int64_t mem_fill = 0, mem_pos = 0;
    int64_t positions = 0;  // observed when this state was the step path's (segment starts)
  };
  // Weights laid out by layout_, with the attention gates the step path uses.
  struct Weights {
    std::vector<float> flat;
    std::vector<float> query_gate, value_gate;  // (d) each, with attention
  };

  void refresh_gates(Weights& w) const;
  void end_segment();
  // Makes `to`, a segment start taken some positions ago, the state now.
  void refresh_start(State& to);
  // The training step(s) of one segment: bytes (B, T + 1), from `start`.
  void train(const std::vector<int64_t>& bytes, const State& start, int64_t step, int from);
  void adam_step(double lr, const float* w, float* w_out);
  // Adam's elements per chunk that the coding thread may take (a few
  // microseconds' work; preset 2's 166 thousand weights make 21 chunks).
  static constexpr int64_t kAdamChunk = 8192;

  ModelConfig cfg_;
  int streams_;
  FlatLayout layout_;
  // The weights. At train_lag 0 only weights_[0], which the training steps
  // update in place and the step path reads. At lag 1 two buffers in turn:
  // the step path reads weights_[net_at_] while the training step on the
  // last segment reads them too and writes its result into the other
  // buffer; at the end of the next segment the step path moves over to it
  // (no copy: a copy of the weights per segment was 2% of the coding
  // thread's time on book1).
  Weights weights_[2];
  int net_at_ = 0;
  bool stepped_ = false;  // lag 1: a step wrote weights_[net_at_ ^ 1] that the step path has not taken
  std::vector<float> grad_, exp_avg_, exp_avg_sq_;
  double beta1_pow_ = 1.0, beta2_pow_ = 1.0;
  train::SegmentPass pass_;
  State state_;  // after the last observed position
  // Segment starts: starts_[start_at_] the current segment's; the other the
  // previous one's, which its training job may still be reading.
  State starts_[2];
  int start_at_ = 0;
  std::vector<int64_t> prev_;     // (B) the last observed byte per stream
  std::vector<float> probs_;      // (B, 256)
  std::vector<float> scratch_;    // step::forward's
  step::Shape step_shape_;        // the step path's, for all B streams
  step::State step_state_;        // pointers into state_
  train::Weights views_[2];        // weights_[i].flat as the kernels take it (at lag 0 only [0])
  train::Grads grads_;              // grad_ likewise
  SegmentBook book_;
  std::unique_ptr<TrainWorker> worker_;  // declared last: destroyed (joined) first
};

}  // namespace shazip::model
