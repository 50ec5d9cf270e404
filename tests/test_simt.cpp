// The CUDA kernels of model/cuda/, run on the CPU by the host emulation of
// model/cuda/simt.h: the step kernels against the CPU's step path, the
// training kernels and the Adam step against the CPU's training kernels, the
// gates against train::attention_gates, the deterministic softmax and the
// quantizer against the CPU's, all bit for bit. What a GPU adds to these
// ([gpu] tests in test_model and test_gpu) is nvcc's compilation and real
// concurrency; the order of every operation is checked here, without one.
//
// LibTorch first: it drags in glog, whose CHECK macro Catch's must override.
#include <torch/torch.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <array>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "coder/quantize.h"
#include "coder/range_coder.h"
#include "model/sha_rnn.h"
#include "model/step_kernels.h"
#include "model/train_kernels.h"

// The kernels themselves, compiled for the host into namespace cuda_simt.
#define SHAZIP_SIMT_EMULATE
#define SHAZIP_CUDA_NS cuda_simt
#include "model/cuda/cdf_kernel.cu"
#include "model/cuda/step_kernels.cu"
#include "model/cuda/train_kernels.cu"

using namespace shazip;
using namespace shazip::model;

namespace {

ModelConfig step_config(int attn) {
  ModelConfig c;
  c.dim = 32;
  c.layers = 2;
  c.attn_layer = attn;
  c.mem_len = 12;  // the ring wraps within the test
  c.boom_factor = 3;
  return c;
}

// The model with every parameter moved off its initial value (the gates'
// zeros, the LayerNorms' ones), so that each one's arithmetic shows.
ShaRnn perturbed(const ModelConfig& c, uint64_t seed) {
  torch::NoGradGuard no_grad;
  ShaRnn net(c);
  torch::manual_seed(seed);
  for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * 0.3);
  net->refresh_gates();
  return net;
}

// Runs a test with the tiled or the plain product kernels (both must
// compute the CPU's bits), the tiled ones again afterwards.
struct ProductKernels {
  explicit ProductKernels(bool tiled) { cuda_simt::set_tiled_products(tiled); }
  ~ProductKernels() { cuda_simt::set_tiled_products(true); }
};

}  // namespace

TEST_CASE("emulated CUDA attention gates compute train::attention_gates' bits", "[simt]") {
  const ModelConfig c = step_config(0);
  const ShaRnn net = perturbed(c, 3);
  const train::Weights w = net->weights();
  const int64_t d = c.dim;
  std::vector<float> q_cpu(d), v_cpu(d), q_emu(d), v_emu(d), scratch(d);
  train::attention_gates(w.attn, d, q_cpu.data(), v_cpu.data());
  REQUIRE(cuda_simt::attention_gates_device(w.attn, d, scratch.data(), q_emu.data(), v_emu.data(), nullptr) ==
          cudaSuccess);
  CHECK(std::memcmp(q_cpu.data(), q_emu.data(), d * sizeof(float)) == 0);
  CHECK(std::memcmp(v_cpu.data(), v_emu.data(), d * sizeof(float)) == 0);
}

