// The step path on the GPU (format 9, ModelConfig::cuda_step_kernels): one
// position of B streams in about five kernel launches per block (seven more
// for the attention) instead of LibTorch's 56 to 120 operators at presets
// 6-9 (benchmarks/RESULTS.md, "Operators per coded byte"), computing
// exactly what the CPU's step kernels (model/step_kernels.h) compute: every
// output is the same sequence of IEEE operations (the dot8 lanes, the chains,
// model/kernel_math.h's elementwise functions) in the same order, whatever the
// launch shape, the GPU model or the scheduling. No cuBLAS, no atomics.
//
// Plain CUDA runtime API, no LibTorch: callers pass raw device pointers laid
// out as LibTorch keeps the parameters (train::Params, row-major (out, in)
// weight matrices) and a stream; the Predictor takes them from its tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/cuda/simt.h"

#include "model/step_kernels.h"
#include "model/train_kernels.h"

namespace shazip::model::SHAZIP_CUDA_NS {

// The model's shape and the streams' state (model/step_kernels.h).
using StepShape = step::Shape;
using StepState = step::State;

// Which product kernels the step and training kernels launch: the tiled
// product of tiled_product.cuh (the default) or the plain kernels, one
// thread per output (kernels_common.cuh). Both compute the same bits, so
// this changes the speed alone; process-wide, for benchmarks to compare
// them (bench_model --tiled).
void set_tiled_products(bool on);
bool tiled_products();

// Floats of scratch step_device() needs (device memory, caller-owned).
size_t step_scratch_floats(const StepShape& shape);

// One position: bytes (B,) int64, the previous byte of every stream (device);
// the current position's memory entry goes to slot `write_slot`, after which
// slots [0, keys) are the attention's keys (ShaRnnState's mem_pos and its
// mem_fill + 1, at most S). query_gate and value_gate (d) as
// attention_gates_device() leaves them. Writes logits (B, 256).
cudaError_t step_device(const StepShape& shape, const train::Weights& w, const float* query_gate,
                        const float* value_gate, const StepState& state, int64_t write_slot, int64_t keys,
                        const int64_t* bytes, float* scratch, float* logits, cudaStream_t stream);

// The attention's cached gates, as train::attention_gates() computes them on
// the CPU: query_gate = sigmoid(qs) * sigmoid(ks) * (1 / sqrt(d)), value_gate
// from the overparameterised linear over sigmoid(vs). scratch: d floats.
cudaError_t attention_gates_device(const train::AttnParams<const float*>& a, int64_t d, float* scratch,
                                   float* query_gate, float* value_gate, cudaStream_t stream);

}  // namespace shazip::model::SHAZIP_CUDA_NS
