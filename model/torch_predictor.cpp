// The LibTorch module (libshazip_torch.so): the online learner held in
// LibTorch's tensors, for archives of formats 1-6 and the GPU. Step-wise
// prediction for the coder, one truncated-BPTT Adam step per segment of
// seg_len positions (nncp's scheme). See predictor.h and torch_backend.h.
#include "model/predictor.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "coder/assert.h"
#include "coder/quantize.h"
#include "model/online.h"
#include "model/params.h"
#include "model/sha_rnn.h"
#include "model/step_kernels.h"
#include "model/torch_backend.h"
#include "model/train_kernels.h"

#ifdef SHAZIP_HAVE_CUDA
#include <c10/cuda/CUDAStream.h>

#include <cstring>

#include "model/cuda/cdf_kernel.h"
#include "model/cuda/step_kernels.h"
#include "model/cuda/train_kernels.h"
#endif

namespace shazip::model {

namespace {

std::string detect_blas() {
  // libtorch calls the generic libblas.so.3; which implementation the system
  // resolved it to changes results (and speed by 10x). OpenBLAS exports its
  // own query functions.
  using ConfigFn = const char* (*)();
  if (auto cfg = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21"; the
    // build options do not change results, the kernel set (core) does.
    std::istringstream words(cfg());
    std::string name, version;
    words >> name >> version;
    std::string s = name + " " + version;
    if (auto core = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) {
      s += " core=";
      s += core();
    }
    return s;
  }
  if (dlsym(RTLD_DEFAULT, "MKL_Get_Version")) return "MKL";
  return "reference BLAS";
}

#ifdef SHAZIP_HAVE_CUDA
// FP32 lanes (CUDA cores) per SM by compute capability (NVIDIA's CUDA C++
// Programming Guide, "Arithmetic Instructions"); 0 for the unknown.
int fp32_lanes_per_sm(int major, int minor) {
  if (major == 6) return minor == 0 ? 64 : 128;
  if (major == 7) return 64;
  if (major == 8) return minor == 0 ? 64 : 128;
  if (major >= 9) return 128;
  return 0;
}
#endif


BackendInfo torch_backend_info() {
  BackendInfo b;
  b.torch_version = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                    "." + std::to_string(TORCH_VERSION_PATCH);
  b.blas = detect_blas();
  b.cpu_capability = cpu_capability_setting();
  b.cuda_available = torch::cuda::is_available();
#ifdef SHAZIP_HAVE_CUDA
  // Plain CUDA runtime queries: no cuBLAS handle may exist before
  // configure_runtime() has fixed cuBLAS's workspace.
  int dev = 0;
  cudaDeviceProp prop{};
  if (b.cuda_available && cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
    b.gpu = std::string(prop.name) + " sm_" + std::to_string(prop.major) + std::to_string(prop.minor);
    int sms = 0, clock_khz = 0;  // (CUDA 13 dropped cudaDeviceProp::clockRate)
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev) == cudaSuccess) {
      b.gpu_peak_gflops = 2.0 * sms * fp32_lanes_per_sm(prop.major, prop.minor) * clock_khz / 1e6;
    }
  }
  int runtime = 0;
  if (b.cuda_available && cudaRuntimeGetVersion(&runtime) == cudaSuccess) {
    b.cuda_runtime = "CUDA " + std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10);
  }
#endif
  return b;
}

void torch_configure_runtime(const RuntimeOptions& rt) {
  SHAZIP_ASSERT(rt.threads >= 1);
  keep_scratch_in_heap();
  at::set_num_threads(rt.threads);
  // oneDNN kernels (LSTM, GELU, ...) choose algorithms by CPU and size; keep
  // ATen's native kernels so the arithmetic depends on fewer moving parts.
  at::globalContext().setUserEnabledMkldnn(false);
  if (rt.device == DeviceKind::kCuda) {
    // NVIDIA's conditions for repeatable cuBLAS results: a fixed workspace
    // (read when the first cuBLAS handle is made, so before any GPU matmul) and
    // one stream per handle; ATen's deterministic mode refuses the
    // atomics-based kernels (index_add, scatter, ...) instead of running them.
    // TF32 would change the floats: off, as in PyTorch's default.
    const char* ws = std::getenv("CUBLAS_WORKSPACE_CONFIG");
    if (!ws || std::string(ws) != ":4096:8") setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 1);
    at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
    at::globalContext().setDeterministicCuDNN(true);
    at::globalContext().setBenchmarkCuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
#ifdef SHAZIP_HAVE_CUDA
    cuda::set_tiled_products(rt.cuda_tiled_products);
#endif
  }
}