TEST_CASE("emulated tiled product computes step::linear's bits in every layout", "[simt]") {
  // Three row tiles and three column tiles, all partial, and four rounds of
  // the summed index, the last a short one; operands of magnitudes spread
  // over six orders, so that any other order of the sums shows. Each layout
  // against the CPU's product on the matrices the CPU would build.
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0, 1);
  std::uniform_real_distribution<float> exponent(-3, 3);
  auto matrix = [&](int64_t rows, int64_t cols) {
    std::vector<float> m(rows * cols);
    for (float& v : m) v = normal(rng) * std::pow(10.0f, exponent(rng));
    return m;
  };
  auto transpose = [](const std::vector<float>& m, int64_t rows, int64_t cols, int64_t rows_pad) {
    std::vector<float> t(cols * rows_pad, 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) t[c * rows_pad + r] = m[r * cols + c];
    }
    return t;
  };
  auto bits_equal = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t rows = 70, k = 104, n = 136;

  SECTION("linear: x W^T + bias") {
    const std::vector<float> x = matrix(rows, k), w = matrix(n, k), bias = matrix(1, n);
    std::vector<float> expected(rows * n), got(rows * n, nan);
    step::linear(x.data(), rows, k, w.data(), n, bias.data(), expected.data());
    cuda_simt::tiled_product(cuda_simt::linear_product(x.data(), rows, k, w.data(), n, bias.data(), got.data()),
                             nullptr);
    CHECK(bits_equal(expected, got));
  }
  SECTION("the LSTM's gates: [x, h] [W_ih, W_hh]^T + (b_ih + b_hh)") {
    const std::vector<float> x = matrix(rows, k), h = matrix(rows, k), wx = matrix(n, k), wh = matrix(n, k);
    const std::vector<float> b1 = matrix(1, n), b2 = matrix(1, n);
    std::vector<float> bias(n), expected(rows * n), got(rows * n, nan);
    for (int64_t j = 0; j < n; ++j) bias[j] = b1[j] + b2[j];
    step::linear2(x.data(), h.data(), rows, k, wx.data(), wh.data(), n, bias.data(), expected.data());
    cuda_simt::TiledProduct p;
    p.a = {x.data(), k, true, h.data(), k, k};
    p.b = {wx.data(), k, true, wh.data(), k, k};
    p.m = rows;
    p.n = n;
    p.k = p.valid = 2 * k;
    p.bias = b1.data();
    p.bias2 = b2.data();
    p.c = got.data();
    p.ldc = n;
    cuda_simt::tiled_product(p, nullptr);
    CHECK(bits_equal(expected, got));
  }
  SECTION("the LSTM cell as the product's last step") {
    // 40 elements: the third tile of columns holds 8 of its 16.
    const int64_t d = 40;
    const std::vector<float> x = matrix(rows, d), h = matrix(rows, d), wx = matrix(4 * d, d), wh = matrix(4 * d, d);
    const std::vector<float> b1 = matrix(1, 4 * d), b2 = matrix(1, 4 * d), c_prev = matrix(rows, d);
    std::vector<float> bias(4 * d), pre(rows * 4 * d);
    for (int64_t j = 0; j < 4 * d; ++j) bias[j] = b1[j] + b2[j];
    step::linear2(x.data(), h.data(), rows, d, wx.data(), wh.data(), 4 * d, bias.data(), pre.data());
    std::vector<float> c(rows * d), hn(rows * d), acts(rows * 4 * d), tanh_c(rows * d);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < d; ++j) {
        const float* g = &pre[r * 4 * d + j];
        const LstmCell cell = lstm_cell(g[0], g[d], g[2 * d], g[3 * d], c_prev[r * d + j]);
        c[r * d + j] = cell.c;
        hn[r * d + j] = cell.h;
        tanh_c[r * d + j] = cell.tanh_c;
        const float gates[4] = {cell.i, cell.f, cell.g, cell.o};
        for (int q = 0; q < 4; ++q) acts[r * 4 * d + q * d + j] = gates[q];
      }
    }
    std::vector<float> c_got(rows * d, nan), h_got(rows * d, nan), acts_got(rows * 4 * d, nan);
    std::vector<float> tanh_got(rows * d, nan);
    cuda_simt::TiledProduct p;
    p.a = {x.data(), d, true, h.data(), d, d};
    p.b = {wx.data(), d, true, wh.data(), d, d, d};
    p.m = rows;
    p.n = 4 * d;
    p.k = p.valid = 2 * d;
    p.bias = b1.data();
    p.bias2 = b2.data();
    p.lstm = {c_prev.data(), c_got.data(), h_got.data(), acts_got.data(), tanh_got.data(), d};
    cuda_simt::tiled_product(p, nullptr);
    CHECK(bits_equal(c, c_got));
    CHECK(bits_equal(hn, h_got));
    CHECK(bits_equal(acts, acts_got));
    CHECK(bits_equal(tanh_c, tanh_got));
  }
  SECTION("input gradient: dy W + add") {
    const std::vector<float> dy = matrix(rows, n), w = matrix(n, k), add = matrix(rows, k);
    std::vector<float> expected(rows * k), got(rows * k, nan);
    step::linear(dy.data(), rows, n, transpose(w, n, k, n).data(), k, nullptr, expected.data());
    for (size_t i = 0; i < expected.size(); ++i) expected[i] = expected[i] + add[i];
    cuda_simt::tiled_product(
        cuda_simt::input_grad_product(dy.data(), rows, n, w.data(), k, add.data(), got.data()), nullptr);
    CHECK(bits_equal(expected, got));
  }
  SECTION("weight gradient: dy^T x over zero-padded rows") {
    const int64_t rows_pad = 72;
    const std::vector<float> dy = matrix(rows, n), x = matrix(rows, k);
    std::vector<float> expected(n * k), got(n * k, nan);
    step::linear(transpose(dy, rows, n, rows_pad).data(), n, rows_pad, transpose(x, rows, k, rows_pad).data(), k,
                 nullptr, expected.data());
    cuda_simt::tiled_product(
        cuda_simt::weight_grad_product(dy.data(), n, x.data(), k, rows, rows_pad, got.data()), nullptr);
    CHECK(bits_equal(expected, got));
  }
}

