// LSTM layer with hand-written forward and backward passes.
//
// LibTorch's CPU LSTM runs a dozen small ops per time step, each recorded for
// autograd; at the sizes shazip uses (d ~ 128, 32 streams) that overhead is
// most of the training time. Here a time step is one GEMM (h @ W_hh^T added to
// the input projections that are computed for the whole segment at once) and
// one pointwise pass in plain C++; the backward pass is one GEMM and one
// pointwise pass per step, with the weight gradients as three large GEMMs at
// the end. The pointwise pass (step::lstm_pointwise, model/step_kernels.h)
// uses its own exp (det_expf) so that results do not depend on which libm
// variant the CPU selects.
//
// Gate order i, f, g, o as in PyTorch, so the weights are interchangeable with
// torch::nn::LSTM's.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace shazip::model {

// One inference step: returns (h, c) for x (B, d), states (B, d).
std::pair<at::Tensor, at::Tensor> lstm_step(const at::Tensor& x, const at::Tensor& h,
                                            const at::Tensor& c, const at::Tensor& w_ih,
                                            const at::Tensor& w_hh, const at::Tensor& b_ih,
                                            const at::Tensor& b_hh);

// Whole layer over a segment with autograd: x (B, T, d) batch-first, initial
// states (B, d) treated as constants. Returns the hidden states (B, T, d).
at::Tensor lstm_layer(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                      const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& b_ih,
                      const at::Tensor& b_hh);

}  // namespace shazip::model
