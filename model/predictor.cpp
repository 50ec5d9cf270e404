// model::Predictor: KernelPredictor for the models that run on shazip's CPU
// kernels, the LibTorch module's predictor for the rest; and the module's
// loader. See predictor.h and torch_backend.h. Torch-free.
#include "model/predictor.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "coder/assert.h"
#include "model/kernel_predictor.h"
#include "model/torch_backend.h"

#ifndef SHAZIP_TORCH_VERSION
#define SHAZIP_TORCH_VERSION "unknown"
#endif
#ifndef SHAZIP_TORCH_MODULE_FROM_BIN
#define SHAZIP_TORCH_MODULE_FROM_BIN "../lib/shazip"
#endif

namespace shazip::model {
namespace {

constexpr const char* kModuleName = "libshazip_torch.so";

// The folder of the running program.
std::string program_dir() {
  std::string path(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", path.data(), path.size());
  if (n <= 0 || static_cast<size_t>(n) >= path.size()) return ".";
  path.resize(static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

// Archives before format 7 went through LibTorch's CPU kernels and the BLAS,
// which pick their code by the processor (ATen by ATEN_CPU_CAPABILITY,
// OpenBLAS by OPENBLAS_CORETYPE), and decode only on the kernels they were
// made with: on an x86-64 CPU with AVX2 and FMA, those two pinned to the
// Haswell / AVX2 sets, as shazip made them. OpenBLAS reads its variable when
// it loads and ATen at its first call, both after this (the module brings
// them), so setting them in the process is enough; before shazip 0.21, when
// LibTorch loaded with the program, it took a restart. Elsewhere nothing is
// pinned: an archive made so records "auto" and decodes on the same kind of
// CPU. Runs before any other thread can read the environment.
void pin_cpu_kernels() {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  setenv("ATEN_CPU_CAPABILITY", "avx2", 1);
#endif
}

}  // namespace

std::string torch_module_path() {
  const std::string dir = program_dir();
  const std::string beside = dir + "/" + kModuleName;
  if (access(beside.c_str(), R_OK) == 0) return beside;
  return dir + "/" + SHAZIP_TORCH_MODULE_FROM_BIN + "/" + kModuleName;
}

const TorchBackend& torch_backend() {
  static std::once_flag once;
  static const TorchBackend* backend = nullptr;
  static std::string error;
  std::call_once(once, [] {
    pin_cpu_kernels();
    const std::string path = torch_module_path();
    // Never unloaded: LibTorch's threads and registrations live as long as
    // the process. Lazy binding, as the program's own start would have it
    // (binding all of LibTorch's symbols now costs a third of a second more).
    void* module = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
    if (!module) {
      const char* why = dlerror();
      error = why ? why : path + ": cannot be loaded";
      return;
    }
    using Entry = const TorchBackend* (*)();
    const auto entry = reinterpret_cast<Entry>(dlsym(module, "shazip_torch_backend"));
    if (!entry) {
      error = path + ": not shazip's LibTorch module (no shazip_torch_backend)";
      return;
    }
    backend = entry();
  });
  if (!backend) {
    throw std::runtime_error("cannot load LibTorch, which archives before format 7 and the GPU need: " + error);
  }
  return *backend;
}

BackendInfo backend_info() { return torch_backend().backend_info(); }

BackendInfo kernel_backend_info() {
  BackendInfo b;
  b.torch_version = SHAZIP_TORCH_VERSION;
  b.blas = "none";
  // What LibTorch would run with; shazip's kernels pick AVX2 at run time,
  // the same bits.
  b.cpu_capability = cpu_capability_setting();
  return b;
}

bool cuda_available() {
#ifdef SHAZIP_TORCH_CUDA
  return backend_info().cuda_available;
#else
  return false;
#endif
}

void configure_runtime(const RuntimeOptions& rt) { torch_backend().configure_runtime(rt); }

Predictor::Predictor(const ModelConfig& cfg, int streams, const RuntimeOptions& rt) {
  SHAZIP_ASSERT(cfg.validate().empty() && streams >= 1);
  if (rt.kernel_predictor && KernelPredictor::handles(cfg, rt.device == DeviceKind::kCpu)) {
    impl_ = std::make_unique<KernelPredictor>(cfg, streams, rt.async_train);
  } else {
    impl_ = torch_backend().make_predictor(cfg, streams, rt);
  }
}

Predictor::~Predictor() = default;

int Predictor::streams() const { return impl_->streams(); }
const ModelConfig& Predictor::config() const { return impl_->config(); }
void Predictor::predict(uint32_t* cdfs) { impl_->predict(cdfs); }
const float* Predictor::probs() const { return impl_->probs(); }
void Predictor::observe(const uint8_t* bytes) { impl_->observe(bytes); }
void Predictor::expect_positions(int64_t total) { impl_->expect_positions(total); }
int64_t Predictor::positions() const { return impl_->positions(); }
int64_t Predictor::train_steps() const { return impl_->train_steps(); }
double Predictor::predict_seconds() const { return impl_->predict_seconds(); }
double Predictor::train_seconds() const { return impl_->train_seconds(); }

}  // namespace shazip::model
