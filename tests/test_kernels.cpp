// Step kernels (model/step_kernels.h): each sum in the order it defines, the
// LSTM cell's pointwise pass against its scalar formulas, and the AVX2 + FMA
// versions (and linear's AVX-512 kernel) equal to the plain C++ ones bit for
// bit, on shapes that leave remainders everywhere; the same for the training kernels
// (model/train_kernels.h), whose gradients tests/test_model.cpp checks
// against LibTorch's autograd; and KernelPredictor, the model on these
// kernels alone. Torch-free.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "coder/range_coder.h"
#include "model/config.h"
#include "model/kernel_math.h"
#include "model/kernel_predictor.h"
#include "model/online.h"
#include "model/params.h"
#include "model/step_kernels.h"
#include "model/train_kernels.h"

using namespace shazip::model;

namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Turns about a quarter of each vector's entries into +0 or -0, in order.
void sprinkle_zeros(std::mt19937& rng, std::initializer_list<std::vector<float>*> vectors) {
  for (auto* v : vectors) {
    for (auto& x : *v) {
      if (rng() % 4 == 0) x = rng() % 2 ? -0.0f : 0.0f;
    }
  }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

float reference_lanes(const float* l) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

// Restores the kernels' choice on scope exit.
struct SimdScope {
  bool before = step::simd();
  bool before512 = step::avx512();
  ~SimdScope() {
    step::set_simd(before);
    step::set_avx512(before512);
  }
};

// Selects the AVX2 or the plain C++ kernels for the rest of a test; false
// (with a warning) when AVX2 is asked for and the CPU has none.
bool select_kernels(bool simd) {
  if (simd && !step::set_simd(true)) {
    WARN("no AVX2 + FMA on this CPU: only the plain C++ kernels are tested");
    return false;
  }
  step::set_simd(simd);
  return true;
}

enum class Kernels { kPlain, kAvx2, kAvx512 };

// The same, three ways: plain C++, AVX2 alone, AVX2 with linear's AVX-512
// kernel; false (with a warning) when the CPU lacks what is asked for.
bool select_kernels(Kernels kernels) {
  if (!select_kernels(kernels != Kernels::kPlain)) return false;
  if (!step::set_avx512(kernels == Kernels::kAvx512) && kernels == Kernels::kAvx512) {
    WARN("no AVX-512F + DQ on this CPU: linear's AVX-512 kernel is not tested");
    return false;
  }
  return true;
}

}  // namespace

TEST_CASE("step::linear and step::linear2 are one dot8 per entry plus the bias", "[kernels]") {
  SimdScope keep;
  const Kernels kernels = GENERATE(Kernels::kPlain, Kernels::kAvx2, Kernels::kAvx512);
  if (!select_kernels(kernels)) return;
  // Every block shape: AVX2's 3-row blocks and their remainders of 1 and 2;
  // AVX-512's 6-row blocks and remainders of 1 to 5 (4, 2, and AVX2's one).
  for (const int64_t rows : {int64_t{13}, int64_t{7}, int64_t{6}, int64_t{5}, int64_t{4}, int64_t{3}, int64_t{2},
                             int64_t{1}}) {
    const int64_t k = 24, n = 40;
    const auto x = random_floats(rows * k, 1);
    const auto h = random_floats(rows * k, 2);
    const auto wx = random_floats(n * k, 3);  // (n, k) as LibTorch stores it
    const auto wh = random_floats(n * k, 4);
    const auto bias = random_floats(n, 5);
    std::vector<float> y(rows * n), y_nobias(rows * n), y2(rows * n);
    step::linear(x.data(), rows, k, wx.data(), n, bias.data(), y.data());
    step::linear(x.data(), rows, k, wx.data(), n, nullptr, y_nobias.data());
    step::linear2(x.data(), h.data(), rows, k, wx.data(), wh.data(), n, bias.data(), y2.data());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < n; ++j) {
        float lanes[8] = {};
        for (int64_t i = 0; i < k; ++i) lanes[i % 8] = std::fmaf(x[r * k + i], wx[j * k + i], lanes[i % 8]);
        const float one = reference_lanes(lanes);
        // [x, h] . [wx, wh]: k is a multiple of 8, so h[i] joins lane i mod 8.
        for (int64_t i = 0; i < k; ++i) lanes[i % 8] = std::fmaf(h[r * k + i], wh[j * k + i], lanes[i % 8]);
        const float two = reference_lanes(lanes);
        INFO("kernels " << static_cast<int>(kernels) << " (plain, AVX2, AVX-512) rows " << rows << " row " << r
                        << " column " << j);
        REQUIRE(same_bits(y_nobias[r * n + j], one));
        REQUIRE(same_bits(y[r * n + j], one + bias[j]));
        REQUIRE(same_bits(y2[r * n + j], two + bias[j]));
        REQUIRE(same_bits(y[r * n + j], step::dot8(x.data() + r * k, wx.data() + j * k, k) + bias[j]));
      }
    }
  }
}

