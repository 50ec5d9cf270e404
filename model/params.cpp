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
  std::vector<ParamSpec> specs{{"embed", {256, d}}, {"dec_bias", {256}}};
  for (int l = 0; l < cfg.layers; ++l) {
    const std::string p = "block" + std::to_string(l) + "_";
    for (ParamSpec s : std::vector<ParamSpec>{{"ln_start_weight", {d}},
                                              {"ln_start_bias", {d}},
                                              {"lstm_weight_ih", {4 * d, d}},
                                              {"lstm_weight_hh", {4 * d, d}},
                                              {"lstm_bias_ih", {4 * d}},
                                              {"lstm_bias_hh", {4 * d}},
                                              {"ln_ff_weight", {d}},
                                              {"ln_ff_bias", {d}},
                                              {"ln_xff_weight", {d}},
                                              {"ln_xff_bias", {d}},
                                              {"boom_weight", {f, d}},
                                              {"boom_bias", {f}}}) {
      s.name = p + s.name;
      specs.push_back(std::move(s));
    }
  }
  if (cfg.attn_layer >= 0) {
    for (ParamSpec s : std::vector<ParamSpec>{{"ln_mem_weight", {d}},
                                              {"ln_mem_bias", {d}},
                                              {"ln_mid_weight", {d}},
                                              {"ln_mid_bias", {d}},
                                              {"q_weight", {d, d}},
                                              {"q_bias", {d}},
                                              {"q_ln_weight", {d}},
                                              {"q_ln_bias", {d}},
                                              {"qs", {d}},
                                              {"ks", {d}},
                                              {"vs", {d}},
                                              {"vq_weight", {2 * d, d}},
                                              {"vq_bias", {2 * d}}}) {
      s.name = "attn_" + s.name;
      specs.push_back(std::move(s));
    }
  }
  return specs;
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
  const auto next = [&] {
    SHAZIP_ASSERT(i < offsets_.size());
    return base + offsets_[i++];
  };
  train::Params<P> p;
  p.embed = next();
  p.dec_bias = next();
  for (int l = 0; l < cfg_.layers; ++l) {
    train::BlockParams<P> b;
    b.ln_start_w = next();
    b.ln_start_b = next();
    b.w_ih = next();
    b.w_hh = next();
    b.b_ih = next();
    b.b_hh = next();
    b.ln_ff_w = next();
    b.ln_ff_b = next();
    b.ln_xff_w = next();
    b.ln_xff_b = next();
    b.boom_w = next();
    b.boom_b = next();
    p.blocks.push_back(b);
  }
  if (cfg_.attn_layer >= 0) {
    train::AttnParams<P>& a = p.attn;
    a.ln_mem_w = next();
    a.ln_mem_b = next();
    a.ln_mid_w = next();
    a.ln_mid_b = next();
    a.q_w = next();
    a.q_b = next();
    a.q_ln_w = next();
    a.q_ln_b = next();
    a.qs = next();
    a.ks = next();
    a.vs = next();
    a.vq_w = next();
    a.vq_b = next();
  }
  SHAZIP_ASSERT(i == offsets_.size());
  return p;
}

template train::Params<const float*> FlatLayout::view(const float*) const;
template train::Params<float*> FlatLayout::view(float*) const;

}  // namespace shazip::model
