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
#include <string>
#include <vector>

#include "model/config.h"
#include "model/train_kernels.h"

namespace shazip::model {

// The LayerNorms' epsilon: the reference model.py's apex FusedLayerNorm's.
constexpr double kLayerNormEps = 1e-12;

struct ParamSpec {
  std::string name;            // as registered: "embed", "block0_lstm_weight_ih", "attn_qs", ...
  std::vector<int64_t> shape;  // row-major
  int64_t numel() const;
};
// embed, dec_bias, each block's 12, then the attention's 13 (when attn_layer >= 0).
std::vector<ParamSpec> param_specs(const ModelConfig& cfg);

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