// ModelConfig::flat_train (format 5 on): the trainer's parameters are views
// into one buffer and their gradients into another, so that zeroing the
// gradients, clipping their global norm and the Adam step are a few ATen
// operations over all the weights at once instead of a few per parameter
// tensor (27 at preset 2): LibTorch's per-call overhead over the tensors was a
// quarter of a CPU training step. The formulas are LibTorch's (Adam as in
// torch::optim::Adam, the clip as clip_grad_norm_); the floats differ from
// the tensor-by-tensor path in the last bits (one norm over every gradient
// rather than a norm of per-tensor norms; vectorised kernels treat each
// tensor's tail apart), hence its own format version.
//
// Each parameter starts at a multiple of kFlatAlign floats (64 bytes;
// params.h's FlatLayout, which KernelPredictor keeps), so its data stays as
// aligned as a tensor of its own; the padding between holds zeros, which the
// Adam step leaves at zero.

// Moves the data of `params` into one zero-padded buffer (same device and
// dtype) and makes each parameter a view of its part; returns the buffer.
at::Tensor flatten_into_buffer(const std::vector<at::Tensor>& params, std::vector<int64_t>* offsets) {
  SHAZIP_ASSERT(!params.empty());
  int64_t total = 0;
  offsets->clear();
  for (const at::Tensor& p : params) {
    offsets->push_back(total);
    total += (p.numel() + kFlatAlign - 1) / kFlatAlign * kFlatAlign;
  }
  torch::NoGradGuard no_grad;
  at::Tensor flat = at::zeros({total}, params[0].options().requires_grad(false));
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor view = flat.narrow(0, (*offsets)[i], params[i].numel()).view(params[i].sizes());
    view.copy_(params[i].detach());
    params[i].set_data(view);
  }
  return flat;
}

class FlatAdam {
 public:
  FlatAdam(const std::vector<at::Tensor>& params, const ModelConfig& cfg)
      : params_(params), beta1_(cfg.beta1), beta2_(cfg.beta2), eps_(cfg.adam_eps) {
    flat_ = flatten_into_buffer(params_, &offsets_);
    grad_ = at::zeros_like(flat_);
    exp_avg_ = at::zeros_like(flat_);
    exp_avg_sq_ = at::zeros_like(flat_);
    // Autograd adds into a defined gradient in place (backward runs without
    // grad mode), so the gradients stay views of grad_.
    for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = part(grad_, i);
  }

  void zero_grad() { grad_.zero_(); }

  // As clip_grad_norm_(params, max_norm) with the 2-norm.
  void clip_grad_norm(double max_norm) {
    torch::NoGradGuard no_grad;
    const at::Tensor coef = at::clamp_max(max_norm / (grad_.norm() + 1e-6), 1.0);
    grad_.mul_(coef);
  }

  // As torch::optim::Adam's step without weight decay or amsgrad.
  void step(double lr) {
    torch::NoGradGuard no_grad;
    ++steps_;
    const double bias1 = 1.0 - std::pow(beta1_, static_cast<double>(steps_));
    const double bias2 = 1.0 - std::pow(beta2_, static_cast<double>(steps_));
    exp_avg_.mul_(beta1_).add_(grad_, 1.0 - beta1_);
    exp_avg_sq_.mul_(beta2_).addcmul_(grad_, grad_, 1.0 - beta2_);
    const at::Tensor denom = (exp_avg_sq_.sqrt() / std::sqrt(bias2)).add_(eps_);
    flat_.addcdiv_(exp_avg_, denom, -lr / bias1);
  }

