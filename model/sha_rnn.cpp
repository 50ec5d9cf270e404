// SHA-RNN forward paths; see sha_rnn.h for the architecture.
#include "model/sha_rnn.h"

#include <cmath>
#include <limits>
#include <string>

#include "coder/assert.h"
#include "model/lstm.h"
#include "model/params.h"
#include "model/step_kernels.h"

#ifdef SHAZIP_HAVE_CUDA
#include <c10/cuda/CUDAStream.h>

#include <stdexcept>

#include "model/cuda/step_kernels.h"
#include "model/cuda/train_kernels.h"
#endif

namespace shazip::model {
namespace {

constexpr double kLnEps = kLayerNormEps;
// GELU approximation of the reference: x * sigmoid(1.702 x). Plain elementwise
// ops, so it is reproducible without oneDNN's GELU kernel.
constexpr double kBoomScale = 1.702;

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return at::layer_norm(x, {x.size(-1)}, w, b, kLnEps);
}

}  // namespace

ShaRnnState ShaRnnState::clone() const {
  ShaRnnState s;
  for (const auto& t : h) s.h.push_back(t.clone());
  for (const auto& t : c) s.c.push_back(t.clone());
  if (mem.defined()) s.mem = mem.clone();
  s.mem_fill = mem_fill;
  s.mem_pos = mem_pos;
  return s;
}

ShaRnnState ShaRnnState::rows(int64_t from, int64_t count) const {
  ShaRnnState s;
  for (const auto& t : h) s.h.push_back(t.narrow(0, from, count));
  for (const auto& t : c) s.c.push_back(t.narrow(0, from, count));
  if (mem.defined()) s.mem = mem.narrow(0, from, count);
  s.mem_fill = mem_fill;
  s.mem_pos = mem_pos;
  return s;
}

ShaRnnImpl::ShaRnnImpl(const ModelConfig& cfg) : cfg_(cfg) {
  SHAZIP_ASSERT(cfg_.validate().empty());
  // Registered in param_specs' order (params.h), the order the initial
  // values are drawn in and LibTorch's optimizer (archives before format 5)
  // steps them in.
  p_ = params_in_order<at::Tensor>(
      cfg_, [&](const ParamSpec& s) { return register_parameter(s.name, torch::empty(s.shape)); });
  init_weights();
  refresh_gates();
}

// As the reference (params.h, init_values): Linear and Embedding weights ~
// N(0, 0.1/sqrt(d)), biases 0; LayerNorm weight 1, bias 0 (apex's
// FusedLayerNorm escapes the reference's init_weights); LSTM weights and
// biases U(-1/sqrt(d), 1/sqrt(d)) (PyTorch's default); attention gates qs,
// ks, vs zero (sigmoid 0.5). Drawn in registration order, param_specs' order.
void ShaRnnImpl::init_weights() {
  torch::NoGradGuard no_grad;
  InitRng rng(cfg_.seed);
  for (const auto& item : named_parameters(/*recurse=*/false)) {
    at::Tensor t = item.value();
    std::vector<float> v(static_cast<size_t>(t.numel()));
    init_values(item.key(), cfg_.dim, rng, v.data(), t.numel());
    t.copy_(torch::from_blob(v.data(), t.sizes(), torch::kFloat32));
  }
}

void ShaRnnImpl::refresh_gates() {
  if (cfg_.attn_layer < 0) return;
  torch::NoGradGuard no_grad;
  if (cfg_.train_kernels && p_.embed.is_cpu()) {
    // Format 7: the gates on shazip's arithmetic too (train_kernels.h).
    const int64_t d = cfg_.dim;
    query_gate_ = at::empty({d}, torch::kFloat32);
    value_gate_ = at::empty({d}, torch::kFloat32);
    const train::Weights w = weights();
    train::attention_gates(w.attn, d, query_gate_.data_ptr<float>(), value_gate_.data_ptr<float>());
    return;
  }
#ifdef SHAZIP_HAVE_CUDA
  if (cfg_.cuda_step_kernels && p_.embed.is_cuda()) {
    // Format 9: the same arithmetic on the device, for the CUDA step kernels.
    const int64_t d = cfg_.dim;
    query_gate_ = at::empty({d}, p_.embed.options());
    value_gate_ = at::empty({d}, p_.embed.options());
    const at::Tensor scratch = at::empty({d}, p_.embed.options());
    const train::Weights w = weights();
    const cudaError_t err =
        cuda::attention_gates_device(w.attn, d, scratch.data_ptr<float>(), query_gate_.data_ptr<float>(),
                                     value_gate_.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream());
    if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA attention gates: ") + cudaGetErrorString(err));
    return;
  }
#endif
  query_gate_ = query_gate().detach();
  value_gate_ = value_gate().detach();
}

