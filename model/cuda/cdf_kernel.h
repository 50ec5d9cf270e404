// Device-side softmax -> integer cumulative table (the coder's input), so that
// only B x 257 integers cross to the host per step and the quantization runs
// where the logits are. Plain CUDA runtime API, no LibTorch: callers pass raw
// device pointers and a stream (the Predictor takes them from its tensors).
//
// Bit-exactness: quantize_probs_device() computes exactly what
// coder::quantize_probs() computes on the host for the same floats (the
// integer method of coder/quantize.cpp: floor(p * 2^24), 128-bit fixed-point
// shares, remainder to the first most probable symbol); the [gpu] tests check
// it. softmax_quantize_device() adds a softmax with fixed-shape tree
// reductions (no atomics), so that its floats depend only on the logits, the
// GPU architecture and the compiler, never on scheduling.
#pragma once

#include <cstdint>

#include "model/cuda/simt.h"

namespace shazip::model::SHAZIP_CUDA_NS {

// probs: rows x 256 floats (device); cdf: rows x 257 uint32 (device).
cudaError_t quantize_probs_device(const float* probs, uint32_t* cdf, int rows, cudaStream_t stream);

// logits: rows x 256 floats (device). Writes the softmax to probs (device,
// rows x 256; may be null when not wanted) and its table to cdf.
cudaError_t softmax_quantize_device(const float* logits, float* probs, uint32_t* cdf, int rows,
                                    cudaStream_t stream);

// The same with the CPU step path's softmax (step::softmax: exp(x - max) by
// det_expf, divided by the sum8 of the 256 exps): what the CUDA step kernels
// (format 9, model/cuda/step_kernels.h) feed the coder, so that the tables
// equal the CPU's bit for bit.
cudaError_t det_softmax_quantize_device(const float* logits, float* probs, uint32_t* cdf, int rows,
                                        cudaStream_t stream);

}  // namespace shazip::model::SHAZIP_CUDA_NS