TEST_CASE("step::linear_tn and step::col_sum8 give linear's and sum8's bits on the padded transposes", "[kernels]") {
  // The training step's weight gradients over few rows take these instead of
  // transposing (train_kernels.cpp, kDirectRows): the same bits, signed zeros
  // included (the padding's fma(0, 0, acc) turns a -0 lane into +0). AVX-512
  // takes rows == rows_pad up to 64 (two groups of lanes up to 32 rows, four
  // above), 32 rows j of y to a block (n = 72: two blocks and a part).
  SimdScope keep;
  const Kernels kernels = GENERATE(Kernels::kPlain, Kernels::kAvx2, Kernels::kAvx512);
  if (!select_kernels(kernels)) return;
  std::mt19937 rng(31);
  for (const int64_t rows : {1, 5, 8, 13, 16, 24, 29, 32, 40, 56, 64, 72}) {
    const int64_t pad = (rows + 7) / 8 * 8;
    for (const int64_t n : {8, 24, 72}) {
      for (const int64_t k : {8, 16, 40}) {  // 40 = 24 + 8 + 8: both column blocks (AVX-512: 16 + 16 + 8)
        auto a = random_floats(rows * n, static_cast<uint32_t>(rows * 100 + n));
        auto b = random_floats(rows * k, static_cast<uint32_t>(rows * 100 + k + 50));
        sprinkle_zeros(rng, {&a, &b});
        std::fill(a.begin(), a.begin() + n, -0.0f);  // columns whose first row is -0
        std::vector<float> at(n * pad, 0.0f), bt(k * pad, 0.0f);
        for (int64_t p = 0; p < rows; ++p) {
          for (int64_t j = 0; j < n; ++j) at[j * pad + p] = a[p * n + j];
          for (int64_t i = 0; i < k; ++i) bt[i * pad + p] = b[p * k + i];
        }
        std::vector<float> want(n * k), got(n * k, 7.0f), sums(n), got_sums(n, 7.0f);
        step::linear(at.data(), n, pad, bt.data(), k, nullptr, want.data());
        for (int64_t j = 0; j < n; ++j) sums[j] = step::sum8(at.data() + j * pad, pad);
        step::linear_tn(a.data(), b.data(), rows, pad, n, k, got.data());
        step::col_sum8(a.data(), rows, pad, n, got_sums.data());
        INFO("kernels " << static_cast<int>(kernels) << " (plain, AVX2, AVX-512) rows " << rows << " n " << n
                        << " k " << k);
        CHECK(same_bits(got, want));
        CHECK(same_bits(got_sums, sums));
      }
    }
  }
}

TEST_CASE("step::linear_nn gives linear's bits on the transposed weights", "[kernels]") {
  // The training step's input gradients over few rows take it with AVX-512
  // instead of transposing w (train_kernels.cpp, kNnRowsAvx512): rows
  // three at a time and the remainders of 1 and 2, 16 columns to a register
  // and a masked 8, signed zeros included.
  SimdScope keep;
  const Kernels kernels = GENERATE(Kernels::kPlain, Kernels::kAvx2, Kernels::kAvx512);
  if (!select_kernels(kernels)) return;
  std::mt19937 rng(37);
  for (const int64_t rows : {1, 2, 3, 5, 7, 16}) {
    for (const int64_t n : {8, 40, 384}) {
      for (const int64_t k : {8, 16, 40}) {
        auto x = random_floats(rows * n, static_cast<uint32_t>(rows * 1000 + n));
        auto w = random_floats(n * k, static_cast<uint32_t>(n * 100 + k));
        sprinkle_zeros(rng, {&x, &w});
        std::fill(x.begin(), x.begin() + n, -0.0f);  // a row of -0: its outputs' signs
        std::vector<float> wt(k * n);
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t i = 0; i < k; ++i) wt[i * n + j] = w[j * k + i];
        }
        std::vector<float> want(rows * k), got(rows * k, 7.0f);
        step::linear(x.data(), rows, n, wt.data(), k, nullptr, want.data());
        step::linear_nn(x.data(), rows, n, w.data(), k, got.data());
        INFO("kernels " << static_cast<int>(kernels) << " (plain, AVX2, AVX-512) rows " << rows << " n " << n
                        << " k " << k);
        CHECK(same_bits(got, want));
      }
    }
  }
}

TEST_CASE("step::weighted_sum is one fused multiply-add chain per column", "[kernels]") {
  SimdScope keep;
  const bool simd = GENERATE(false, true);
  if (!select_kernels(simd)) return;
  const int64_t count = 13, n = 72;  // 64 + 8: both block widths
  const auto weights = random_floats(count, 6);
  const auto rows = random_floats(count * n, 7);
  std::vector<float> y(n);
  step::weighted_sum(weights.data(), count, rows.data(), n, y.data());
  for (int64_t j = 0; j < n; ++j) {
    float acc = 0.0f;
    for (int64_t i = 0; i < count; ++i) acc = std::fmaf(weights[i], rows[i * n + j], acc);
    INFO("simd " << simd << " column " << j);
    REQUIRE(same_bits(y[j], acc));
  }
}

TEST_CASE("step::sum8 and step::dot8 keep eight lanes and add them in a fixed tree", "[kernels]") {
  SimdScope keep;
  const bool simd = GENERATE(false, true);
  if (!select_kernels(simd)) return;
  for (const int64_t n : {0, 1, 7, 8, 9, 65, 96, 257}) {
    const auto a = random_floats(static_cast<size_t>(n), 10 + static_cast<uint32_t>(n), 100.0f);
    const auto b = random_floats(static_cast<size_t>(n), 20 + static_cast<uint32_t>(n));
    float sums[8] = {}, dots[8] = {};
    for (int64_t i = 0; i < n; ++i) {
      sums[i % 8] += a[i];
      dots[i % 8] = std::fmaf(a[i], b[i], dots[i % 8]);
    }
    INFO("simd " << simd << " n " << n);
    CHECK(same_bits(step::sum8(a.data(), n), reference_lanes(sums)));
    CHECK(same_bits(step::dot8(a.data(), b.data(), n), reference_lanes(dots)));
  }
  // A sum whose order shows: a left-to-right sum of these gives 0, the lanes 2.
  std::vector<float> big(16, 0.0f);
  big[0] = 1e8f;
  big[1] = 1.0f;
  big[2] = 1.0f;
  big[8] = -1e8f;
  CHECK(step::sum8(big.data(), 16) == 2.0f);
}