// sigmoid(qs) scales the query and sigmoid(ks) the keys; both, and the
// 1/sqrt(d) of scaled dot-product attention, fold into one query-side vector.
at::Tensor ShaRnnImpl::query_gate() const {
  return at::sigmoid(p_.attn.qs) * at::sigmoid(p_.attn.ks) * (1.0 / std::sqrt(double(cfg_.dim)));
}

// The reference's "overparam" value gate: c, f = Linear(sigmoid(vs)) split in
// two; gate = sigmoid(f) * tanh(c). Values are the keys times this gate, so the
// gate is applied once to the attention's output instead.
at::Tensor ShaRnnImpl::value_gate() const {
  const auto cf = at::linear(at::sigmoid(p_.attn.vs), p_.attn.vq_w, p_.attn.vq_b).chunk(2, -1);
  return at::sigmoid(cf[1]) * at::tanh(cf[0]);
}

at::Tensor ShaRnnImpl::boom(const Block& b, const at::Tensor& h) const {
  const at::Tensor base = layer_norm(h, b.ln_ff_w, b.ln_ff_b);
  at::Tensor x = at::linear(layer_norm(h, b.ln_xff_w, b.ln_xff_b), b.boom_w, b.boom_b);
  x = x * at::sigmoid(x * kBoomScale);
  std::vector<int64_t> shape(h.sizes().begin(), h.sizes().end());
  shape.back() = cfg_.boom_factor;
  shape.push_back(cfg_.dim);
  return x.view(shape).sum(-2) + base;
}

ShaRnnState ShaRnnImpl::initial_state(int64_t batch, const torch::Device& device) const {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  ShaRnnState s;
  for (int l = 0; l < cfg_.layers; ++l) {
    s.h.push_back(torch::zeros({batch, cfg_.dim}, opts));
    s.c.push_back(torch::zeros({batch, cfg_.dim}, opts));
  }
  if (cfg_.attn_layer >= 0) s.mem = torch::zeros({batch, cfg_.mem_len + 1, cfg_.dim}, opts);
  return s;
}

at::Tensor ShaRnnImpl::step(const at::Tensor& x, ShaRnnState& s) {
  if (cfg_.step_kernels && x.is_cpu()) return step_own(x, s);
#ifdef SHAZIP_HAVE_CUDA
  if (cfg_.cuda_step_kernels && x.is_cuda()) return step_cuda(x, s);
#endif
  at::Tensor h = at::embedding(p_.embed, x);
  for (int l = 0; l < cfg_.layers; ++l) {
    const Block& b = p_.blocks[l];
    h = layer_norm(h, b.ln_start_w, b.ln_start_b);
    auto hc = lstm_step(h, s.h[l], s.c[l], b.w_ih, b.w_hh, b.b_ih, b.b_hh);
    s.h[l] = hc.first;
    s.c[l] = hc.second;
    h = s.h[l];
    if (l == cfg_.attn_layer) {
      const at::Tensor mh = layer_norm(h, p_.attn.ln_mem_w, p_.attn.ln_mem_b);
      const at::Tensor hq = layer_norm(h, p_.attn.ln_mid_w, p_.attn.ln_mid_b);
      // The current position joins the memory first: it is its own key too.
      const int64_t slots = s.mem.size(1);
      s.mem.select(1, s.mem_pos).copy_(mh);
      s.mem_pos = (s.mem_pos + 1) % slots;
      s.mem_fill = std::min(s.mem_fill + 1, slots);
      const at::Tensor keys = s.mem.narrow(1, 0, s.mem_fill);          // (B, F, d)
      const at::Tensor q = layer_norm(at::linear(hq, p_.attn.q_w, p_.attn.q_b), p_.attn.q_ln_w,
                                      p_.attn.q_ln_b) * query_gate_;     // (B, d)
      const at::Tensor w = at::softmax(at::bmm(keys, q.unsqueeze(2)), 1);  // (B, F, 1)
      const at::Tensor mix = at::bmm(w.transpose(1, 2), keys).squeeze(1);  // (B, d)
      h = mix * value_gate_ + hq;
    }
    h = boom(b, h);
  }
  return at::linear(h, p_.embed, p_.dec_bias);
}