  // Format 7 (ModelConfig::train_kernels, CPU): the clip and the Adam step on
  // shazip's kernel (train_kernels.h), the bias corrections' powers kept by
  // repeated multiplication rather than std::pow (whose last bit is libm's).
  // With block_norm (format 10) the clip's norm is summed block by block.
  void step_own(double lr, double clip, bool block_norm) {
    ++steps_;
    beta1_pow_ *= beta1_;
    beta2_pow_ *= beta2_;
    const train::AdamConfig cfg{lr, beta1_, beta2_, eps_, clip, block_norm};
#ifdef SHAZIP_HAVE_CUDA
    if (flat_.is_cuda()) {
      // Format 10 (ModelConfig::cuda_train_kernels): the same step on the
      // device (model/cuda/train_kernels.h), on the current stream.
      const int64_t need = static_cast<int64_t>(cuda::adam_scratch_floats(flat_.numel()));
      if (!adam_scratch_.defined() || adam_scratch_.numel() < need) adam_scratch_ = at::empty({need}, flat_.options());
      const cudaError_t err = cuda::adam_step_device(
          cfg, beta1_pow_, beta2_pow_, flat_.numel(), flat_.data_ptr<float>(), grad_.data_ptr<float>(),
          exp_avg_.data_ptr<float>(), exp_avg_sq_.data_ptr<float>(), adam_scratch_.data_ptr<float>(),
          c10::cuda::getCurrentCUDAStream().stream());
      if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA Adam step: ") + cudaGetErrorString(err));
      return;
    }
#endif
    train::adam_step(cfg, beta1_pow_, beta2_pow_, flat_.numel(), flat_.data_ptr<float>(), grad_.data_ptr<float>(),
                     exp_avg_.data_ptr<float>(), exp_avg_sq_.data_ptr<float>());
  }

  const at::Tensor& weights() const { return flat_; }

 private:
  // Parameter i's part of a buffer laid out like weights(), shaped like it.
  at::Tensor part(const at::Tensor& buffer, size_t i) const {
    return buffer.narrow(0, offsets_[i], params_[i].numel()).view(params_[i].sizes());
  }

  std::vector<at::Tensor> params_;
  std::vector<int64_t> offsets_;
  at::Tensor flat_, grad_, exp_avg_, exp_avg_sq_;
  at::Tensor adam_scratch_;  // step_own()'s on CUDA
  double beta1_, beta2_, eps_;
  int64_t steps_ = 0;
  double beta1_pow_ = 1.0, beta2_pow_ = 1.0;  // beta^steps_, for step_own()
};

void copy_weights(ShaRnn& to, const ShaRnn& from) {
  torch::NoGradGuard no_grad;
  const auto dst = to->parameters(), src = from->parameters();
  for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(src[i]);
  to->refresh_gates();
}


struct Impl {
  Impl(const ModelConfig& c, int b, const RuntimeOptions& r)
      : cfg(c), streams(b), rt(r),
        device(r.device == DeviceKind::kCuda ? torch::kCUDA : torch::kCPU),
        net(c), trainer(nullptr), book(b, c.seg_len, c.train_lag) {
    torch_configure_runtime(rt);
    net->to(device);
    net->refresh_gates();  // the constructor's cached gates are on the CPU
    if (cfg.train_lag) {
      // Its own copy of the weights, which the training steps update; the step
      // path takes them one segment later.
      trainer = ShaRnn(c);
      trainer->to(device);
      copy_weights(trainer, net);
    } else {
      trainer = net;
    }
    if (cfg.flat_train) {
      flat = std::make_unique<FlatAdam>(trainer->parameters(), cfg);
      // The step path's weights laid out alike: taking the trainer's is one copy.
      if (cfg.train_lag) {
        std::vector<int64_t> offsets;
        net_weights = flatten_into_buffer(net->parameters(), &offsets);
        SHAZIP_ASSERT(net_weights.numel() == flat->weights().numel());
      }
    } else {
      opt = std::make_unique<torch::optim::Adam>(
          trainer->parameters(), torch::optim::AdamOptions(cfg.lr)
                                     .betas({cfg.beta1, cfg.beta2})
                                     .eps(cfg.adam_eps));
    }
    state = net->initial_state(streams, device);
    seg_start = state.clone();
    prev = torch::zeros({streams}, torch::TensorOptions().dtype(torch::kInt64).device(device));
    // Last: the worker's thread uses the members above.
    worker = std::make_unique<TrainWorker>(cfg.train_lag && rt.async_train,
                                           [rt = rt] { torch_configure_runtime(rt); });
  }

  void end_segment();
  void train(const at::Tensor& bytes, const ShaRnnState& start, int64_t step);
  void train_libtorch(const at::Tensor& bytes, const ShaRnnState& start, double lr);
  // The trainer's weights once no training step is running.
  void settle() {
    worker->wait();
    if (!cfg.train_lag) return;
    if (flat) {
      torch::NoGradGuard no_grad;
      net_weights.copy_(flat->weights());
      net->refresh_gates();
    } else {
      copy_weights(net, trainer);
    }
  }