TEST_CASE("step::layer_norm and step::softmax follow their definitions", "[kernels]") {
  SimdScope keep;
  const bool simd = GENERATE(false, true);
  if (!select_kernels(simd)) return;
  const int64_t rows = 3, d = 45;  // the AVX2 passes' eight-wide blocks and a tail
  const auto x = random_floats(rows * d, 5, 3.0f);
  const auto w = random_floats(d, 6);
  const auto b = random_floats(d, 7);
  std::vector<float> y(rows * d), in_place = x;
  step::layer_norm(x.data(), rows, d, w.data(), b.data(), 1e-12f, y.data());
  step::layer_norm(in_place.data(), rows, d, w.data(), b.data(), 1e-12f, in_place.data());
  CHECK(same_bits(y, in_place));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * d;
    const float mean = step::sum8(xr, d) / static_cast<float>(d);
    std::vector<float> c(d);
    for (int64_t i = 0; i < d; ++i) c[i] = xr[i] - mean;
    const float rstd = 1.0f / std::sqrt(step::dot8(c.data(), c.data(), d) / static_cast<float>(d) + 1e-12f);
    double norm_mean = 0;
    for (int64_t i = 0; i < d; ++i) {
      REQUIRE(same_bits(y[r * d + i], c[i] * rstd * w[i] + b[i]));
      norm_mean += c[i] * rstd;
    }
    CHECK(std::fabs(norm_mean / d) < 1e-5);
  }

  for (const int64_t n : {1, 5, 65, 256}) {
    auto logits = random_floats(static_cast<size_t>(n), 30 + static_cast<uint32_t>(n), 4.0f);
    std::vector<float> p = logits;
    step::softmax(p.data(), n);
    float m = logits[0];
    for (float v : logits) m = std::max(m, v);
    std::vector<float> e(n);
    for (int64_t i = 0; i < n; ++i) e[i] = det_expf(logits[i] - m);
    const float s = step::sum8(e.data(), n);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      INFO("n " << n << " i " << i);
      REQUIRE(same_bits(p[i], e[i] / s));
      REQUIRE(std::fabs(p[i] - std::exp(static_cast<double>(logits[i] - m)) / s) < 1e-6);
      total += p[i];
    }
    CHECK(std::fabs(total - 1.0) < 1e-5);
  }
}

TEST_CASE("step kernels give the same bits with and without AVX2", "[kernels]") {
  SimdScope keep;
  if (!step::set_simd(true)) {
    WARN("no AVX2 + FMA on this CPU: nothing to compare");
    return;
  }
  // With AVX2 alone and (where the CPU has it) with linear's AVX-512 kernel.
  const bool avx512 = GENERATE(false, true);
  if (step::set_avx512(avx512) != avx512) {
    WARN("no AVX-512F + DQ on this CPU: linear's AVX-512 kernel is not tested");
    return;
  }
  // The model's shapes: B = 16 rows, k = d = 96, n = 4d = 384 and 256; fewer
  // rows; and the attention's mix over 65 keys.
  for (const int64_t n : {int64_t{384}, int64_t{256}, int64_t{8}})
  for (const int64_t rows : {int64_t{16}, int64_t{13}, int64_t{6}, int64_t{5}, int64_t{3}, int64_t{1}}) {
    const int64_t k = 96;
    const auto x = random_floats(rows * k, 40);
    const auto h = random_floats(rows * k, 41);
    const auto wx = random_floats(n * k, 42, 0.1f);
    const auto wh = random_floats(n * k, 43, 0.1f);
    const auto bias = random_floats(n, 44);
    const auto keys = random_floats(65 * n, 45);
    std::vector<float> fast(rows * n), plain(rows * n), fast2(rows * n), plain2(rows * n);
    std::vector<float> fast_rows(rows), plain_rows(rows), fast_mix(n), plain_mix(n);
    for (const bool simd : {true, false}) {
      step::set_simd(simd);
      step::linear(x.data(), rows, k, wx.data(), n, bias.data(), (simd ? fast : plain).data());
      step::linear2(x.data(), h.data(), rows, k, wx.data(), wh.data(), n, bias.data(), (simd ? fast2 : plain2).data());
      step::dot8_rows(x.data(), rows, k, h.data(), k, (simd ? fast_rows : plain_rows).data());
      step::weighted_sum(x.data(), std::min<int64_t>(rows * k, 65), keys.data(), n,
                         (simd ? fast_mix : plain_mix).data());
    }
    INFO("AVX-512 " << avx512 << " n " << n << " rows " << rows);
    CHECK(same_bits(fast, plain));
    CHECK(same_bits(fast2, plain2));
    CHECK(same_bits(fast_rows, plain_rows));
    CHECK(same_bits(fast_mix, plain_mix));
  }
}