namespace {

const float* floats(const at::Tensor& t) {
  SHAZIP_ASSERT(t.is_contiguous() && t.scalar_type() == torch::kFloat32);
  return t.data_ptr<float>();
}

}  // namespace

// The same model as the LibTorch step below, operation for operation, with
// the sums of step_kernels.h (docs/FORMAT.md, "Step kernels").
at::Tensor ShaRnnImpl::step_own(const at::Tensor& x, ShaRnnState& s) {
  const step::Shape shape = step_shape(s);
  SHAZIP_ASSERT(shape.batch == x.size(0));
  const at::Tensor in = x.to(torch::kInt64).contiguous();
  const bool attn = cfg_.attn_layer >= 0;
  at::Tensor logits = at::empty({shape.batch, 256}, torch::kFloat32);
  step::forward(shape, weights(), attn ? floats(query_gate_) : nullptr, attn ? floats(value_gate_) : nullptr,
                step_state(s), &s.mem_pos, &s.mem_fill, in.data_ptr<int64_t>(), buf_, logits.data_ptr<float>());
  return logits;
}

#ifdef SHAZIP_HAVE_CUDA
// The same step on the GPU (format 9): model/cuda/step_kernels.h computes
// what step_own() computes, bit for bit, on the device's copies of the
// weights and the state.
at::Tensor ShaRnnImpl::step_cuda(const at::Tensor& x, ShaRnnState& s) {
  const step::Shape shape = step_shape(s);
  SHAZIP_ASSERT(shape.batch == x.size(0));
  const int64_t need = static_cast<int64_t>(cuda::step_scratch_floats(shape));
  if (!cuda_scratch_.defined() || cuda_scratch_.numel() < need || cuda_scratch_.device() != p_.embed.device()) {
    cuda_scratch_ = at::empty({need}, p_.embed.options());
  }
  const step::State st = step_state(s);
  const int64_t keys = cfg_.attn_layer >= 0 ? std::min(s.mem_fill + 1, shape.slots) : 0;
  const at::Tensor bytes = x.to(torch::kInt64).contiguous();
  at::Tensor logits = at::empty({shape.batch, 256}, p_.embed.options());
  const train::Weights w = weights();
  const cudaError_t err = cuda::step_device(
      shape, w, cfg_.attn_layer >= 0 ? floats(query_gate_) : nullptr,
      cfg_.attn_layer >= 0 ? floats(value_gate_) : nullptr, st, s.mem_pos, keys, bytes.data_ptr<int64_t>(),
      cuda_scratch_.data_ptr<float>(), logits.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream());
  if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA step: ") + cudaGetErrorString(err));
  if (cfg_.attn_layer >= 0) {
    s.mem_pos = (s.mem_pos + 1) % shape.slots;
    s.mem_fill = keys;
  }
  return logits;
}
#endif

train::Weights ShaRnnImpl::weights() const {
  return params_of<const float*>([](const at::Tensor& t) { return floats(t); });
}

template <class P, class Get>
train::Params<P> ShaRnnImpl::params_of(Get get) const {
  return map_params<P>(p_, cfg_.attn_layer >= 0, get);
}

train::Grads ShaRnnImpl::gradients() const {
  return params_of<float*>([&](const at::Tensor& t) {
    const at::Tensor& grad = t.grad();
    SHAZIP_ASSERT(grad.defined() && grad.is_contiguous() && grad.scalar_type() == torch::kFloat32 &&
                  grad.device() == p_.embed.device());
    return grad.data_ptr<float>();
  });
}

train::Shape ShaRnnImpl::train_shape(int64_t batch) const { return train_shape_for(cfg_, batch); }

step::Shape ShaRnnImpl::step_shape(const ShaRnnState& s) const {
  const step::Shape shape = step_shape_for(cfg_, s.h[0].size(0));
  SHAZIP_ASSERT(cfg_.attn_layer < 0 || s.mem.size(1) == shape.slots);
  return shape;
}