  ModelConfig cfg;
  int streams;
  RuntimeOptions rt;
  torch::Device device;
  ShaRnn net;      // the step path's weights
  ShaRnn trainer;  // the weights the training steps update: net itself at lag 0
  std::unique_ptr<torch::optim::Adam> opt;  // flat_train 0
  std::unique_ptr<FlatAdam> flat;            // flat_train 1
  at::Tensor net_weights;                    // flat_train 1, lag 1: the step path's weights, laid out alike
  ShaRnnState state;      // after the last observed position
  ShaRnnState seg_start;  // at the start of the current segment
  at::Tensor prev;        // (B,) int64: last observed byte per stream
  at::Tensor probs;       // (B, 256) float32 on the CPU, contiguous
  SegmentBook book;
  std::unique_ptr<TrainWorker> worker;  // declared last: destroyed (joined) first
};

// One Adam step of `trainer` on a segment: bytes (B, T + 1) on the CPU,
// starting from the step path's state at the segment's start. May run on the
// worker's thread; touches only the trainer, the optimizer and its arguments.
void Impl::train(const at::Tensor& bytes, const ShaRnnState& start, int64_t step) {
  const double t0 = seconds_now();
  // Training groups (format 8): G Adam steps, one after the other, group g on
  // streams [g B / G, (g + 1) B / G), each from the weights the one before it
  // left; step s of the schedule is the s-th Adam step.
  const auto adam_step = [&](const at::Tensor& b, const ShaRnnState& s, int64_t k) {
    const double lr = cfg.lr / (1.0 + cfg.lr_decay * static_cast<double>(k));
    if (device.is_cpu() ? cfg.train_kernels : cfg.cuda_training_kernels()) {
      trainer->train_segment(b, s, /*want_loss=*/false);
      flat->step_own(lr, cfg.clip, cfg.block_norm);
    } else {
      train_libtorch(b, s, lr);
    }
  };
  const int64_t rows = bytes.size(0);
  const int64_t groups = std::min<int64_t>(cfg.train_groups, rows);
  if (groups == 1) {
    adam_step(bytes, start, step);
  } else {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t from = g * rows / groups, count = (g + 1) * rows / groups - from;
      adam_step(bytes.narrow(0, from, count), start.rows(from, count), step * groups + g);
    }
  }
  if (!cfg.train_lag) trainer->refresh_gates();
#ifdef SHAZIP_HAVE_CUDA
  // Inline on CUDA, wait for the queued kernels, which the next table copy
  // would wait for anyway: train_seconds() is then the training step's GPU
  // time, not its launches' (bench_model --async 0). On the worker's thread
  // the step path's next wait absorbs it instead.
  if (device.is_cuda() && !(cfg.train_lag && rt.async_train)) c10::cuda::getCurrentCUDAStream().synchronize();
#endif
  book.add_train_seconds(seconds_now() - t0);
}

// Formats 1-6, and CUDA before format 10: autograd, then flat training's or
// LibTorch's Adam.
void Impl::train_libtorch(const at::Tensor& bytes, const ShaRnnState& start, double lr) {
  const int64_t t = cfg.seg_len;
  const at::Tensor all = bytes.to(device);
  const at::Tensor inputs = all.narrow(1, 0, t);
  const at::Tensor targets = all.narrow(1, 1, t);
  if (flat) {
    flat->zero_grad();
  } else {
    for (auto& group : opt->param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    }
    opt->zero_grad();
  }
  const at::Tensor logits = trainer->forward_segment(inputs, start);
  const at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, 256}), targets.reshape({-1}));
  loss.backward();
  if (flat) {
    flat->clip_grad_norm(cfg.clip);
    flat->step(lr);
  } else {
    torch::nn::utils::clip_grad_norm_(trainer->parameters(), cfg.clip);
    opt->step();
  }
}

void Impl::end_segment() {
  const int64_t t = cfg.seg_len;
  // The step path moves on to the weights of the previous step (lag 1).
  settle();
  // The next segment starts from the step path's state, detached.
  ShaRnnState start = std::move(seg_start);
  seg_start = state.clone();
  int64_t step = 0;
  if (book.take_step(&step)) {
    at::Tensor bytes =
        torch::from_blob(const_cast<int64_t*>(book.bytes().data()), {streams, t + 1}, torch::kInt64).clone();
    worker->submit([this, bytes = std::move(bytes), start = std::move(start), step] { train(bytes, start, step); });
  }
  book.next_segment();
}

