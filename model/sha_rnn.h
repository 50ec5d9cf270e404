// SHA-RNN (Merity 2019, "Single Headed Attention RNN") as a LibTorch module,
// with the two forward paths that online compression needs:
//   step()            one position for every stream, carrying LSTM states and
//                     the attention memory; this is what produces the
//                     probabilities that are coded, on both sides
//   forward_segment() teacher-forced pass over the segment just coded, with
//                     autograd, used only for the training step
// The two give equal results within float rounding but not bit for bit; the
// coder only ever sees step()'s output, and both encoder and decoder run the
// same forward_segment() on the same bytes, so each path is reproducible on
// its own.
//
// Layout per block (as the reference model.py): LayerNorm -> LSTM (no
// residual) -> [attention block: LayerNorm for keys/values and for the query
// side, single-head attention over memory + segment, residual] -> two
// LayerNorms -> Boom (Linear d->4d, x*sigmoid(1.702x), sum of the four d-wide
// chunks) + residual. Output: tied embedding as decoder, with bias.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "model/config.h"
#include "model/step_kernels.h"
#include "model/train_kernels.h"

namespace shazip::model {

#ifdef SHAZIP_HAVE_CUDA
namespace cuda {
class TrainPass;  // model/cuda/train_kernels.h
}
#endif

// Recurrent state of B streams. Never requires grad.
struct ShaRnnState {
  std::vector<at::Tensor> h, c;  // per layer: (B, d)
  at::Tensor mem;                // (B, S, d) ring of LayerNormed hidden states, S = M + 1
  int64_t mem_fill = 0;          // valid slots; slots [0, mem_fill) until the ring wraps
  int64_t mem_pos = 0;           // next slot to write
  ShaRnnState clone() const;
  // Streams [from, from + count) of this state: views, no copy.
  ShaRnnState rows(int64_t from, int64_t count) const;
};

class ShaRnnImpl : public torch::nn::Module {
 public:
  explicit ShaRnnImpl(const ModelConfig& cfg);

  ShaRnnState initial_state(int64_t batch, const torch::Device& device) const;

  // x: (B,) int64 input bytes (the previous byte of every stream). Returns
  // logits (B, 256) for the next byte and advances `state` by one position.
  // Call under torch::NoGradGuard. On the CPU with ModelConfig::step_kernels
  // (format 6) it runs on shazip's own kernels (model/step_kernels.h), on
  // CUDA with ModelConfig::cuda_step_kernels (format 9) on their CUDA twins
  // (model/cuda/step_kernels.h, the same bits), both updating the state's
  // tensors in place; else on LibTorch's operators.
  at::Tensor step(const at::Tensor& x, ShaRnnState& state);

  // x: (B, T) int64 inputs. Returns logits (B, T, 256) computed from `state`
  // (left unchanged) with autograd.
  at::Tensor forward_segment(const at::Tensor& x, const ShaRnnState& state);

  // The training step's forward and backward passes on shazip's own kernels
  // (format 7, ModelConfig::train_kernels): bytes (B, T + 1) int64,
  // column 0 the byte before the segment, from `state` (left unchanged).
  // Overwrites every parameter's gradient, which must be defined, with that
  // of the mean cross-entropy of bytes[.][1..T], and returns it in nats.
  // On CUDA with ModelConfig::cuda_train_kernels (format 10) the same on
  // their CUDA twins (model/cuda/train_kernels.h, the same bits), queued on
  // the current stream; the loss is then fetched (a wait) only with
  // `want_loss`, NaN otherwise.
  double train_segment(const at::Tensor& bytes, const ShaRnnState& state, bool want_loss = true);

  const ModelConfig& config() const { return cfg_; }

  // The parameters' data where they live (host or device pointers), for the
  // kernels that take raw arrays (model/train_kernels.h, model/cuda/).
  train::Weights weights() const;
  // Their gradients' data, likewise; every parameter's gradient must be
  // defined (contiguous float32 where its parameter lives).
  train::Grads gradients() const;
  // The training kernels' shape for `batch` streams, and a segment's start
  // from `state` (pointers into its tensors, wherever they live).
  train::Shape train_shape(int64_t batch) const;
  train::Start train_start(const ShaRnnState& state) const;
  // The GPU step kernels' shape for `state`'s streams, and its state
  // (pointers into its tensors, which the step updates in place).
  step::Shape step_shape(const ShaRnnState& state) const;
  step::State step_state(ShaRnnState& state) const;

  // Recomputes the cached attention gates used by step(); call after every
  // change of the weights (optimizer step, load).
  void refresh_gates();

 private:
  // The parameters, registered from params.h's list.
  using Block = train::BlockParams<at::Tensor>;  // LSTM gate order i, f, g, o

  // step() on the step kernels, and on the CUDA step kernels (CUDA builds).
  at::Tensor step_own(const at::Tensor& x, ShaRnnState& state);
  at::Tensor step_cuda(const at::Tensor& x, ShaRnnState& state);
  // The parameters' data, or their gradients', for the training kernels.
  template <class P, class Get>
  train::Params<P> params_of(Get get) const;

  at::Tensor boom(const Block& b, const at::Tensor& h) const;
  at::Tensor query_gate() const;
  at::Tensor value_gate() const;
  void init_weights();

  ModelConfig cfg_;
  train::Params<at::Tensor> p_;  // embed (256, d) is also the decoder's weight
  at::Tensor query_gate_, value_gate_;  // step()'s cached copies, no grad
  std::vector<float> buf_;              // step_own()'s scratch rows
  at::Tensor cuda_scratch_;             // step_cuda()'s, on the device
  train::SegmentPass train_pass_;       // train_segment()'s saved activations
#ifdef SHAZIP_HAVE_CUDA
  std::shared_ptr<cuda::TrainPass> cuda_train_pass_;  // the same on the device
#endif
};
TORCH_MODULE(ShaRnn);

}  // namespace shazip::model
