// The SHA-RNN's parameter list, initial values and flat layout; see params.h.
#include "model/params.h"

#include <algorithm>

#include "coder/assert.h"

namespace shazip::model {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::vector<ParamSpec> param_specs(const ModelConfig& cfg) {
  const int64_t d = cfg.dim;
  const int64_t f = int64_t{cfg.boom_factor} * d;
  const auto spec = [&](std::string name, const FieldShape& shape) {
    const int64_t rows = shape.boom ? f : shape.rows_d * d;
    return ParamSpec{std::move(name), shape.matrix ? std::vector<int64_t>{rows, d} : std::vector<int64_t>{rows}};
  };
  std::vector<ParamSpec> specs{{"embed", {256, d}}, {"dec_bias", {256}}};
  for (int l = 0; l < cfg.layers; ++l) {
    const std::string prefix = "block" + std::to_string(l) + "_";
    for (const auto& field : kBlockFields<float*>) specs.push_back(spec(prefix + field.name, field.shape));
  }
  if (cfg.attn_layer >= 0) {
    for (const auto& field : kAttnFields<float*>) specs.push_back(spec(std::string("attn_") + field.name, field.shape));
  }
  return specs;
}

namespace {

// The fields that the step kernels' and the training kernels' shapes share.
template <class Shape>
Shape common_shape(const ModelConfig& cfg, int64_t batch) {
  Shape shape;
  shape.batch = batch;
  shape.dim = cfg.dim;
  shape.boom_factor = cfg.boom_factor;
  shape.attn_layer = cfg.attn_layer;
  shape.ln_eps = static_cast<float>(kLayerNormEps);
  return shape;
}

}  // namespace

step::Shape step_shape_for(const ModelConfig& cfg, int64_t batch) {
  step::Shape shape = common_shape<step::Shape>(cfg, batch);
  shape.slots = cfg.attn_layer >= 0 ? cfg.mem_len + 1 : 0;
  return shape;
}

train::Shape train_shape_for(const ModelConfig& cfg, int64_t batch) {
  train::Shape shape = common_shape<train::Shape>(cfg, batch);
  shape.seg = cfg.seg_len;
  return shape;
}

void init_values(const std::string& name, int64_t dim, InitRng& rng, float* out, int64_t n) {
  const double d = static_cast<double>(dim);
  const double normal_std = 0.1 / std::sqrt(d);
  const double lstm_bound = 1.0 / std::sqrt(d);
  const auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  const bool is_lstm = name.find("_lstm_") != std::string::npos;
  const bool is_ln = name.find("ln_") != std::string::npos;
  const bool is_weight = ends_with("weight") || name == "embed";
  for (int64_t i = 0; i < n; ++i) {
    double value = 0.0;
    if (is_lstm) {
      value = (2.0 * rng.uniform() - 1.0) * lstm_bound;
    } else if (is_ln) {
      value = ends_with("_weight") ? 1.0 : 0.0;
    } else if (is_weight) {
      value = rng.normal() * normal_std;
    }
    out[i] = static_cast<float>(value);
  }
}

FlatLayout::FlatLayout(const ModelConfig& cfg) : cfg_(cfg), specs_(param_specs(cfg)) {
  for (const ParamSpec& s : specs_) {
    offsets_.push_back(size_);
    size_ += (s.numel() + kFlatAlign - 1) / kFlatAlign * kFlatAlign;
  }
}

void FlatLayout::init(float* base) const {
  std::fill(base, base + size_, 0.0f);
  InitRng rng(cfg_.seed);
  for (size_t i = 0; i < specs_.size(); ++i) {
    init_values(specs_[i].name, cfg_.dim, rng, base + offsets_[i], specs_[i].numel());
  }
}

template <class P>
train::Params<P> FlatLayout::view(P base) const {
  size_t i = 0;
  train::Params<P> p = params_in_order<P>(cfg_, [&](const ParamSpec&) { return base + offsets_[i++]; });
  SHAZIP_ASSERT(i == offsets_.size());
  return p;
}

template train::Params<const float*> FlatLayout::view(const float*) const;
template train::Params<float*> FlatLayout::view(float*) const;

}  // namespace shazip::model