// The LibTorch-held model behind model::Predictor.
class TorchPredictor final : public PredictorBackend {
 public:
  TorchPredictor(const ModelConfig& cfg, int streams, const RuntimeOptions& rt)
      : impl_(std::make_unique<Impl>(cfg, streams, rt)) {}
  int streams() const override { return impl_->streams; }
  const ModelConfig& config() const override { return impl_->cfg; }
  void predict(uint32_t* cdfs) override;
  const float* probs() const override { return impl_->probs.data_ptr<float>(); }
  void observe(const uint8_t* bytes) override;
  void expect_positions(int64_t total) override { impl_->book.expect_positions(total); }
  int64_t positions() const override { return impl_->book.positions(); }
  int64_t train_steps() const override { return impl_->book.steps(); }
  double predict_seconds() const override { return impl_->book.predict_seconds(); }
  double train_seconds() const override { return impl_->book.train_seconds(); }

 private:
  std::unique_ptr<Impl> impl_;
};

void TorchPredictor::predict(uint32_t* cdfs) {
  Impl& m = *impl_;
  const double t0 = m.book.begin_predict();
  bool quantized = false;  // by the device kernel
  {
    torch::NoGradGuard no_grad;
    const at::Tensor logits = m.net->step(m.prev, m.state);
#ifdef SHAZIP_HAVE_CUDA
    if (logits.is_cuda()) {
      // Softmax and quantization on the device (model/cuda/cdf_kernel.cu):
      // the tables cross to the host as B x 257 integers; the probabilities
      // follow only for the statistics (probs()). After the CUDA step kernels
      // (format 9) the softmax is the CPU step path's, so are the tables.
      const at::Tensor l = logits.to(torch::kFloat32).contiguous();
      const at::Tensor probs = at::empty_like(l);
      const at::Tensor tables = at::empty({m.streams, coder::kCdfSize}, l.options().dtype(torch::kInt32));
      const auto quantize = m.cfg.cuda_step_kernels ? cuda::det_softmax_quantize_device : cuda::softmax_quantize_device;
      const cudaError_t err = quantize(
          l.data_ptr<float>(), probs.data_ptr<float>(), reinterpret_cast<uint32_t*>(tables.data_ptr<int32_t>()),
          m.streams, c10::cuda::getCurrentCUDAStream().stream());
      if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA kernel: ") + cudaGetErrorString(err));
      const at::Tensor host = tables.to(torch::kCPU);
      std::memcpy(cdfs, host.data_ptr<int32_t>(), sizeof(uint32_t) * static_cast<size_t>(m.streams) * coder::kCdfSize);
      m.probs = probs.to(torch::kCPU).contiguous();
      quantized = true;
    }
#endif
    if (!quantized && m.cfg.step_kernels && logits.is_cpu()) {
      m.probs = logits.contiguous();
      float* p = m.probs.data_ptr<float>();
      for (int b = 0; b < m.streams; ++b) step::softmax(p + static_cast<size_t>(b) * 256, 256);
    } else if (!quantized) {
      m.probs = at::softmax(logits, -1).to(torch::kCPU).contiguous();
    }
  }
  if (!quantized) {
    const float* p = m.probs.data_ptr<float>();
    for (int b = 0; b < m.streams; ++b) {
      coder::quantize_probs(p + static_cast<size_t>(b) * 256, cdfs + static_cast<size_t>(b) * coder::kCdfSize);
    }
  }
  m.book.end_predict(t0);
}

void TorchPredictor::observe(const uint8_t* bytes) {
  Impl& m = *impl_;
  std::vector<int64_t> next(bytes, bytes + m.streams);
  m.prev = torch::from_blob(next.data(), {m.streams}, torch::kInt64)
               .to(m.device, /*non_blocking=*/false, /*copy=*/true);
  if (m.book.observe(bytes)) m.end_segment();
}

std::unique_ptr<PredictorBackend> make_torch_predictor(const ModelConfig& cfg, int streams,
                                                       const RuntimeOptions& rt) {
  return std::make_unique<TorchPredictor>(cfg, streams, rt);
}

}  // namespace
}  // namespace shazip::model

extern "C" const shazip::model::TorchBackend* shazip_torch_backend() {
  using namespace shazip::model;
  static const TorchBackend backend{torch_backend_info, torch_configure_runtime, make_torch_predictor};
  return &backend;
}