TEST_CASE("step::gelu, step::sigmoid and step::softmax give the same bits with and without AVX2", "[kernels]") {
  SimdScope keep;
  // Across det_expf's whole range and past its clamps, with tails of 5.
  std::vector<float> x(8 * 50 + 5);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -120.0f + 240.0f * static_cast<float>(i) / x.size() + 0.01f * (i % 7);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> gelu_plain = x, softmax_plain = x, sigmoid_plain(x.size());
  step::set_simd(false);
  step::gelu(gelu_plain.data(), n);
  step::softmax(softmax_plain.data(), n);
  step::sigmoid(x.data(), n, 1.702f, sigmoid_plain.data());
  for (size_t i = 0; i < x.size(); ++i) {
    INFO("x " << x[i]);
    REQUIRE(same_bits(gelu_plain[i], x[i] * (1.0f / (1.0f + det_expf(-(x[i] * 1.702f))))));
    REQUIRE(std::fabs(gelu_plain[i] - x[i] / (1.0 + std::exp(-1.702 * x[i]))) <= 1e-6 * (1.0 + std::fabs(x[i])));
    REQUIRE(same_bits(sigmoid_plain[i], 1.0f / (1.0f + det_expf(-(x[i] * 1.702f)))));
  }
  if (!step::set_simd(true)) {
    WARN("no AVX2 + FMA on this CPU: nothing to compare");
    return;
  }
  std::vector<float> gelu_fast = x, softmax_fast = x, sigmoid_fast(x.size());
  step::gelu(gelu_fast.data(), n);
  step::softmax(softmax_fast.data(), n);
  step::sigmoid(x.data(), n, 1.702f, sigmoid_fast.data());
  CHECK(same_bits(gelu_fast, gelu_plain));
  CHECK(same_bits(softmax_fast, softmax_plain));
  CHECK(same_bits(sigmoid_fast, sigmoid_plain));
}

namespace {

// A model's worth of random parameters (or gradient buffers) for the
// training kernels: each array its own vector, the pointers into them.
struct TrainModel {
  std::vector<std::vector<float>> arrays;
  train::Params<float*> p;
  uint32_t seed;

  TrainModel(int64_t d, int64_t boom, int layers, bool attn, uint32_t s) : seed(s) {
    arrays.reserve(256);
    p.embed = make(256 * d, 0.3f);
    p.dec_bias = make(256, 0.1f);
    for (int l = 0; l < layers; ++l) {
      p.blocks.push_back({make(d, 0.2f, 1.0f), make(d, 0.1f), make(4 * d * d, 0.2f), make(4 * d * d, 0.2f),
                          make(4 * d, 0.1f), make(4 * d, 0.1f), make(d, 0.2f, 1.0f), make(d, 0.1f),
                          make(d, 0.2f, 1.0f), make(d, 0.1f), make(boom * d * d, 0.2f), make(boom * d, 0.1f)});
    }
    if (attn) {
      p.attn = {make(d, 0.2f, 1.0f), make(d, 0.1f), make(d, 0.2f, 1.0f), make(d, 0.1f), make(d * d, 0.2f),
                make(d, 0.1f),       make(d, 0.2f, 1.0f), make(d, 0.1f), make(d, 0.5f), make(d, 0.5f),
                make(d, 0.5f),       make(2 * d * d, 0.3f), make(2 * d, 0.1f)};
    }
  }
  float* make(int64_t n, float scale, float mean = 0.0f) {
    arrays.push_back(random_floats(static_cast<size_t>(n), seed++, scale));
    for (auto& x : arrays.back()) x += mean;
    return arrays.back().data();
  }
  train::Weights weights() const {
    train::Weights w;
    w.embed = p.embed;
    w.dec_bias = p.dec_bias;
    for (const auto& b : p.blocks) {
      w.blocks.push_back({b.ln_start_w, b.ln_start_b, b.w_ih, b.w_hh, b.b_ih, b.b_hh, b.ln_ff_w, b.ln_ff_b,
                          b.ln_xff_w, b.ln_xff_b, b.boom_w, b.boom_b});
    }
    const auto& a = p.attn;
    w.attn = {a.ln_mem_w, a.ln_mem_b, a.ln_mid_w, a.ln_mid_b, a.q_w, a.q_b, a.q_ln_w,
              a.q_ln_b,   a.qs,       a.ks,       a.vs,       a.vq_w, a.vq_b};
    return w;
  }
};

}  // namespace

