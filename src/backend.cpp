// Which arithmetic an archive needs, and whether this process has it. Kept
// apart from container.cpp so that the header code builds without LibTorch.
#include <string>

#include "src/container.h"

namespace shazip {
namespace {

// The family and version of the BLAS (e.g. "OpenBLAS 0.3.21"), without the
// core type and build options that follow.
std::string blas_family(const std::string& blas) {
  size_t end = blas.find(' ');
  if (end == std::string::npos) return blas;
  end = blas.find(' ', end + 1);
  return blas.substr(0, end);
}

}  // namespace

Backend current_backend(model::DeviceKind device) {
  // The CPU codes on shazip's kernels alone (format 7 on): no LibTorch to ask.
  const model::BackendInfo info =
      device == model::DeviceKind::kCuda ? model::backend_info() : model::kernel_backend_info();
  Backend b;
  b.device = device;
  b.torch_version = info.torch_version;
  if (device == model::DeviceKind::kCuda) {
    // The GPU's arithmetic does not touch the CPU's kernels: these two fields
    // hold the GPU and the CUDA runtime instead (docs/FORMAT.md).
    b.blas = info.gpu;
    b.cpu_capability = info.cuda_runtime;
  } else {
    b.blas = info.blas;
    b.cpu_capability = info.cpu_capability;
  }
  return b;
}

bool portable_arithmetic(const Header& h) {
  if (h.method == Method::kStored) return true;
  // The CPU's own kernels (format 7 on) ...
  const bool cpu_kernels = h.version >= 7 && h.model.step_kernels && h.model.train_kernels;
  if (h.backend.device == model::DeviceKind::kCpu) return cpu_kernels;
  // ... and, from format 10, the CUDA kernels that compute their bits: the
  // archive decodes on either device.
  return cpu_kernels && h.version >= 10 && h.model.cuda_step_kernels &&
         h.model.cuda_training_kernels();
}

std::string backend_mismatch(const Header& h, const model::BackendInfo& here) {
  if (portable_arithmetic(h)) return "";
  const Backend& recorded = h.backend;
  if (recorded.device == model::DeviceKind::kCuda && !here.cuda_available) {
    return "it was made on a CUDA GPU (LibTorch " + recorded.torch_version +
           "); decode it with a CUDA build of shazip on a GPU";
  }
  if (recorded.device == model::DeviceKind::kCuda &&
      (recorded.blas != here.gpu || recorded.cpu_capability != here.cuda_runtime)) {
    return "it was made on a " + recorded.blas + " with " + recorded.cpu_capability + " but this machine has " +
           (here.gpu.empty() ? std::string("no usable GPU") : "a " + here.gpu + " with " + here.cuda_runtime) +
           "; decode it on the same kind of GPU";
  }
  if (recorded.torch_version != here.torch_version) {
    return "it was made with LibTorch " + recorded.torch_version + " but this shazip uses LibTorch " +
           here.torch_version + "; decode it with a shazip built against LibTorch " + recorded.torch_version;
  }
  if (recorded.device == model::DeviceKind::kCpu && blas_family(recorded.blas) != blas_family(here.blas)) {
    return "it was made with " + blas_family(recorded.blas) + " but this process uses " +
           blas_family(here.blas) + "; install the same BLAS (Debian: libopenblas0-openmp)";
  }
  if (recorded.device == model::DeviceKind::kCpu &&
      (recorded.blas != here.blas || recorded.cpu_capability != here.cpu_capability)) {
    return "it was made with CPU kernels '" + recorded.blas + "', ATen capability '" +
           recorded.cpu_capability + "' but this process has '" + here.blas + "', '" +
           here.cpu_capability + "'" +
           (recorded.cpu_capability == "auto" ? "; it was made unpinned, decode it on the same kind of CPU"
                                              : "; decode it on an x86-64 CPU with AVX2 and FMA");
  }
  return "";
}

}  // namespace shazip
