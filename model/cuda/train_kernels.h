// The training step on the GPU (format 10, ModelConfig::cuda_train_kernels):
// model/train_kernels.h's forward pass, backward pass and Adam step as CUDA
// kernels that compute exactly its bits. Every output is the same sequence
// of IEEE operations in the same order as on the CPU (the dot8 lanes, the
// chains over rows, model/kernel_math.h's elementwise functions), each sum
// in one thread or in eight threads of one block, whatever the launch shape,
// the GPU model or the scheduling; no cuBLAS, no atomics. With the CUDA step
// kernels (format 9) a GPU then codes the CPU's archive: it decodes on
// either (docs/FORMAT.md, "Training kernels").
//
// Plain CUDA runtime API, no LibTorch: callers pass raw device pointers laid
// out as LibTorch keeps the parameters (train::Params) and a stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "model/cuda/simt.h"

#include "model/train_kernels.h"

namespace shazip::model::SHAZIP_CUDA_NS {

class TrainPass {
 public:
  TrainPass();
  ~TrainPass();
  TrainPass(const TrainPass&) = delete;
  TrainPass& operator=(const TrainPass&) = delete;

  // train::SegmentPass::run with every pointer on the device and the work
  // queued on `stream`: bytes (B, T + 1) int64, column 0 the byte before the
  // segment; overwrites every gradient in g. Keeps its saved activations in
  // device memory of its own, allocated on first use and when a larger
  // shape comes (which synchronises the device).
  cudaError_t run(const train::Shape& shape, const train::Weights& w, const train::Start& start,
                  const int64_t* bytes, const train::Grads& g, cudaStream_t stream);

  // The mean cross-entropy of the last run's bytes in nats, as
  // SegmentPass::run returns it (the same bits): waits for the stream.
  double loss(cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Device floats adam_step_device() needs as scratch for n parameters.
size_t adam_scratch_floats(int64_t n);

// train::adam_step with cfg.block_norm (format 10): the clip's norm as
// blocks of train::kNormBlock floats, their dot8s on the whole GPU, then the
// sum8 of the blocks; then the Adam step elementwise. The block_norm-less
// norm (formats 7-9, one dot8 over every parameter, eight chains each n / 8
// long) has no GPU version: it cannot be spread over the GPU's threads.
cudaError_t adam_step_device(const train::AdamConfig& cfg, double beta1_pow, double beta2_pow, int64_t n, float* w,
                             float* g, float* m, float* v, float* scratch, cudaStream_t stream);

}  // namespace shazip::model::SHAZIP_CUDA_NS