TEST_CASE("the training kernels give the same bits with and without AVX2", "[kernels]") {
  // The whole training step (forward, backward, Adam) decides every later
  // probability: an AVX2 machine and one without must agree on every bit.
  SimdScope keep;
  // 15 rows: weight gradients without transposes (kDirectRows); 45: with
  // them, padded to 48.
  const int64_t d = 16, boom = 3, seg = 5;
  const int64_t batch = GENERATE(3, 9);
  const int attn_layer = GENERATE(-1, 0, 1);
  INFO("batch " << batch << " attention layer " << attn_layer);
  train::Shape shape;
  shape.batch = batch;
  shape.seg = seg;
  shape.dim = d;
  shape.boom_factor = boom;
  shape.attn_layer = attn_layer;
  shape.ln_eps = 1e-12f;
  const TrainModel model(d, boom, 2, attn_layer >= 0, 100);
  const int64_t slots = 9, mem_fill = 7;
  const auto h0 = random_floats(2 * batch * d, 1, 0.5f), c0 = random_floats(2 * batch * d, 2, 1.0f);
  const auto mem = random_floats(batch * slots * d, 3, 1.0f);
  train::Start start;
  for (int l = 0; l < 2; ++l) {
    start.h.push_back(h0.data() + l * batch * d);
    start.c.push_back(c0.data() + l * batch * d);
  }
  start.mem = mem.data();
  start.slots = slots;
  start.mem_fill = mem_fill;
  std::mt19937 rng(4);
  std::vector<int64_t> bytes(batch * (seg + 1));
  for (auto& b : bytes) b = static_cast<int64_t>(rng() % 256);

  auto run = [&](bool simd, uint32_t garbage, std::vector<std::vector<float>>* out) {
    step::set_simd(simd);  // with AVX-512 where the caller left it on
    TrainModel grads(d, boom, 2, attn_layer >= 0, garbage);  // every element must be overwritten
    train::SegmentPass pass;
    const double loss = pass.run(shape, model.weights(), start, bytes.data(), grads.p);
    // One Adam step over the first array (the embedding), clipped.
    std::vector<float> w = model.arrays[0], m(w.size(), 0.01f), v(w.size(), 0.02f);
    train::adam_step({1e-3, 0.5, 0.999, 1e-6, 0.01}, 0.5, 0.999, static_cast<int64_t>(w.size()), w.data(),
                     grads.arrays[0].data(), m.data(), v.data());
    *out = grads.arrays;
    out->push_back(w);
    out->push_back(m);
    out->push_back(v);
    return loss;
  };
  std::vector<std::vector<float>> plain, fast;
  const double plain_loss = run(false, 500, &plain);
  CHECK(std::isfinite(plain_loss));
  CHECK(plain_loss > 1.0);
  // A second run with other garbage in the gradients gives the same bits.
  std::vector<std::vector<float>> again;
  run(false, 900, &again);
  REQUIRE(again.size() == plain.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    INFO("array " << i);
    CHECK(same_bits(again[i], plain[i]));
  }
  if (!step::set_simd(true)) {
    WARN("no AVX2 + FMA on this CPU: nothing to compare");
    return;
  }
  // AVX2 alone, then with linear's AVX-512 kernel where the CPU has it.
  for (const bool avx512 : {false, true}) {
    if (step::set_avx512(avx512) != avx512) {
      WARN("no AVX-512F + DQ on this CPU: linear's AVX-512 kernel is not tested");
      break;
    }
    const double fast_loss = run(true, 500, &fast);
    INFO("AVX-512 " << avx512);
    CHECK(fast_loss == plain_loss);
    REQUIRE(fast.size() == plain.size());
    for (size_t i = 0; i < plain.size(); ++i) {
      INFO("array " << i);
      CHECK(same_bits(fast[i], plain[i]));
    }
  }
}

TEST_CASE("train::grad_norm: one dot8, or (format 10) the sum8 of its blocks' dot8s", "[kernels]") {
  const int64_t n = 2 * train::kNormBlock + 24;  // two whole blocks and a short one
  const auto g = random_floats(n, 6, 1.0f);
  const float* p = g.data();
  CHECK(train::grad_norm(p, n, false) == std::sqrt(step::dot8(p, p, n)));
  const float parts[3] = {step::dot8(p, p, train::kNormBlock),
                          step::dot8(p + train::kNormBlock, p + train::kNormBlock, train::kNormBlock),
                          step::dot8(p + 2 * train::kNormBlock, p + 2 * train::kNormBlock, 24)};
  const float blocked = train::grad_norm(p, n, true);
  CHECK(blocked == std::sqrt(step::sum8(parts, 3)));
  CHECK(std::abs(blocked / train::grad_norm(p, n, false) - 1.0f) < 1e-5f);
  // Where the order shows: a block of ones, then one of 1e-3s, whose squares
  // vanish against the ones' lanes (512 each) but not as a block's sum.
  std::vector<float> lumpy(2 * train::kNormBlock, 1e-3f);
  std::fill(lumpy.begin(), lumpy.begin() + train::kNormBlock, 1.0f);
  CHECK(train::grad_norm(lumpy.data(), 2 * train::kNormBlock, false) == 64.0f);
  CHECK(train::grad_norm(lumpy.data(), 2 * train::kNormBlock, true) > 64.0f);
  // Within one block the two are the same sum.
  CHECK(train::grad_norm(p, 1000, true) == train::grad_norm(p, 1000, false));
}

TEST_CASE("train::divide_by_bias2 is the division over whole binades", "[kernels]") {
  // Adam's sqrt(v) / bias2_sqrt without the divider in AVX2: two FMA
  // corrections of s * RN(1 / c), proved to round as the division does;
  // checked on every float of [1, 2) for bias corrections of the default
  // beta2's schedule and odd divisors, and on zeros, extremes, inf and NaN.
  SimdScope restore;
  const bool simd = GENERATE(false, true);
  if (!select_kernels(simd)) return;
  INFO((simd ? "AVX2" : "plain C++"));
  std::vector<float> divisors;
  for (const double t : {1.0, 2.0, 7.0, 1000.0, 50000.0, 1e6}) {
    divisors.push_back(static_cast<float>(std::sqrt(1.0 - std::pow(0.9999, t))));
  }
  divisors.push_back(static_cast<float>(std::sqrt(1.0 - 0.9)));
  divisors.push_back(0.7071068f);
  divisors.push_back(std::nextafter(1.0f, 0.0f));
  const int64_t chunk = int64_t{1} << 20;
  std::vector<float> s(static_cast<size_t>(chunk)), out(s.size());
  for (const float c : divisors) {
    INFO("c = " << c);
    int64_t wrong = 0;
    for (uint32_t first = 0; first < (1u << 23); first += static_cast<uint32_t>(chunk)) {
      for (int64_t i = 0; i < chunk; ++i) {
        const uint32_t bits = 0x3F800000u | (first + static_cast<uint32_t>(i));
        std::memcpy(&s[static_cast<size_t>(i)], &bits, sizeof bits);
      }
      train::divide_by_bias2(s.data(), chunk, c, out.data());
      for (size_t i = 0; i < s.size(); ++i) wrong += !same_bits(out[i], s[i] / c);
    }
    CHECK(wrong == 0);
    // sqrt of the smallest subnormal and of the largest float, zero, inf, NaN;
    // 17 values: both kernels' tails.
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> odd{0.0f,  std::sqrt(std::numeric_limits<float>::denorm_min()), 1e-30f, 3e-7f, 0.5f,
                                 1.0f,  c,  2.0f, 1234.5f, 6.5e9f, std::sqrt(std::numeric_limits<float>::max()),
                                 inf,   nan, 0.1f, 1e-20f, 7.0f, 1e19f};
    std::vector<float> got(odd.size());
    train::divide_by_bias2(odd.data(), static_cast<int64_t>(odd.size()), c, got.data());
    for (size_t i = 0; i < odd.size(); ++i) {
      INFO("s = " << odd[i]);
      CHECK(same_bits(got[i], odd[i] / c));
    }
  }
}