TEST_CASE("emulated tiled attention products compute the CPU's dot8s and chains per stream", "[simt]") {
  // The training step's attention, one product per stream: the scores (each
  // row's dot8 with the keys it sees, zero past them) and the weighted sums
  // of the keys (each row's chain over the keys it sees). 40 positions (two
  // row tiles) over 37 keys of memory, 264 elements (two column tiles of the
  // chain, nine rounds of the dot8s); the weights past a row's keys are not
  // zero here, so a chain that ran past its end would show.
  std::mt19937 rng(13);
  std::normal_distribution<float> normal(0, 1);
  const int64_t streams = 3, seg = 40, past = 37, keys = past + seg, d = 264;
  auto matrix = [&](int64_t n) {
    std::vector<float> m(n);
    for (float& v : m) v = normal(rng);
    return m;
  };
  const std::vector<float> k = matrix(streams * keys * d), q = matrix(streams * seg * d);
  const std::vector<float> w = matrix(streams * seg * keys), gate = matrix(d), add = matrix(streams * seg * d);
  const float nan = std::numeric_limits<float>::quiet_NaN();

  std::vector<float> dots(streams * seg * keys), dots_got(dots.size(), nan);
  std::vector<float> mix(streams * seg * d), out(mix.size()), mix_got(mix.size(), nan), out_got(mix.size(), nan);
  for (int64_t b = 0; b < streams; ++b) {
    for (int64_t t = 0; t < seg; ++t) {
      const int64_t r = b * seg + t, count = past + t + 1;
      for (int64_t s = 0; s < keys; ++s) {
        dots[r * keys + s] = s < count ? step::dot8(&k[(b * keys + s) * d], &q[r * d], d) : 0.0f;
      }
      step::weighted_sum(&w[r * keys], count, &k[b * keys * d], d, &mix[r * d]);
      for (int64_t j = 0; j < d; ++j) out[r * d + j] = mix[r * d + j] * gate[j] + add[r * d + j];
    }
  }
  cuda_simt::TiledProduct p = cuda_simt::linear_product(q.data(), seg, d, k.data(), keys, nullptr, dots_got.data());
  p.batch = streams;
  p.batch_a = seg * d;
  p.batch_b = keys * d;
  p.batch_c = seg * keys;
  p.mask_past = past;
  cuda_simt::tiled_product(p, nullptr);
  CHECK(std::memcmp(dots.data(), dots_got.data(), dots.size() * sizeof(float)) == 0);

  cuda_simt::ChainProduct c;
  c.w = w.data();
  c.v = k.data();
  c.m = seg;
  c.n = d;
  c.keys = keys;
  c.past = past;
  c.c = mix_got.data();
  c.gate = gate.data();
  c.add = add.data();
  c.out2 = out_got.data();
  c.batch = streams;
  cuda_simt::chain_product(c, nullptr);
  CHECK(std::memcmp(mix.data(), mix_got.data(), mix.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(out.data(), out_got.data(), out.size() * sizeof(float)) == 0);
}

TEST_CASE("emulated CUDA step kernels compute the CPU step kernels' bits", "[simt]") {
  // As ShaRnnImpl::step_cuda drives them: the same weights, state and bytes
  // give step_own's logits, states and memory, with the attention in the
  // first block, the second and none, across the ring's wrap and a change of
  // weights; five streams, a remainder of the kernels' four-stream groups.
  // Last, one block with a memory longer than a block of threads (the
  // scores' grid and the softmax's strided loops). With the tiled products
  // and the plain ones.
  const bool tiled = GENERATE(true, false);
  INFO((tiled ? "tiled" : "plain") << " products");
  const ProductKernels products(tiled);
  torch::NoGradGuard no_grad;
  struct Case {
    int attn, layers, mem_len, streams, steps;
  };
  for (const Case& k : {Case{0, 2, 12, 5, 40}, Case{1, 2, 12, 5, 40}, Case{-1, 2, 12, 5, 40},
                        Case{0, 1, 300, 2, 310}}) {
    const int attn = k.attn;
    INFO("attention layer " << attn << ", memory " << k.mem_len);
    ModelConfig c = step_config(attn);
    c.layers = k.layers;
    c.mem_len = k.mem_len;
    ShaRnn net = perturbed(c, 6);
    const int64_t batch = k.streams, d = c.dim;
    ShaRnnState cpu = net->initial_state(batch, torch::kCPU), emu = net->initial_state(batch, torch::kCPU);
    const cuda_simt::StepShape shape = net->step_shape(emu);
    std::vector<float> scratch(cuda_simt::step_scratch_floats(shape)), logits(batch * 256);
    std::vector<float> qgate(d), vgate(d), gate_scratch(d);
    const train::Weights w = net->weights();
    auto gates = [&] {
      if (attn < 0) return;
      REQUIRE(cuda_simt::attention_gates_device(w.attn, d, gate_scratch.data(), qgate.data(), vgate.data(),
                                                nullptr) == cudaSuccess);
    };
    gates();
    const cuda_simt::StepState st = net->step_state(emu);
    const at::Tensor bytes = torch::randint(0, 256, {batch, k.steps}, torch::kInt64);
    int unequal = 0;
    for (int64_t t = 0; t < bytes.size(1); ++t) {
      if (t == k.steps / 2) {  // new weights half way: the kernels and the gates read them
        for (auto& p : net->parameters()) p.mul_(0.9);
        net->refresh_gates();
        gates();
      }
      const at::Tensor x = bytes.select(1, t).contiguous();
      const at::Tensor expected = net->step(x, cpu).contiguous();
      const int64_t keys = attn >= 0 ? std::min(emu.mem_fill + 1, shape.slots) : 0;
      REQUIRE(cuda_simt::step_device(shape, w, qgate.data(), vgate.data(), st, emu.mem_pos, keys,
                                     x.data_ptr<int64_t>(), scratch.data(), logits.data(), nullptr) == cudaSuccess);
      if (attn >= 0) {
        emu.mem_pos = (emu.mem_pos + 1) % shape.slots;
        emu.mem_fill = keys;
      }
      unequal += std::memcmp(expected.data_ptr<float>(), logits.data(), logits.size() * sizeof(float)) != 0;
    }
    CHECK(unequal == 0);
    for (int l = 0; l < c.layers; ++l) {
      CHECK(torch::equal(cpu.h[l], emu.h[l]));
      CHECK(torch::equal(cpu.c[l], emu.c[l]));
    }
    if (attn >= 0) {
      CHECK(cpu.mem_pos == emu.mem_pos);
      CHECK(cpu.mem_fill == emu.mem_fill);
      CHECK(torch::equal(cpu.mem, emu.mem));
    }
  }
}

TEST_CASE("emulated CUDA softmax and quantizer compute the CPU step path's tables", "[simt]") {
  // det_softmax_quantize_device against step::softmax and quantize_probs, and
  // quantize_probs_device against quantize_probs on the rows that exercise
  // the quantizer's branches (one-hot, all zero, ties, garbage).
  std::mt19937 rng(4);
  const int rows = 24;
  std::vector<float> logits(rows * 256);
  for (int r = 0; r < rows; ++r) {
    std::normal_distribution<float> n(0, r % 4 == 3 ? 60.0f : static_cast<float>(1 + r % 8));
    for (int i = 0; i < 256; ++i) logits[r * 256 + i] = n(rng);
    if (r % 5 == 0) logits[r * 256 + 17] = logits[r * 256 + 200] = 50.0f;  // two maxima
  }
  std::vector<float> probs(rows * 256);
  std::vector<uint32_t> cdf(rows * coder::kCdfSize);
  REQUIRE(cuda_simt::det_softmax_quantize_device(logits.data(), probs.data(), cdf.data(), rows, nullptr) ==
          cudaSuccess);
  std::vector<float> expected = logits;
  std::array<uint32_t, coder::kCdfSize> table;
  int float_mismatches = 0, table_mismatches = 0;
  for (int r = 0; r < rows; ++r) {
    step::softmax(&expected[r * 256], 256);
    coder::quantize_probs(&expected[r * 256], table.data());
    float_mismatches += std::memcmp(&expected[r * 256], &probs[r * 256], 256 * sizeof(float)) != 0;
    table_mismatches += !std::equal(table.begin(), table.end(), cdf.begin() + r * coder::kCdfSize);
  }
  CHECK(float_mismatches == 0);
  CHECK(table_mismatches == 0);

  std::vector<float> odd(4 * 256, 0.0f);
  odd[0 * 256 + 99] = 1.0f;                                          // one-hot
  for (int i = 0; i < 256; ++i) odd[2 * 256 + i] = i % 64 == 5 ? 0.25f : 0.0f;  // ties (row 1: all zero)
  for (int i = 0; i < 256; ++i) odd[3 * 256 + i] = static_cast<float>(i % 7) / 10.0f - 0.2f;
  odd[3 * 256 + 7] = std::numeric_limits<float>::quiet_NaN();
  odd[3 * 256 + 9] = 3.0f;
  std::vector<uint32_t> odd_cdf(4 * coder::kCdfSize);
  REQUIRE(cuda_simt::quantize_probs_device(odd.data(), odd_cdf.data(), 4, nullptr) == cudaSuccess);
  for (int r = 0; r < 4; ++r) {
    INFO("row " << r);
    coder::quantize_probs(&odd[r * 256], table.data());
    CHECK(std::equal(table.begin(), table.end(), odd_cdf.begin() + r * coder::kCdfSize));
  }
}

namespace {

// Every gradient set to NaN, so that a kernel that leaves one unwritten shows.
void poison_gradients(ShaRnn& net) {
  for (auto& p : net->parameters()) p.mutable_grad() = torch::full_like(p, std::numeric_limits<float>::quiet_NaN());
}

}  // namespace

TEST_CASE("emulated CUDA training kernels compute the CPU training kernels' bits", "[simt]") {
  // cuda::TrainPass against ShaRnn::train_segment (train::SegmentPass) from
  // the same weights, start state and bytes: every gradient and the loss,
  // with the attention in the first block, the second and none, with an
  // empty, a partly filled and a wrapped memory. Three streams of five
  // positions: 15 rows, neither a multiple of the kernels' four-row groups
  // nor of the dot8's eight lanes (the CPU's zero padding). Last, one wider
  // than a block of threads, with more keys than one (the strided loops).
  // With the tiled products and the plain ones.
  const bool tiled = GENERATE(true, false);
  INFO((tiled ? "tiled" : "plain") << " products");
  const ProductKernels products(tiled);
  torch::NoGradGuard no_grad;
  struct Case {
    int attn, layers, past, dim, mem_len, streams, seg;
  };
  for (const Case& k : {Case{0, 2, 0, 32, 12, 3, 5}, Case{0, 2, 7, 32, 12, 3, 5}, Case{1, 2, 13, 32, 12, 3, 5},
                        Case{-1, 2, 0, 32, 12, 3, 5}, Case{0, 1, 13, 32, 12, 3, 5}, Case{0, 1, 300, 264, 299, 2, 3}}) {
    INFO("attention layer " << k.attn << ", layers " << k.layers << ", memory keys " << k.past << ", d " << k.dim);
    ModelConfig c = step_config(k.attn);
    c.layers = k.layers;
    c.dim = k.dim;
    c.mem_len = k.mem_len;
    c.seg_len = k.seg;
    const int64_t batch = k.streams;
    ShaRnn cpu = perturbed(c, 8), emu = perturbed(c, 8);
    torch::manual_seed(9);
    ShaRnnState start = cpu->initial_state(batch, torch::kCPU);
    for (int l = 0; l < c.layers; ++l) {
      start.h[l].copy_(torch::randn_like(start.h[l]) * 0.5);
      start.c[l].copy_(torch::randn_like(start.c[l]));
    }
    if (k.attn >= 0) {
      start.mem.copy_(torch::randn_like(start.mem));
      start.mem_fill = k.past;  // 13 = all of the 12 + 1 slots (300: of 299 + 1)
    }
    const at::Tensor bytes = torch::randint(0, 256, {batch, c.seg_len + 1}, torch::kInt64);
    poison_gradients(cpu);
    poison_gradients(emu);
    const double loss = cpu->train_segment(bytes, start);

    const train::Shape shape = emu->train_shape(batch);
    const train::Start st = emu->train_start(start);
    cuda_simt::TrainPass pass;
    // Twice: the second run reuses the first one's scratch.
    for (int run = 0; run < 2; ++run) {
      REQUIRE(pass.run(shape, emu->weights(), st, bytes.data_ptr<int64_t>(), emu->gradients(), nullptr) ==
              cudaSuccess);
    }
    CHECK(pass.loss(nullptr) == loss);
    const auto a = cpu->parameters(), b = emu->parameters();
    int unequal = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const at::Tensor& ga = a[i].grad();
      const at::Tensor& gb = b[i].grad();
      const bool same = std::memcmp(ga.data_ptr<float>(), gb.data_ptr<float>(), ga.numel() * sizeof(float)) == 0;
      if (!same) UNSCOPED_INFO("gradient of parameter " << i << " (" << ga.sizes() << ") differs");
      unequal += !same;
    }
    CHECK(unequal == 0);
  }
}

