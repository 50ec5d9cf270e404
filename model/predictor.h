// The online predictor: an SHA-RNN that codes B parallel streams one position
// at a time and trains itself on every segment of T positions it has coded.
//
// Contract, identical for encoder and decoder:
//   for each position:  predict(cdfs)  ->  code byte b of stream s with
//                       cdfs + s * kCdfSize  ->  observe(bytes)
// observe() starts a training step after every seg_len positions. With
// ModelConfig::train_lag 0 the step finishes before observe() returns; with
// lag 1 the step path keeps the previous weights for one more segment while the
// step runs (on a thread of its own, RuntimeOptions::async_train), and takes
// its result at the end of that segment. Encoder and decoder that build the
// Predictor from the same config, stream count and RuntimeOptions (threads,
// device), and feed it the same bytes, get identical tables.
//
// Torch-free: the driver and CLI include it, and a process loads LibTorch
// only for a model that needs it (model/torch_backend.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model/config.h"

namespace shazip::model {

class PredictorBackend;

enum class DeviceKind : uint8_t { kCpu = 0, kCuda = 1 };

struct RuntimeOptions {
  DeviceKind device = DeviceKind::kCpu;
  int threads = 1;  // intra-op threads; changes the floats, so archives record it
  // With ModelConfig::train_lag 1: run each training step on a thread of its
  // own, beside the coding of the next segment. The results are the same either
  // way (tests/test_model.cpp); off, the step runs inline.
  bool async_train = true;
  // On CUDA: shazip's step and training kernels run their matrix products
  // as tiled products (model/cuda/tiled_product.cuh) or as the plain
  // kernels. The same bits either way (test_simt), so only the speed
  // differs; process-wide, applied by configure_runtime (bench_model --tiled).
  bool cuda_tiled_products = true;
  // Format 7 on, on the CPU: the model runs on model::KernelPredictor (no
  // LibTorch in its path) or, off, on the LibTorch-held ShaRnn with the same
  // kernels. The same bits either way (tests/test_model.cpp compares them).
  bool kernel_predictor = true;
};

// What the arithmetic of this process depends on besides the model: recorded in
// archives so that a decoder can tell whether it can reproduce them.
struct BackendInfo {
  std::string torch_version;  // e.g. "1.13.0"
  std::string blas;           // e.g. "OpenBLAS 0.3.21 (Haswell)" or "reference BLAS"
  std::string cpu_capability; // ATen's kernel set: "DEFAULT", "AVX2", "AVX512"
  bool cuda_available = false;
  // CUDA builds with a GPU: what the GPU arithmetic depends on besides
  // LibTorch: the device ("NVIDIA H100 80GB HBM3 sm_90") and the CUDA runtime
  // ("CUDA 13.0"). cuBLAS picks its kernels by GPU model, so archives made on
  // the GPU record both, and those that used cuBLAS (LibTorch's step or
  // training) decode only on the same.
  std::string gpu;
  std::string cuda_runtime;
  // The GPU's peak FP32 arithmetic on its CUDA cores (the model's, with TF32
  // off), in GFLOP/s: SMs x FP32 lanes per SM x 2 x clock. 0 where unknown.
  double gpu_peak_gflops = 0;
};
// This process's, from LibTorch (loads it: model/torch_backend.h).
BackendInfo backend_info();
// What coding on shazip's CPU kernels alone depends on, without loading
// LibTorch: the LibTorch version this build links its module against, BLAS
// "none" (none is called), the CPU kernel set as pinned (ATEN_CPU_CAPABILITY,
// else "auto"); no GPU. What a CPU archive of format 7 on records.
BackendInfo kernel_backend_info();
// Whether --device cuda can run: false without loading LibTorch in a build
// without CUDA, else LibTorch's answer.
bool cuda_available();

// Applies process-wide settings that the model's arithmetic depends on (thread
// count, oneDNN off; on CUDA: deterministic algorithms, a fixed cuBLAS
// workspace, no TF32). Called by the LibTorch-held predictor on every thread
// that runs the model (loads LibTorch); exposed for tools and tests.
void configure_runtime(const RuntimeOptions& rt);

class Predictor {
 public:
  Predictor(const ModelConfig& cfg, int streams, const RuntimeOptions& rt);
  ~Predictor();
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  int streams() const;
  const ModelConfig& config() const;

  // Writes streams() * kCdfSize integers: the table for the next byte of every
  // stream. Call exactly once before each observe().
  void predict(uint32_t* cdfs);
  // streams() * 256 floats: the probabilities behind the last predict().
  const float* probs() const;
  // The actual next byte of every stream (streams() entries; streams that have
  // ended get a fixed filler byte from the caller).
  void observe(const uint8_t* bytes);

  // The number of observe() calls this predictor will see in all, where the
  // caller knows it (the coder knows the file's length). Training steps whose
  // weights no later predict() would use (the last one or two of a file) are
  // then skipped; the tables do not change.
  void expect_positions(int64_t total);

  int64_t positions() const;    // observe() calls so far
  int64_t train_steps() const;  // training steps so far
  // Wall-clock seconds spent in predict() and in training steps so far.
  double predict_seconds() const;
  double train_seconds() const;

 private:
  // KernelPredictor (format 7 on, on the CPU), else the LibTorch-held model
  // (formats 1-6, CUDA) from the LibTorch module.
  std::unique_ptr<PredictorBackend> impl_;
};

}  // namespace shazip::model