TEST_CASE("without momentum train::adam_range steps as torch.optim.Adam and leaves m alone", "[kernels]") {
  // beta1 = 0 (every preset): the first moment 0 * m + 1 * g is g but for the
  // sign of a zero, which moves no weight but a -0, and no weight is -0 (the
  // test below); so the step skips m. Against the formula with m, at random
  // m of both signs, with zero gradients of both signs at zero weights, a
  // zero v, a gradient whose square overflows and a NaN.
  SimdScope restore;
  const bool simd = GENERATE(false, true);
  if (!select_kernels(simd)) return;
  INFO((simd ? "AVX2" : "plain C++"));
  const float clip = GENERATE(0.01f, 1e30f);
  INFO("clip " << clip);
  const int64_t n = 1003;
  const train::AdamConfig cfg{1e-3, 0.0, 0.9999, 1e-6, clip, true};
  std::vector<float> w = random_floats(n, 21, 0.1f), g = random_floats(n, 22, 0.5f), m = random_floats(n, 23, 0.01f);
  std::vector<float> v = random_floats(n, 24, 0.01f);
  for (float& x : v) x = x * x;
  for (int64_t i = 0; i < 40; ++i) {
    g[static_cast<size_t>(i)] = (i & 1) ? -0.0f : 0.0f;
    if (i < 20) w[static_cast<size_t>(i)] = 0.0f;
  }
  v[40] = 0.0f;
  const bool no_clip = clip > 1.0f;  // a NaN makes the norm NaN, and then nothing clips
  if (no_clip) {
    g[41] = 1e20f;  // g * g overflows
    g[42] = std::numeric_limits<float>::quiet_NaN();
  }
  g[43] = -0.0f;
  v[43] = 0.0f;
  const double beta2_pow = std::pow(0.9999, 3.0);
  // The reference: torch.optim.Adam's formula with m, in plain C++.
  std::vector<float> ref_w(w), ref_g(g), ref_m(m), ref_v(v);
  {
    const train::AdamConstants k = train::adam_constants(cfg, 0.0, beta2_pow, n, ref_g.data());
    REQUIRE(!k.momentum());
    REQUIRE(k.c1 == 1.0f);
    for (int64_t i = 0; i < n; ++i) {
      const size_t j = static_cast<size_t>(i);
      const float gi = k.coef < 1.0f ? ref_g[j] * k.coef : ref_g[j];
      ref_g[j] = gi;
      ref_m[j] = k.b1 * ref_m[j] + k.c1 * gi;
      ref_v[j] = k.b2 * ref_v[j] + k.c2 * (gi * gi);
      ref_w[j] = ref_w[j] - k.step_size * (ref_m[j] / (std::sqrt(ref_v[j]) / k.bias2_sqrt + k.eps));
    }
  }
  std::vector<float> w_out(static_cast<size_t>(n), -1.0f), g2(g), m2(m), v2(v);
  const train::AdamConstants k = train::adam_constants(cfg, 0.0, beta2_pow, n, g2.data());
  train::adam_range(k, 0, 517, w.data(), w_out.data(), g2.data(), m2.data(), v2.data());
  train::adam_range(k, 517, n, w.data(), w_out.data(), g2.data(), nullptr, v2.data());  // m may be null
  CHECK(same_bits(w_out, ref_w));
  CHECK(same_bits(g2, ref_g));
  CHECK(same_bits(v2, ref_v));
  CHECK(same_bits(m2, m));  // neither read nor written
  if (no_clip) {
    CHECK(std::isnan(w_out[42]));
    CHECK(w_out[41] == w[41]);  // sqrt(inf) / c = inf: no step
  }
}

TEST_CASE("no initial weight is -0", "[kernels]") {
  // What lets Adam without momentum skip m (the test above): w - x is -0
  // only for w = -0, so no weight ever is -0 if none starts so.
  for (int level = 1; level <= 9; ++level) {
    INFO("preset " << level);
    const ModelConfig cfg = preset(level).model;
    const FlatLayout layout(cfg);
    std::vector<float> flat(static_cast<size_t>(layout.size()));
    layout.init(flat.data());
    int64_t negative_zeros = 0;
    for (const float x : flat) negative_zeros += x == 0.0f && std::signbit(x);
    CHECK(negative_zeros == 0);
  }
}

