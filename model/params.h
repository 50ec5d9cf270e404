// The SHA-RNN's parameters without LibTorch: their names and shapes in the
// order ShaRnn registers them (model/sha_rnn.h), their seeded initial values,
// and the flat layout that flat training (format 5 on) keeps them in, one
// zero-padded float array. The LibTorch model and the kernel predictor
// (model/kernel_predictor.h) share these, so both start from the same bits.
//
// Torch-free.
#pragma once

#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/step_kernels.h"
#include "model/train_kernels.h"

namespace shazip::model {

// The LayerNorms' epsilon: the reference model.py's apex FusedLayerNorm's.
constexpr double kLayerNormEps = 1e-12;

// The kernels' shapes of a model for `batch` streams: the step path's
// (model/step_kernels.h) and the training step's (model/train_kernels.h).
step::Shape step_shape_for(const ModelConfig& cfg, int64_t batch);
train::Shape train_shape_for(const ModelConfig& cfg, int64_t batch);

struct ParamSpec {
  std::string name;            // as registered: "embed", "block0_lstm_weight_ih", "attn_qs", ...
  std::vector<int64_t> shape;  // row-major
  int64_t numel() const;
};

// The one list of the parameters: each block's 12 and the attention's 13,
// their names after the prefix ("block<l>_", "attn_"), shapes and fields in
// train::BlockParams / train::AttnParams, in registration order. A shape has
// rows_d * d rows, or the Boom's f = boom_factor * d with `boom`, and d
// columns when it is a matrix.
struct FieldShape {
  int64_t rows_d;
  bool boom, matrix;
};
template <class Group, class P>
struct ParamField {
  const char* name;
  FieldShape shape;
  P Group::*member;
};
template <class P>
inline constexpr ParamField<train::BlockParams<P>, P> kBlockFields[] = {
    {"ln_start_weight", {1, false, false}, &train::BlockParams<P>::ln_start_w},
    {"ln_start_bias", {1, false, false}, &train::BlockParams<P>::ln_start_b},
    {"lstm_weight_ih", {4, false, true}, &train::BlockParams<P>::w_ih},
    {"lstm_weight_hh", {4, false, true}, &train::BlockParams<P>::w_hh},
    {"lstm_bias_ih", {4, false, false}, &train::BlockParams<P>::b_ih},
    {"lstm_bias_hh", {4, false, false}, &train::BlockParams<P>::b_hh},
    {"ln_ff_weight", {1, false, false}, &train::BlockParams<P>::ln_ff_w},
    {"ln_ff_bias", {1, false, false}, &train::BlockParams<P>::ln_ff_b},
    {"ln_xff_weight", {1, false, false}, &train::BlockParams<P>::ln_xff_w},
    {"ln_xff_bias", {1, false, false}, &train::BlockParams<P>::ln_xff_b},
    {"boom_weight", {0, true, true}, &train::BlockParams<P>::boom_w},
    {"boom_bias", {0, true, false}, &train::BlockParams<P>::boom_b},
};
template <class P>
inline constexpr ParamField<train::AttnParams<P>, P> kAttnFields[] = {
    {"ln_mem_weight", {1, false, false}, &train::AttnParams<P>::ln_mem_w},
    {"ln_mem_bias", {1, false, false}, &train::AttnParams<P>::ln_mem_b},
    {"ln_mid_weight", {1, false, false}, &train::AttnParams<P>::ln_mid_w},
    {"ln_mid_bias", {1, false, false}, &train::AttnParams<P>::ln_mid_b},
    {"q_weight", {1, false, true}, &train::AttnParams<P>::q_w},
    {"q_bias", {1, false, false}, &train::AttnParams<P>::q_b},
    {"q_ln_weight", {1, false, false}, &train::AttnParams<P>::q_ln_w},
    {"q_ln_bias", {1, false, false}, &train::AttnParams<P>::q_ln_b},
    {"qs", {1, false, false}, &train::AttnParams<P>::qs},
    {"ks", {1, false, false}, &train::AttnParams<P>::ks},
    {"vs", {1, false, false}, &train::AttnParams<P>::vs},
    {"vq_weight", {2, false, true}, &train::AttnParams<P>::vq_w},
    {"vq_bias", {2, false, false}, &train::AttnParams<P>::vq_b},
};

// embed, dec_bias, each block's 12, then the attention's 13 (when attn_layer >= 0).
std::vector<ParamSpec> param_specs(const ModelConfig& cfg);

// A train::Params<P> for cfg whose fields, in param_specs' order, are
// next(spec) for each spec: the flat layout's pointers (FlatLayout::view),
// the LibTorch model's registered tensors (model/sha_rnn.cpp).
template <class P, class Next>
train::Params<P> params_in_order(const ModelConfig& cfg, Next next) {
  const std::vector<ParamSpec> specs = param_specs(cfg);
  size_t i = 0;
  train::Params<P> p;
  p.embed = next(specs[i++]);
  p.dec_bias = next(specs[i++]);
  p.blocks.resize(static_cast<size_t>(cfg.layers));
  for (train::BlockParams<P>& b : p.blocks) {
    for (const auto& field : kBlockFields<P>) b.*field.member = next(specs[i++]);
  }
  if (cfg.attn_layer >= 0) {
    for (const auto& field : kAttnFields<P>) p.attn.*field.member = next(specs[i++]);
  }
  return p;
}

// The same fields of p mapped through f (a parameter's data or gradient).
template <class Q, class P, class F>
train::Params<Q> map_params(const train::Params<P>& p, bool attention, F f) {
  train::Params<Q> q;
  q.embed = f(p.embed);
  q.dec_bias = f(p.dec_bias);
  q.blocks.resize(p.blocks.size());
  for (size_t l = 0; l < p.blocks.size(); ++l) {
    for (size_t k = 0; k < std::size(kBlockFields<P>); ++k) {
      q.blocks[l].*kBlockFields<Q>[k].member = f(p.blocks[l].*kBlockFields<P>[k].member);
    }
  }
  if (attention) {
    for (size_t k = 0; k < std::size(kAttnFields<P>); ++k) {
      q.attn.*kAttnFields<Q>[k].member = f(p.attn.*kAttnFields<P>[k].member);
    }
  }
  return q;
}

// Deterministic weight initialisation independent of LibTorch's generators
// (whose vectorised normal_ differs between CPU capabilities): splitmix64 and
// an Irwin-Hall sum of four uniforms for "normal" draws, all in exact
// double arithmetic, rounded once to float.
class InitRng {
 public:
  explicit InitRng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {  // mean 0, variance 1 (sum of 4 U(0,1) has variance 1/3)
    const double s = uniform() + uniform() + uniform() + uniform();
    return (s - 2.0) * std::sqrt(3.0);
  }

