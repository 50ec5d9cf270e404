// The line between shazip and LibTorch. Coding with any CPU preset runs on
// shazip's own kernels (KernelPredictor, format 7 on) and needs no LibTorch;
// archives of formats 1-6 and the GPU do. Their predictor lives in a module
// of its own, libshazip_torch.so (model/torch_predictor.cpp, linked against
// LibTorch), which shazip loads the first time one of them needs it, so
// that a run that does not need it does not pay LibTorch's start-up (about
// half a second: its libraries' relocations and operator registration).
//
// Torch-free.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "model/config.h"
#include "model/predictor.h"

namespace shazip::model {

// What model::Predictor runs: KernelPredictor, or the LibTorch-held model.
// predictor.h states the contract.
class PredictorBackend {
 public:
  virtual ~PredictorBackend() = default;
  virtual int streams() const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual void predict(uint32_t* cdfs) = 0;
  virtual const float* probs() const = 0;
  virtual void observe(const uint8_t* bytes) = 0;
  virtual void expect_positions(int64_t total) = 0;
  virtual int64_t positions() const = 0;
  virtual int64_t train_steps() const = 0;
  virtual double predict_seconds() const = 0;
  virtual double train_seconds() const = 0;
};

// The module's entries.
struct TorchBackend {
  BackendInfo (*backend_info)();
  void (*configure_runtime)(const RuntimeOptions& rt);
  std::unique_ptr<PredictorBackend> (*make_predictor)(const ModelConfig& cfg, int streams,
                                                      const RuntimeOptions& rt);
};

// The CPU capability an archive records: ATen's ATEN_CPU_CAPABILITY, which
// pins LibTorch's kernels (torch_backend() sets it on AVX2 + FMA CPUs), or
// "auto". at::get_cpu_capability() is not exported in LibTorch 1.13; ATen
// honours the same variable, so the module reports it this way too.
inline const char* cpu_capability_setting() {
  const char* env = std::getenv("ATEN_CPU_CAPABILITY");
  return env ? env : "auto";
}

// Where shazip looks for the module: beside the running program (the build
// tree), then in the install tree's library folder (CMake's
// SHAZIP_TORCH_MODULE_FROM_BIN, relative to the program's folder).
std::string torch_module_path();

// The module, loaded on first use (thread-safe), with LibTorch's and the
// BLAS's CPU kernels pinned as archives before format 7 need them (on
// x86-64 with AVX2 and FMA: the environment's OPENBLAS_CORETYPE=Haswell and
// ATEN_CPU_CAPABILITY=avx2, set first). Throws std::runtime_error naming
// the module and the loader's reason when it cannot be loaded.
const TorchBackend& torch_backend();

}  // namespace shazip::model

// The module's one exported symbol.
extern "C" const shazip::model::TorchBackend* shazip_torch_backend();