TEST_CASE("train::adam_range into other weights and in ranges gives the in-place adam_step's bits", "[kernels]") {
  // KernelPredictor writes the step beside the weights it read (lag 1) and
  // lets two threads take its elements in chunks: every element must come
  // out as the in-place step over all of them computes it.
  SimdScope restore;
  const bool simd = GENERATE(false, true);
  if (!select_kernels(simd)) return;
  INFO((simd ? "AVX2" : "plain C++"));
  const int64_t n = 3 * 1000 + 5;  // ranges below end off the eight lanes
  const float clip = GENERATE(0.01f, 1e6f);  // the clip bites, or not
  const train::AdamConfig cfg{1e-3, 0.5, 0.999, 1e-6, clip, true};
  const auto w = random_floats(n, 11, 0.1f), g = random_floats(n, 12, 0.5f);
  const auto m = random_floats(n, 13, 0.01f);
  std::vector<float> v = random_floats(n, 14, 0.01f);
  for (float& x : v) x = x * x;
  struct Step {
    std::vector<float> w, w_out, g, m, v;
  };
  const auto fresh = [&] { return Step{w, std::vector<float>(n, -1.0f), g, m, v}; };
  Step in_place = fresh();
  train::adam_step(cfg, 0.25, 0.998, n, in_place.w.data(), in_place.g.data(), in_place.m.data(),
                   in_place.v.data());
  Step beside = fresh();
  train::adam_range(train::adam_constants(cfg, 0.25, 0.998, n, beside.g.data()), 0, n, beside.w.data(),
                    beside.w_out.data(), beside.g.data(), beside.m.data(), beside.v.data());
  CHECK(same_bits(beside.w, w));  // read, not written
  CHECK(same_bits(beside.w_out, in_place.w));
  CHECK(same_bits(beside.g, in_place.g));  // the clipped gradient
  CHECK(same_bits(beside.m, in_place.m));
  CHECK(same_bits(beside.v, in_place.v));
  CHECK(!same_bits(in_place.w, w));
  // The constants from all of g, then ranges of odd sizes, last first.
  Step ranges = fresh();
  const train::AdamConstants k = train::adam_constants(cfg, 0.25, 0.998, n, ranges.g.data());
  const int64_t bounds[] = {0, 13, 21, 1000, 2999, n};
  for (int r = 4; r >= 0; --r) {
    train::adam_range(k, bounds[r], bounds[r + 1], ranges.w.data(), ranges.w_out.data(), ranges.g.data(),
                      ranges.m.data(), ranges.v.data());
  }
  CHECK(same_bits(ranges.w_out, in_place.w));
  CHECK(same_bits(ranges.g, in_place.g));
  CHECK(same_bits(ranges.m, in_place.m));
  CHECK(same_bits(ranges.v, in_place.v));
}

TEST_CASE("a training job shares its chunks with the thread that waits for it", "[kernels]") {
  // TrainWorker::share: every chunk runs once, on the job's thread or on the
  // one blocked in wait(); twice in one job (the counters reused), and in
  // order where the worker runs its jobs inline.
  const int64_t chunks = 64;
  const auto main_id = std::this_thread::get_id();
  std::vector<std::atomic<int>> runs(2 * chunks);
  std::atomic<int> by_main{0}, by_worker{0};
  // The chunks wait until both threads have taken one (or until a deadline),
  // so that both surely do.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const auto body = [&](int64_t first) {
    return [&, first](int64_t c) {
      runs[static_cast<size_t>(first + c)].fetch_add(1);
      (std::this_thread::get_id() == main_id ? by_main : by_worker).fetch_add(1);
      while ((by_main.load() == 0 || by_worker.load() == 0) && std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();
      }
    };
  };
  const TrainWorker::Chunk first_half = body(0), second_half = body(chunks);
  {
    TrainWorker worker(true, [] {});
    worker.submit([&] {
      worker.share(chunks, first_half);
      worker.share(chunks, second_half);
    });
    worker.wait();
  }
  for (int64_t c = 0; c < 2 * chunks; ++c) {
    INFO("chunk " << c);
    CHECK(runs[static_cast<size_t>(c)].load() == 1);
  }
  CHECK(by_main.load() > 0);
  CHECK(by_worker.load() > 0);
  CHECK(by_main.load() + by_worker.load() == 2 * chunks);
  TrainWorker inline_worker(false, [] {});
  std::vector<int64_t> order;
  inline_worker.submit([&] { inline_worker.share(5, [&](int64_t c) { order.push_back(c); }); });
  inline_worker.wait();
  CHECK(order == std::vector<int64_t>{0, 1, 2, 3, 4});
}