TEST_CASE("emulated CUDA Adam step computes train::adam_step's bits with the block norm", "[simt]") {
  // Three whole norm blocks and a short one; the clip active (a norm far
  // above it) and not; with momentum and without (the presets'); three steps
  // each, the moments carried.
  const int64_t n = 3 * train::kNormBlock + 40;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0, 1);
  const std::pair<double, double> runs[] = {{0.5, 0.5}, {0.5, 0.0}, {1e6, 0.5}, {1e6, 0.0}};  // clip, beta1
  for (const auto& [clip, beta1] : runs) {
    INFO("clip " << clip << ", beta1 " << beta1);
    std::vector<float> w(n), m(n, 0.0f), v(n, 0.0f);
    for (float& x : w) x = normal(rng);
    std::vector<float> w2 = w, m2 = m, v2 = v, scratch(cuda_simt::adam_scratch_floats(n));
    const train::AdamConfig cfg{1e-3, beta1, 0.999, 1e-6, clip, true};
    double b1 = 1, b2 = 1;
    for (int step = 0; step < 3; ++step) {
      std::vector<float> g(n);
      for (float& x : g) x = normal(rng) * 0.1f;
      std::vector<float> g2 = g;
      b1 *= cfg.beta1;
      b2 *= cfg.beta2;
      train::adam_step(cfg, b1, b2, n, w.data(), g.data(), m.data(), v.data());
      REQUIRE(cuda_simt::adam_step_device(cfg, b1, b2, n, w2.data(), g2.data(), m2.data(), v2.data(), scratch.data(),
                                          nullptr) == cudaSuccess);
      CHECK(g == g2);  // the clipped gradient
      CHECK(m == m2);
      CHECK(v == v2);
      CHECK(w == w2);
    }
  }
  // The formats-7-9 norm has no device version.
  std::vector<float> x(16, 1.0f), scratch(cuda_simt::adam_scratch_floats(16));
  const train::AdamConfig old{1e-3, 0, 0.999, 1e-6, 5, false};
  CHECK(cuda_simt::adam_step_device(old, 0, 0.999, 16, x.data(), x.data(), x.data(), x.data(), scratch.data(),
                                    nullptr) == cudaErrorInvalidValue);
}
