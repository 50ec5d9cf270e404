// [gpu] tests of the CUDA kernels (model/cuda/). They need a CUDA device and
// pass with a warning, checking nothing, when there is none: the CPU build and
// CI run them as no-ops. Torch-free: the kernels take raw device pointers.
#include <catch2/catch.hpp>

#include <cuda_runtime_api.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "coder/quantize.h"
#include "coder/range_coder.h"
#include "model/cuda/cdf_kernel.h"
#include "model/step_kernels.h"

using namespace shazip;

namespace {

bool have_gpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();  // clear the sticky error
    WARN("no CUDA device: [gpu] test skipped");
    return false;
  }
  return true;
}

template <class T>
struct DeviceBuffer {
  explicit DeviceBuffer(size_t n) : size(n) {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
    ptr = static_cast<T*>(p);
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  void upload(const std::vector<T>& v) {
    REQUIRE(cudaMemcpy(ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> v(size);
    REQUIRE(cudaMemcpy(v.data(), ptr, size * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return v;
  }
  T* ptr = nullptr;
  size_t size;
};

// Rows that exercise every branch of the quantizer.
std::vector<float> test_rows(int rows, std::mt19937& rng) {
  std::vector<float> p(static_cast<size_t>(rows) * 256);
  std::uniform_real_distribution<float> u(0, 1);
  for (int r = 0; r < rows; ++r) {
    float* row = &p[static_cast<size_t>(r) * 256];
    switch (r % 6) {
      case 0:  // a random distribution
      case 1: {
        float sum = 0;
        for (int i = 0; i < 256; ++i) sum += row[i] = std::pow(u(rng), 8.0f);
        for (int i = 0; i < 256; ++i) row[i] /= sum;
        break;
      }
      case 2:  // one-hot
        row[rng() % 256] = 1.0f;
        break;
      case 3:  // all zero: uniform table
        break;
      case 4:  // ties for the most probable symbol
        for (int i = 0; i < 256; ++i) row[i] = (i % 64 == 5) ? 0.25f : 0.0f;
        break;
      case 5:  // garbage: NaN, negatives, values above 1
        for (int i = 0; i < 256; ++i) row[i] = u(rng) - 0.3f;
        row[7] = std::numeric_limits<float>::quiet_NaN();
        row[9] = 3.0f;
        break;
    }
  }
  return p;
}

}  // namespace

TEST_CASE("GPU quantizer equals the CPU quantizer bit for bit", "[gpu]") {
  if (!have_gpu()) return;
  std::mt19937 rng(1);
  const int rows = 600;
  const std::vector<float> probs = test_rows(rows, rng);
  DeviceBuffer<float> d_probs(probs.size());
  DeviceBuffer<uint32_t> d_cdf(static_cast<size_t>(rows) * coder::kCdfSize);
  d_probs.upload(probs);
  REQUIRE(model::cuda::quantize_probs_device(d_probs.ptr, d_cdf.ptr, rows, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<uint32_t> gpu = d_cdf.download();
  size_t mismatches = 0;
  std::array<uint32_t, coder::kCdfSize> cpu;
  for (int r = 0; r < rows; ++r) {
    coder::quantize_probs(&probs[static_cast<size_t>(r) * 256], cpu.data());
    for (int i = 0; i < coder::kCdfSize; ++i) mismatches += cpu[i] != gpu[static_cast<size_t>(r) * coder::kCdfSize + i];
  }
  CHECK(mismatches == 0);
}

TEST_CASE("GPU softmax + quantizer: tables match its floats, floats match a softmax, runs repeat", "[gpu]") {
  if (!have_gpu()) return;
  std::mt19937 rng(2);
  std::normal_distribution<float> n(0, 4);
  const int rows = 512;
  std::vector<float> logits(static_cast<size_t>(rows) * 256);
  for (float& x : logits) x = n(rng);
  DeviceBuffer<float> d_logits(logits.size()), d_probs(logits.size());
  DeviceBuffer<uint32_t> d_cdf(static_cast<size_t>(rows) * coder::kCdfSize);
  d_logits.upload(logits);
  std::vector<uint32_t> first;
  for (int run = 0; run < 3; ++run) {
    REQUIRE(model::cuda::softmax_quantize_device(d_logits.ptr, d_probs.ptr, d_cdf.ptr, rows, nullptr) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<uint32_t> cdf = d_cdf.download();
    if (run == 0) first = cdf;
    CHECK(cdf == first);
  }
  const std::vector<float> probs = d_probs.download();
  std::array<uint32_t, coder::kCdfSize> cpu;
  size_t mismatches = 0;
  double worst = 0;
  for (int r = 0; r < rows; ++r) {
    const float* row = &probs[static_cast<size_t>(r) * 256];
    coder::quantize_probs(row, cpu.data());
    const uint32_t* gpu_row = first.data() + static_cast<size_t>(r) * coder::kCdfSize;
    for (int i = 0; i < coder::kCdfSize; ++i) mismatches += cpu[i] != gpu_row[i];
    double max = -1e30, sum = 0;
    for (int i = 0; i < 256; ++i) max = std::max<double>(max, logits[static_cast<size_t>(r) * 256 + i]);
    for (int i = 0; i < 256; ++i) sum += std::exp(logits[static_cast<size_t>(r) * 256 + i] - max);
    for (int i = 0; i < 256; ++i) {
      const double ref = std::exp(logits[static_cast<size_t>(r) * 256 + i] - max) / sum;
      worst = std::max(worst, std::abs(row[i] - ref) / std::max(ref, 1e-30));
    }
  }
  CHECK(mismatches == 0);
  CHECK(worst < 1e-5);
}

TEST_CASE("GPU deterministic softmax + quantizer equals the CPU step path's bit for bit", "[gpu]") {
  // Format 9's tables: step::softmax (det_expf, sum8) then the quantizer, on
  // logits of every scale, with ties for the maximum and saturating ranges.
  if (!have_gpu()) return;
  std::mt19937 rng(3);
  const int rows = 512;
  std::vector<float> logits(static_cast<size_t>(rows) * 256);
  for (int r = 0; r < rows; ++r) {
    std::normal_distribution<float> n(0, r % 4 == 3 ? 60.0f : static_cast<float>(1 + r % 8));
    float* row = &logits[static_cast<size_t>(r) * 256];
    for (int i = 0; i < 256; ++i) row[i] = n(rng);
    if (r % 5 == 0) row[17] = row[200] = 50.0f;  // two maxima
  }
  DeviceBuffer<float> d_logits(logits.size()), d_probs(logits.size());
  DeviceBuffer<uint32_t> d_cdf(static_cast<size_t>(rows) * coder::kCdfSize);
  d_logits.upload(logits);
  REQUIRE(model::cuda::det_softmax_quantize_device(d_logits.ptr, d_probs.ptr, d_cdf.ptr, rows, nullptr) ==
          cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<float> probs = d_probs.download();
  const std::vector<uint32_t> cdf = d_cdf.download();
  std::vector<float> cpu = logits;
  std::array<uint32_t, coder::kCdfSize> table;
  size_t float_mismatches = 0, table_mismatches = 0;
  for (int r = 0; r < rows; ++r) {
    float* row = &cpu[static_cast<size_t>(r) * 256];
    model::step::softmax(row, 256);
    coder::quantize_probs(row, table.data());
    for (int i = 0; i < 256; ++i) float_mismatches += row[i] != probs[static_cast<size_t>(r) * 256 + i];
    for (int i = 0; i < coder::kCdfSize; ++i) {
      table_mismatches += table[i] != cdf[static_cast<size_t>(r) * coder::kCdfSize + i];
    }
  }
  CHECK(float_mismatches == 0);
  CHECK(table_mismatches == 0);
}