step::State ShaRnnImpl::step_state(ShaRnnState& s) const {
  step::State st;
  for (int l = 0; l < cfg_.layers; ++l) {
    SHAZIP_ASSERT(s.h[l].is_contiguous() && s.c[l].is_contiguous());
    st.h.push_back(s.h[l].data_ptr<float>());
    st.c.push_back(s.c[l].data_ptr<float>());
  }
  if (cfg_.attn_layer >= 0) {
    SHAZIP_ASSERT(s.mem.is_contiguous());
    st.mem = s.mem.data_ptr<float>();
  }
  return st;
}

train::Start ShaRnnImpl::train_start(const ShaRnnState& s) const {
  train::Start start;
  for (int l = 0; l < cfg_.layers; ++l) {
    start.h.push_back(floats(s.h[l]));
    start.c.push_back(floats(s.c[l]));
  }
  if (cfg_.attn_layer >= 0) {
    start.mem = floats(s.mem);
    start.slots = s.mem.size(1);
    start.mem_fill = s.mem_fill;
  }
  return start;
}

double ShaRnnImpl::train_segment(const at::Tensor& bytes, const ShaRnnState& s, bool want_loss) {
  SHAZIP_ASSERT(bytes.dim() == 2 && bytes.size(1) == cfg_.seg_len + 1);
  const at::Tensor in = bytes.to(p_.embed.device(), torch::kInt64).contiguous();
  const train::Weights w = weights();
  const train::Grads g = gradients();
  const train::Shape shape = train_shape(in.size(0));
  const train::Start start = train_start(s);
#ifdef SHAZIP_HAVE_CUDA
  if (p_.embed.is_cuda()) {
    SHAZIP_ASSERT(cfg_.cuda_training_kernels());
    if (!cuda_train_pass_) cuda_train_pass_ = std::make_shared<cuda::TrainPass>();
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    const cudaError_t err = cuda_train_pass_->run(shape, w, start, in.data_ptr<int64_t>(), g, stream);
    if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA training step: ") + cudaGetErrorString(err));
    return want_loss ? cuda_train_pass_->loss(stream) : std::numeric_limits<double>::quiet_NaN();
  }
#endif
  SHAZIP_ASSERT(p_.embed.is_cpu());
  (void)want_loss;
  return train_pass_.run(shape, w, start, in.data_ptr<int64_t>(), g);
}

at::Tensor ShaRnnImpl::forward_segment(const at::Tensor& x, const ShaRnnState& s) {
  const int64_t seg = x.size(1);
  at::Tensor h = at::embedding(p_.embed, x);  // (B, T, d)
  for (int l = 0; l < cfg_.layers; ++l) {
    const Block& b = p_.blocks[l];
    h = layer_norm(h, b.ln_start_w, b.ln_start_b);
    h = lstm_layer(h, s.h[l], s.c[l], b.w_ih, b.w_hh, b.b_ih, b.b_hh);
    if (l == cfg_.attn_layer) {
      const at::Tensor mh = layer_norm(h, p_.attn.ln_mem_w, p_.attn.ln_mem_b);
      const at::Tensor hq = layer_norm(h, p_.attn.ln_mid_w, p_.attn.ln_mid_b);
      const int64_t past = s.mem_fill;
      const at::Tensor keys = past > 0 ? at::cat({s.mem.narrow(1, 0, past), mh}, 1) : mh;
      const at::Tensor q = layer_norm(at::linear(hq, p_.attn.q_w, p_.attn.q_b), p_.attn.q_ln_w,
                                      p_.attn.q_ln_b) * query_gate();    // (B, T, d)
      // Memory fully visible; causal within the segment (a position sees itself).
      const auto opts = h.options();
      const at::Tensor causal =
          at::full({seg, seg}, -std::numeric_limits<float>::infinity(), opts).triu(1);
      const at::Tensor mask = past > 0 ? at::cat({at::zeros({seg, past}, opts), causal}, 1) : causal;
      const at::Tensor w = at::softmax(at::bmm(q, keys.transpose(1, 2)) + mask, -1);
      h = at::bmm(w, keys) * value_gate() + hq;
    }
    h = boom(b, h);
  }
  return at::linear(h, p_.embed, p_.dec_bias);
}

}  // namespace shazip::model