 private:
  uint64_t s_;
};

// The n initial values of parameter `name` of a model of width dim, drawn
// from rng (parameters are drawn one after the other in param_specs' order):
// Linear and Embedding weights ~ N(0, 0.1/sqrt(d)), biases 0; LayerNorm
// weight 1, bias 0; LSTM weights and biases U(-1/sqrt(d), 1/sqrt(d));
// attention gates qs, ks, vs zero.
void init_values(const std::string& name, int64_t dim, InitRng& rng, float* out, int64_t n);

// Flat training's layout: each parameter at a multiple of kFlatAlign floats
// (64 bytes), zeros between.
constexpr int64_t kFlatAlign = 16;

class FlatLayout {
 public:
  explicit FlatLayout(const ModelConfig& cfg);
  int64_t size() const { return size_; }  // floats, padding included
  const std::vector<ParamSpec>& specs() const { return specs_; }
  const std::vector<int64_t>& offsets() const { return offsets_; }
  // Writes the initial weights (ModelConfig::seed) into base[0, size()).
  void init(float* base) const;
  // The parameters within a buffer laid out so (weights, or gradients).
  template <class P>
  train::Params<P> view(P base) const;

 private:
  ModelConfig cfg_;
  std::vector<ParamSpec> specs_;
  std::vector<int64_t> offsets_;
  int64_t size_ = 0;
};

extern template train::Params<const float*> FlatLayout::view(const float*) const;
extern template train::Params<float*> FlatLayout::view(float*) const;

}  // namespace shazip::model