TEST_CASE("the vectorised LSTM pointwise pass equals the scalar formulas bit for bit", "[kernels]") {
  // The archive depends on every bit of the cell's output: the AVX2 lanes
  // must compute exactly what det_expf-based scalar code computes, for any
  // input (d = 14 also runs the scalar tail).
  SimdScope keep;
  const bool simd = GENERATE(false, true);
  if (!select_kernels(simd)) return;
  INFO("simd " << simd);
  const int64_t batch = 3, d = 14;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  const float specials[] = {0.0f, -0.0f, 87.9f, 88.0f, 88.5f, -85.9f, -86.0f, -90.0f, 1000.0f, -1000.0f,
                            1e-40f, -1e-40f, 1e-3f, std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  std::vector<float> gates(batch * 4 * d), c_prev(batch * d);
  size_t n_special = 0;
  for (float& g : gates) g = rng() % 4 == 0 ? specials[n_special++ % std::size(specials)] : normal(rng);
  for (float& c : c_prev) c = normal(rng);
  std::vector<float> c(batch * d), h(batch * d), acts(batch * 4 * d), tcs(batch * d);
  step::lstm_pointwise(gates.data(), c_prev.data(), c.data(), h.data(), acts.data(), tcs.data(), batch, d);
  std::vector<float> c2(batch * d), h2(batch * d);
  step::lstm_pointwise(gates.data(), c_prev.data(), c2.data(), h2.data(), nullptr, nullptr, batch, d);
  std::vector<float> c3 = c_prev, h3(batch * d);  // in place, as the step path runs it
  step::lstm_pointwise(gates.data(), c3.data(), c3.data(), h3.data(), nullptr, nullptr, batch, d);
  CHECK(same_bits(c3, c2));
  CHECK(same_bits(h3, h2));

  auto sigmoid = [&](float x) { return 1.0f / (1.0f + det_expf(-x)); };
  auto tanh_ = [&](float x) { return 2.0f / (1.0f + det_expf(-2.0f * x)) - 1.0f; };
  auto same = [](float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; };
  size_t differ = 0;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = 0; j < d; ++j) {
      const float* g = &gates[b * 4 * d];
      const float ig = sigmoid(g[j]), fg = sigmoid(g[d + j]), gg = tanh_(g[2 * d + j]), og = sigmoid(g[3 * d + j]);
      const float cn = fg * c_prev[b * d + j] + ig * gg;
      const float tc = tanh_(cn);
      const int64_t k = b * d + j;
      const float* a = &acts[b * 4 * d];
      differ += !same(c[k], cn) + !same(h[k], og * tc) + !same(tcs[k], tc) + !same(c2[k], cn) + !same(h2[k], og * tc);
      differ += !same(a[j], ig) + !same(a[d + j], fg) + !same(a[2 * d + j], gg) + !same(a[3 * d + j], og);
    }
  }
  CHECK(n_special > 20);
  CHECK(differ == 0);
}

namespace {

// KernelPredictor over `text` cut into `streams` streams, as the driver codes
// it: every position's tables, and the code length in bits of the text
// under them, segment by segment.
struct Run {
  std::vector<uint32_t> tables;
  std::vector<double> segment_bits;
  int64_t steps = 0;
};
Run run_kernel_predictor(const ModelConfig& c, bool async_train, const std::string& text, int streams,
                         bool tell_length = false) {
  const size_t len = text.size() / streams;
  KernelPredictor p(c, streams, async_train);
  if (tell_length) p.expect_positions(static_cast<int64_t>(len));
  std::vector<uint32_t> cdfs(streams * shazip::coder::kCdfSize);
  std::vector<uint8_t> bytes(streams);
  Run r;
  for (size_t i = 0; i < len; ++i) {
    p.predict(cdfs.data());
    r.tables.insert(r.tables.end(), cdfs.begin(), cdfs.end());
    if (i % c.seg_len == 0) r.segment_bits.push_back(0);
    for (int b = 0; b < streams; ++b) {
      bytes[b] = static_cast<uint8_t>(text[b * len + i]);
      const uint32_t* t = cdfs.data() + b * shazip::coder::kCdfSize;
      r.segment_bits.back() += std::log2(double(t[256]) / double(t[bytes[b] + 1] - t[bytes[b]]));
    }
    p.observe(bytes.data());
  }
  r.steps = p.train_steps();
  return r;
}

}  // namespace

TEST_CASE("the kernel predictor learns, repeats itself and trains alike on its own thread", "[kernels][model]") {
  // The whole CPU model path torch-free, so that the sanitizer build runs it
  // too (tests/test_model.cpp checks its bits against the LibTorch-held model).
  ModelConfig c;
  c.dim = 16;
  c.layers = 2;
  c.attn_layer = GENERATE(-1, 1);
  c.mem_len = c.attn_layer < 0 ? 0 : 24;
  c.seg_len = 8;
  c.train_lag = GENERATE(0, 1);
  c.train_groups = 2;
  c.lr = 1e-2f;
  INFO("attn_layer " << c.attn_layer << ", train_lag " << c.train_lag);
  REQUIRE(c.validate().empty());
  REQUIRE(KernelPredictor::handles(c, true));
  CHECK(!KernelPredictor::handles(c, false));
  std::string text;
  const char* phrases[] = {"abc abd ", "the cat ", "on a mat. "};
  for (uint32_t i = 0; text.size() < 3 * 1600; i = i * 7 + 3) text += phrases[i % 3];
  text.resize(3 * 1600);
  const Run threaded = run_kernel_predictor(c, true, text, 3);
  // 200 segments of 8: 200 training steps, and the last 20 segments (480
  // bytes) code the phrases in a quarter of the bits of the first 20, which
  // take over 2 bits a byte (about 3.6 here; 0.2 at the end).
  CHECK(threaded.steps == 200);
  double first = 0, last = 0;
  for (size_t s = 0; s < 20; ++s) {
    first += threaded.segment_bits[s];
    last += threaded.segment_bits[threaded.segment_bits.size() - 1 - s];
  }
  INFO("first 20 segments " << first << " bits, last 20 " << last);
  CHECK(first > 480 * 2.0);
  CHECK(last < first / 4);
  // The same tables again, inline, and with the length known (which skips
  // only the steps no later position uses).
  CHECK(run_kernel_predictor(c, true, text, 3).tables == threaded.tables);
  CHECK(run_kernel_predictor(c, false, text, 3).tables == threaded.tables);
  const Run told = run_kernel_predictor(c, true, text, 3, /*tell_length=*/true);
  CHECK(told.tables == threaded.tables);
  CHECK(told.steps == 199 - c.train_lag);
}
