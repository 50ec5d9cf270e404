// SHA-RNN and online predictor tests: shapes, parameter count, agreement of
// the step path with the teacher-forced path, determinism, learning, and
// save/load.
// LibTorch first: it drags in glog, whose CHECK macro Catch's must override.
#include <torch/torch.h>

#include <catch2/catch.hpp>

#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "coder/range_coder.h"
#include "model/kernel_math.h"
#include "model/kernel_predictor.h"
#include "model/lstm.h"
#include "model/params.h"
#include "model/predictor.h"
#include "model/sha_rnn.h"
#include "model/step_kernels.h"

using namespace shazip::model;
using shazip::coder::kCdfSize;

namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.dim = 32;
  c.layers = 2;
  c.attn_layer = 0;
  c.mem_len = 64;
  c.seg_len = 16;
  return c;
}

// Text with a lot of structure: a few phrases recombined, so a model that
// learns compresses it far below 2 bits per byte.
std::string repetitive_text(size_t n, uint64_t seed) {
  const char* words[] = {"the quick brown fox ", "jumps over ", "the lazy dog. ",
                         "Pack my box ", "with five dozen ", "liquor jugs.\n"};
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < n) s += words[rng() % 6];
  s.resize(n);
  return s;
}

// Runs a Predictor over `text` cut into `streams` equal streams, as the
// driver does, and returns every position's tables one after another. With
// `tell_length` the predictor is told the length up front, as the driver does.
std::vector<uint32_t> all_tables(const ModelConfig& c, const RuntimeOptions& rt, const std::string& text,
                                 int streams, bool tell_length = false) {
  const size_t len = text.size() / streams;
  Predictor p(c, streams, rt);
  if (tell_length) p.expect_positions(static_cast<int64_t>(len));
  std::vector<uint32_t> cdfs(streams * kCdfSize), all;
  std::vector<uint8_t> bytes(streams);
  for (size_t i = 0; i < len; ++i) {
    p.predict(cdfs.data());
    all.insert(all.end(), cdfs.begin(), cdfs.end());
    for (int b = 0; b < streams; ++b) bytes[b] = static_cast<uint8_t>(text[b * len + i]);
    p.observe(bytes.data());
  }
  if (tell_length) {
    // Only the steps that a later position uses: those that end a segment
    // before the last position at lag 0, and more than a segment before it at
    // lag 1.
    const int64_t used_before = static_cast<int64_t>(len) - c.train_lag * c.seg_len;
    CHECK(p.train_steps() == std::max<int64_t>(0, (used_before - 1) / c.seg_len));
  } else {
    CHECK(p.train_steps() == static_cast<int64_t>(len / c.seg_len));
  }
  return all;
}

// For comparing two ways of training over their first 16 steps: short
// segments, a clip norm small enough that every step clips, and beta1 > 0
// for Adam's first moment.
ModelConfig clipping_config() {
  ModelConfig c = small_config();
  c.seg_len = 4;
  c.clip = 0.05f;
  c.beta1 = 0.5f;
  return c;
}

// Runs `reference` and `others` side by side over `text` cut into `streams`
// equal streams. Returns, for each of `others`, the largest difference of any
// probability from the reference's at the same position; `learned` (if not
// null) gets the most that any of the reference's probabilities moved from
// its first prediction.
std::vector<double> largest_gaps(Predictor& reference, const std::vector<Predictor*>& others,
                                 const std::string& text, int streams, double* learned = nullptr) {
  const size_t len = text.size() / streams;
  std::vector<uint32_t> cdfs(streams * kCdfSize);
  std::vector<uint8_t> bytes(streams);
  std::vector<double> gaps(others.size(), 0.0);
  std::vector<float> first;
  double moved = 0;
  for (size_t i = 0; i < len; ++i) {
    reference.predict(cdfs.data());
    for (Predictor* p : others) p->predict(cdfs.data());
    const float* ref = reference.probs();
    if (i == 0) first.assign(ref, ref + streams * 256);
    for (int k = 0; k < streams * 256; ++k) {
      for (size_t o = 0; o < others.size(); ++o) {
        gaps[o] = std::max(gaps[o], static_cast<double>(std::abs(others[o]->probs()[k] - ref[k])));
      }
      moved = std::max(moved, static_cast<double>(std::abs(ref[k] - first[k])));
    }
    for (int s = 0; s < streams; ++s) bytes[s] = static_cast<uint8_t>(text[s * len + i]);
    reference.observe(bytes.data());
    for (Predictor* p : others) p->observe(bytes.data());
  }
  if (learned) *learned = moved;
  return gaps;
}

// Runs `c` on the training kernels and on LibTorch's autograd (train_kernels
// 0) side by side over `text` cut into `streams`: the largest gap between
// their probabilities, how far the autograd model's moved from its first
// prediction, and the training steps the kernels' model took.
struct Agreement {
  double gap = 0, moved = 0;
  int64_t steps = 0;
};
Agreement kernels_against_autograd(const ModelConfig& c, int streams, const std::string& text) {
  ModelConfig aten = c;
  aten.train_kernels = 0;
  Predictor kernels(c, streams, RuntimeOptions{}), autograd(aten, streams, RuntimeOptions{});
  Agreement r;
  r.gap = largest_gaps(autograd, {&kernels}, text, streams, &r.moved)[0];
  r.steps = kernels.train_steps();
  return r;
}

}  // namespace

TEST_CASE("parameter count matches the closed form", "[model]") {
  for (int attn : {-1, 0, 1}) {
    ModelConfig c = small_config();
    c.attn_layer = attn;
    c.boom_factor = attn == 1 ? 2 : 4;
    ShaRnn net(c);
    int64_t n = 0;
    for (const auto& p : net->parameters()) n += p.numel();
    CHECK(n == c.param_count());
  }
  for (int level = kMinPreset; level <= kMaxPreset; ++level) {
    CHECK(preset(level).model.validate().empty());
    CHECK(preset(level).model.param_count() > 0);
  }
}

TEST_CASE("shapes of both forward paths", "[model]") {
  torch::NoGradGuard no_grad;
  const ModelConfig c = small_config();
  ShaRnn net(c);
  ShaRnnState s = net->initial_state(3, torch::kCPU);
  const at::Tensor x = torch::tensor({1, 2, 3}, torch::kInt64);
  CHECK(net->step(x, s).sizes() == at::IntArrayRef({3, 256}));
  CHECK(s.mem_fill == 1);
  const at::Tensor seq = torch::randint(0, 256, {3, 5}, torch::kInt64);
  CHECK(net->forward_segment(seq, s).sizes() == at::IntArrayRef({3, 5, 256}));
}

TEST_CASE("step path agrees with the teacher-forced segment pass", "[model]") {
  torch::NoGradGuard no_grad;
  ModelConfig c = small_config();
  c.step_kernels = GENERATE(0, 1);
  c.train_kernels = c.step_kernels;  // which need the step kernels
  INFO("step_kernels " << c.step_kernels);
  ShaRnn net(c);
  // Perturb the zero-initialised gates so attention is not uniform.
  for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * 0.3);
  net->refresh_gates();
  const int64_t batch = 4, warm = 10, seg = 16;
  ShaRnnState s = net->initial_state(batch, torch::kCPU);
  const at::Tensor bytes = torch::randint(0, 256, {batch, warm + seg}, torch::kInt64);
  for (int64_t t = 0; t < warm; ++t) net->step(bytes.select(1, t), s);
  // The ring (M + 1 = 65 slots) holds all warm + seg positions, so both paths
  // attend over exactly the same keys.
  const ShaRnnState start = s.clone();
  const at::Tensor full = net->forward_segment(bytes.narrow(1, warm, seg), start);
  for (int64_t t = 0; t < seg; ++t) {
    const at::Tensor stepped = net->step(bytes.select(1, warm + t), s);
    const double diff = (stepped - full.select(1, t)).abs().max().item<double>();
    INFO("position " << t);
    CHECK(diff < 1e-4);
  }
}

TEST_CASE("the step kernels compute LibTorch's step to float rounding", "[model]") {
  torch::NoGradGuard no_grad;
  ModelConfig c = small_config();
  c.mem_len = 12;  // the ring wraps
  c.boom_factor = 3;
  for (const int attn : {0, 1, -1}) {
    c.attn_layer = attn;
    ModelConfig ck = c, ct = c;
    ck.step_kernels = 1;
    ct.step_kernels = 0;
    ct.train_kernels = 0;
    ShaRnn kernels(ck), aten(ct);
    torch::manual_seed(5);
    for (auto& p : kernels->parameters()) p.add_(torch::randn_like(p) * 0.3);
    for (size_t i = 0; i < kernels->parameters().size(); ++i) {
      aten->parameters()[i].copy_(kernels->parameters()[i]);
    }
    kernels->refresh_gates();
    aten->refresh_gates();
    const int64_t batch = 7;  // the AVX2 kernel's 4-row blocks and a remainder
    ShaRnnState sk = kernels->initial_state(batch, torch::kCPU), sa = aten->initial_state(batch, torch::kCPU);
    const at::Tensor bytes = torch::randint(0, 256, {batch, 40}, torch::kInt64);
    double worst = 0;
    for (int64_t t = 0; t < bytes.size(1); ++t) {
      if (t == 20) {  // new weights half way: both paths must read them (and the gates)
        for (auto& p : kernels->parameters()) p.mul_(0.9);
        for (auto& p : aten->parameters()) p.mul_(0.9);
        kernels->refresh_gates();
        aten->refresh_gates();
      }
      const at::Tensor lk = kernels->step(bytes.select(1, t), sk);
      const at::Tensor la = aten->step(bytes.select(1, t), sa);
      const double diff = (lk - la).abs().max().item<double>();
      worst = std::max(worst, diff);
    }
    INFO("attention layer " << attn);
    CHECK(worst < 1e-4);
    CHECK(worst > 0);  // the kernels did run: their sums round differently
    for (int l = 0; l < c.layers; ++l) {
      CHECK((sk.h[l] - sa.h[l]).abs().max().item<double>() < 1e-4);
      CHECK((sk.c[l] - sa.c[l]).abs().max().item<double>() < 1e-4);
    }
    if (attn >= 0) {
      CHECK(sk.mem_fill == sa.mem_fill);
      CHECK(sk.mem_pos == sa.mem_pos);
      CHECK((sk.mem - sa.mem).abs().max().item<double>() < 1e-4);
    }
  }
}

TEST_CASE("the training kernels compute autograd's loss and gradients to float rounding", "[model]") {
  ModelConfig c = small_config();
  c.mem_len = 12;  // the ring wraps
  c.boom_factor = 3;
  c.seg_len = 5;
  // B * T = 15 rows: the weight gradients without transposes (kDirectRows in
  // train_kernels.cpp); 45: through the transposes, zero-padded to 48.
  const int64_t batch = GENERATE(3, 9);
  INFO("batch " << batch);
  for (const int attn : {0, 1, -1}) {
    for (const int warm : {0, 4, 30}) {  // no memory, some, a wrapped ring
      c.attn_layer = attn;
      INFO("attention layer " << attn << ", " << warm << " positions before the segment");
      ShaRnn net(c);
      torch::manual_seed(9);
      {
        torch::NoGradGuard no_grad;
        for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * 0.3);
        net->refresh_gates();
      }
      const at::Tensor bytes = torch::randint(0, 256, {batch, warm + c.seg_len + 1}, torch::kInt64);
      ShaRnnState s = net->initial_state(batch, torch::kCPU);
      {
        torch::NoGradGuard no_grad;
        for (int t = 0; t < warm; ++t) net->step(bytes.select(1, t), s);
      }
      const at::Tensor seg = bytes.narrow(1, warm, c.seg_len + 1);

      // LibTorch's autograd.
      for (auto& p : net->parameters()) p.mutable_grad() = at::Tensor();
      const at::Tensor logits = net->forward_segment(seg.narrow(1, 0, c.seg_len), s);
      const at::Tensor loss =
          at::cross_entropy_loss(logits.reshape({-1, 256}), seg.narrow(1, 1, c.seg_len).reshape({-1}));
      loss.backward();
      std::vector<at::Tensor> reference;
      for (auto& p : net->parameters()) reference.push_back(p.grad().clone());

      // The kernels, over gradients filled with NaN: every element must be written.
      for (auto& p : net->parameters()) p.mutable_grad().fill_(std::numeric_limits<float>::quiet_NaN());
      const double own_loss = net->train_segment(seg, s);
      CHECK(own_loss == Approx(loss.item<double>()).epsilon(1e-5));
      const auto params = net->named_parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        const at::Tensor own = params[i].value().grad();
        const double scale = reference[i].abs().max().item<double>();
        const double diff = (own - reference[i]).abs().max().item<double>();
        INFO(params[i].key() << ": largest gradient " << scale << ", largest difference " << diff);
        CHECK(!own.isnan().any().item<bool>());
        CHECK(diff <= 1e-4 * std::max(scale, 1e-3));
      }
    }
  }
}

TEST_CASE("the training kernels learn as LibTorch's autograd and Adam do", "[model]") {
  // Over the first 16 steps (clipping every time, beta1 > 0, both lags) the
  // two must predict the same probabilities up to float noise.
  ModelConfig c = clipping_config();
  c.train_lag = GENERATE(0, 1);
  INFO("train_lag " << c.train_lag);
  const int streams = 2;
  const Agreement r = kernels_against_autograd(c, streams, repetitive_text(16 * c.seg_len * streams, 8));
  REQUIRE(r.steps >= 15);
  INFO("kernels vs autograd: " << r.gap << ", learned: " << r.moved);
  CHECK(r.gap < 1e-5);
  CHECK(r.moved > 1e-2);  // the models did learn, so the first check covers it
}

TEST_CASE("format 7 on the CPU calls none of LibTorch's arithmetic", "[model]") {
  // What lets its archives decode whatever the BLAS, ATen's kernel set and
  // LibTorch's version: every LibTorch operator that a Predictor calls,
  // predicting and training (on its own thread too), only allocates, copies
  // or views memory. Recorded by LibTorch's own operator callbacks.
  static std::mutex mutex;
  static std::set<std::string> called;
  called.clear();
  const auto handle = at::addGlobalCallback(at::RecordFunctionCallback(
      [](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
        const std::lock_guard<std::mutex> lock(mutex);
        called.insert(fn.name());
        return nullptr;
      }));
  ModelConfig c = small_config();
  c.train_lag = GENERATE(0, 1);
  INFO("train_lag " << c.train_lag);
  const std::string text = repetitive_text(3 * 256, 2);
  // KernelPredictor (the default) calls no operator at all.
  all_tables(c, RuntimeOptions{}, text, 3);
  {
    const std::lock_guard<std::mutex> lock(mutex);
    CHECK(called.empty());
  }
  // The same model held in LibTorch's tensors (as up to shazip 0.20) only
  // allocates, copies or views memory through them.
  RuntimeOptions libtorch;
  libtorch.kernel_predictor = false;
  all_tables(c, libtorch, text, 3);
  at::removeCallback(handle);
  const std::set<std::string> memory_only = {
      "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::zeros", "aten::zeros_like", "aten::zero_",
      "aten::fill_", "aten::_has_compatible_shallow_copy_type", "detach",
      "aten::copy_", "aten::clone", "aten::detach", "aten::detach_", "aten::set_", "aten::to", "aten::_to_copy",
      "aten::contiguous", "aten::view", "aten::reshape", "aten::narrow", "aten::slice", "aten::select",
      "aten::as_strided", "aten::alias", "aten::lift_fresh", "aten::resize_"};
  std::string arithmetic;
  for (const std::string& op : called) {
    if (!memory_only.count(op)) arithmetic += op + ", ";
  }
  INFO("operators called: " << called.size() << "; not memory only: " << arithmetic);
  CHECK(called.count("aten::copy_"));  // the callbacks did see the Predictor's operators
  CHECK(arithmetic.empty());
}

TEST_CASE("the model codes the same tables with and without the AVX2 kernels", "[model]") {
  // What an archive made on an AVX2 machine needs from a decoder without it
  // (the step path and the LSTM cell of training; the BLAS is pinned apart).
  const bool before = step::simd();
  if (!step::set_simd(true)) {
    WARN("no AVX2 + FMA on this CPU: nothing to compare");
    return;
  }
  const ModelConfig c = small_config();
  const std::string text = repetitive_text(3 * 1024, 4);
  const auto fast = all_tables(c, RuntimeOptions{}, text, 3);
  step::set_simd(false);
  const auto plain = all_tables(c, RuntimeOptions{}, text, 3);
  step::set_simd(before);
  REQUIRE(fast.size() == plain.size());
  CHECK(fast == plain);
}

TEST_CASE("same seed, input and threads give bit-identical tables", "[model]") {
  const ModelConfig c = small_config();
  const std::string text = repetitive_text(4 * 1024, 1);
  const auto a = all_tables(c, RuntimeOptions{}, text, 4);
  const auto b = all_tables(c, RuntimeOptions{}, text, 4);
  REQUIRE(a.size() == b.size());
  CHECK(a == b);
}

TEST_CASE("training groups: one Adam step per share of the streams on both training paths", "[model]") {
  // Format 8: G steps per segment, group g on streams [g B / G, (g + 1) B / G)
  // from the start state of those streams. Three streams in two groups (one
  // and two streams) over 16 segments: the training kernels and LibTorch's
  // autograd must agree to float noise, both lags.
  ModelConfig c = clipping_config();
  c.train_lag = GENERATE(0, 1);
  c.train_groups = 2;
  INFO("train_lag " << c.train_lag);
  const int streams = 3;
  const std::string text = repetitive_text(16 * c.seg_len * streams, 9);
  const Agreement r = kernels_against_autograd(c, streams, text);
  INFO("kernels vs autograd: " << r.gap << ", learned: " << r.moved);
  CHECK(r.gap < 1e-5);
  CHECK(r.moved > 1e-2);

  // Against one group: the same tables until the first step's weights are
  // used (segment 1 at lag 0, segment 2 at lag 1), different from there on.
  ModelConfig one = c;
  one.train_groups = 1;
  const auto grouped = all_tables(c, RuntimeOptions{}, text, streams);
  const auto single = all_tables(one, RuntimeOptions{}, text, streams);
  const auto segment = static_cast<std::ptrdiff_t>(c.seg_len * streams * kCdfSize);
  const std::ptrdiff_t same = (1 + c.train_lag) * segment;
  CHECK(std::equal(grouped.begin(), grouped.begin() + same, single.begin()));
  CHECK(!std::equal(grouped.begin(), grouped.begin() + same + segment, single.begin()));
  // On its own thread as inline; as many groups as streams works too.
  RuntimeOptions inline_rt;
  inline_rt.async_train = false;
  CHECK(all_tables(c, inline_rt, text, streams) == grouped);
  c.train_groups = streams;
  CHECK(all_tables(c, RuntimeOptions{}, text, streams) != grouped);
}

TEST_CASE("GPU: the model on CUDA learns as LibTorch's CPU path does with and without training groups",
          "[gpu][model]") {
  // With cuda_train_kernels off (before format 10) CUDA runs the training
  // step on LibTorch's autograd, as the CPU did before format 7, and the step
  // on LibTorch's operators (before format 9) or on the CUDA step kernels:
  // over the first 16 steps (three streams, in one group or two) the two must
  // agree up to the devices' different rounding.
  if (!backend_info().cuda_available) {
    WARN("no CUDA device or no CUDA build: [gpu] test skipped");
    return;
  }
  ModelConfig c = clipping_config();
  c.cuda_step_kernels = GENERATE(0, 1);
  c.step_kernels = c.cuda_step_kernels;
  c.train_kernels = 0;
  c.cuda_train_kernels = 0;
  c.train_groups = GENERATE(1, 2);
  INFO("train_groups " << c.train_groups << ", CUDA step kernels " << c.cuda_step_kernels);
  const int streams = 3;
  const std::string text = repetitive_text(16 * c.seg_len * streams, 10);
  RuntimeOptions cuda;
  cuda.device = DeviceKind::kCuda;
  Predictor cpu(c, streams, RuntimeOptions{}), gpu(c, streams, cuda);
  double moved = 0;
  const double gap = largest_gaps(cpu, {&gpu}, text, streams, &moved)[0];
  INFO("CUDA vs CPU: " << gap << ", learned: " << moved);
  CHECK(gap < 1e-4);
  CHECK(moved > 1e-2);
}

TEST_CASE("GPU: the CUDA step kernels compute the CPU step kernels' bits", "[gpu][model]") {
  // Format 9: the same weights, state and bytes give the same logits, states
  // and memory on the GPU as on the CPU, bit for bit, with the attention in
  // the first block, the second and none, across the ring's wrap and a change
  // of weights; five streams, a remainder of the kernels' four-row groups.
  // With the products tiled and plain.
  if (!backend_info().cuda_available) {
    WARN("no CUDA device or no CUDA build: [gpu] test skipped");
    return;
  }
  torch::NoGradGuard no_grad;
  ModelConfig c = small_config();
  c.mem_len = 12;
  c.boom_factor = 3;
  RuntimeOptions cuda;
  cuda.device = DeviceKind::kCuda;
  cuda.cuda_tiled_products = GENERATE(true, false);
  // wide: several tiles of rows and columns, several rounds of the sums.
  const bool wide = GENERATE(false, true);
  INFO("tiled products " << cuda.cuda_tiled_products << ", wide " << wide);
  configure_runtime(cuda);
  if (wide) c.dim = 264;
  for (const int attn : {0, 1, -1}) {
    INFO("attention layer " << attn);
    c.attn_layer = attn;
    ShaRnn cpu(c), gpu(c);
    torch::manual_seed(6);
    for (auto& p : cpu->parameters()) p.add_(torch::randn_like(p) * 0.3);
    for (size_t i = 0; i < cpu->parameters().size(); ++i) gpu->parameters()[i].copy_(cpu->parameters()[i]);
    gpu->to(torch::kCUDA);
    cpu->refresh_gates();
    gpu->refresh_gates();
    const int64_t batch = wide ? 70 : 5;
    ShaRnnState sc = cpu->initial_state(batch, torch::kCPU), sg = gpu->initial_state(batch, torch::kCUDA);
    const at::Tensor bytes = torch::randint(0, 256, {batch, 40}, torch::kInt64);
    int64_t unequal = 0;
    for (int64_t t = 0; t < bytes.size(1); ++t) {
      if (t == 20) {  // new weights half way: the kernels and the gates read them
        for (auto& p : cpu->parameters()) p.mul_(0.9);
        for (auto& p : gpu->parameters()) p.mul_(0.9);
        cpu->refresh_gates();
        gpu->refresh_gates();
      }
      const at::Tensor lc = cpu->step(bytes.select(1, t), sc);
      const at::Tensor lg = gpu->step(bytes.select(1, t).to(torch::kCUDA), sg).to(torch::kCPU);
      unequal += !torch::equal(lc, lg);
    }
    CHECK(unequal == 0);
    for (int l = 0; l < c.layers; ++l) {
      CHECK(torch::equal(sc.h[l], sg.h[l].to(torch::kCPU)));
      CHECK(torch::equal(sc.c[l], sg.c[l].to(torch::kCPU)));
    }
    if (attn >= 0) {
      CHECK(sc.mem_fill == sg.mem_fill);
      CHECK(sc.mem_pos == sg.mem_pos);
      CHECK(torch::equal(sc.mem, sg.mem.to(torch::kCPU)));
    }
  }
}

TEST_CASE("GPU: a CUDA predictor codes the CPU's tables", "[gpu][model]") {
  // Format 10: with the CUDA step and training kernels every table of a whole
  // run is the CPU's, at lag 0 and 1, in one training group or two, the clip
  // active. With LibTorch's training on CUDA (cuda_train_kernels off) only
  // the first two segments, which lag 1 codes with the initial weights.
  if (!backend_info().cuda_available) {
    WARN("no CUDA device or no CUDA build: [gpu] test skipped");
    return;
  }
  ModelConfig c = clipping_config();
  c.train_lag = GENERATE(0, 1);
  c.train_groups = GENERATE(1, 2);
  INFO("lag " << c.train_lag << ", groups " << c.train_groups);
  const int streams = 5;
  const std::string text = repetitive_text(24 * c.seg_len * streams, 12);
  RuntimeOptions cuda;
  cuda.device = DeviceKind::kCuda;
  const auto cpu_tables = all_tables(c, RuntimeOptions{}, text, streams);
  CHECK(all_tables(c, cuda, text, streams) == cpu_tables);
  if (c.train_lag == 1) {
    c.cuda_train_kernels = 0;
    const auto libtorch = all_tables(c, cuda, text, streams);
    REQUIRE(libtorch.size() == cpu_tables.size());
    const auto two_segments = static_cast<std::ptrdiff_t>(2 * c.seg_len * streams * kCdfSize);
    CHECK(std::equal(cpu_tables.begin(), cpu_tables.begin() + two_segments, libtorch.begin()));
  }
}

TEST_CASE("GPU: the CUDA training kernels compute the CPU training kernels' gradients", "[gpu][model]") {
  // Format 10, through ShaRnn on the device: the same weights, start state
  // and bytes give every gradient and the loss of the CPU's training
  // kernels, bit for bit, with the attention in the first block, the second
  // and none, and a partly filled memory. With the products tiled and plain.
  if (!backend_info().cuda_available) {
    WARN("no CUDA device or no CUDA build: [gpu] test skipped");
    return;
  }
  torch::NoGradGuard no_grad;
  RuntimeOptions cuda;
  cuda.device = DeviceKind::kCuda;
  cuda.cuda_tiled_products = GENERATE(true, false);
  const bool wide = GENERATE(false, true);  // as in the step's test
  INFO("tiled products " << cuda.cuda_tiled_products << ", wide " << wide);
  configure_runtime(cuda);
  ModelConfig c = small_config();
  c.mem_len = 12;
  c.boom_factor = 3;
  c.seg_len = 5;
  if (wide) c.dim = 264;
  for (const int attn : {0, 1, -1}) {
    INFO("attention layer " << attn);
    c.attn_layer = attn;
    ShaRnn cpu(c), gpu(c);
    torch::manual_seed(7);
    for (auto& p : cpu->parameters()) p.add_(torch::randn_like(p) * 0.3);
    for (size_t i = 0; i < cpu->parameters().size(); ++i) gpu->parameters()[i].copy_(cpu->parameters()[i]);
    gpu->to(torch::kCUDA);
    for (auto& p : cpu->parameters()) p.mutable_grad() = torch::full_like(p, std::nanf(""));
    for (auto& p : gpu->parameters()) p.mutable_grad() = torch::full_like(p, std::nanf(""));
    const int64_t batch = wide ? 14 : 3;
    ShaRnnState sc = cpu->initial_state(batch, torch::kCPU);
    for (int l = 0; l < c.layers; ++l) {
      sc.h[l].copy_(torch::randn_like(sc.h[l]) * 0.5);
      sc.c[l].copy_(torch::randn_like(sc.c[l]));
    }
    sc.mem.copy_(torch::randn_like(sc.mem));
    sc.mem_fill = 7;
    ShaRnnState sg = gpu->initial_state(batch, torch::kCUDA);
    for (int l = 0; l < c.layers; ++l) {
      sg.h[l].copy_(sc.h[l]);
      sg.c[l].copy_(sc.c[l]);
    }
    sg.mem.copy_(sc.mem);
    sg.mem_fill = sc.mem_fill;
    const at::Tensor bytes = torch::randint(0, 256, {batch, c.seg_len + 1}, torch::kInt64);
    const double loss = cpu->train_segment(bytes, sc);
    CHECK(gpu->train_segment(bytes, sg) == loss);
    const auto a = cpu->parameters(), b = gpu->parameters();
    int unequal = 0;
    for (size_t i = 0; i < a.size(); ++i) unequal += !torch::equal(a[i].grad(), b[i].grad().to(torch::kCPU));
    CHECK(unequal == 0);
  }
}

TEST_CASE("training on its own thread gives the tables of inline training", "[model]") {
  // Lag 1 lets the training step run beside the next segment; the thread it
  // runs on must not change a bit. Lag 0 must differ (the step path uses newer
  // weights), and agree with itself.
  ModelConfig c = small_config();
  c.seg_len = 4;  // many steps, each racing a short segment
  c.flat_train = GENERATE(0, 1, 2);  // 2: flat, on the training kernels
  c.train_kernels = c.flat_train == 2;
  c.flat_train = std::min(c.flat_train, 1);
  INFO("flat_train " << c.flat_train << ", train_kernels " << c.train_kernels);
  const std::string text = repetitive_text(2 * 1024, 5);
  const int streams = 2;
  auto run = [&](int lag, bool async) {
    ModelConfig cl = c;
    cl.train_lag = lag;
    RuntimeOptions rt;
    rt.async_train = async;
    return all_tables(cl, rt, text, streams);
  };
  const auto threaded = run(1, true);
  CHECK(threaded == run(1, false));
  const auto lag0 = run(0, true);
  CHECK(lag0 == run(0, false));
  // Both code segment 0 with the initial weights; lag 0 codes segment 1 with
  // the first step's weights, lag 1 only segment 2.
  const auto segment = static_cast<std::ptrdiff_t>(c.seg_len * streams * kCdfSize);  // tables per segment
  CHECK(std::equal(lag0.begin(), lag0.begin() + segment, threaded.begin()));
  CHECK(!std::equal(lag0.begin(), lag0.begin() + 2 * segment, threaded.begin()));
  CHECK(lag0 != threaded);
}

TEST_CASE("knowing the length skips only the training steps nobody uses", "[model]") {
  // The last step of a file (at lag 1 the last two, when the file ends within
  // a segment of the next-to-last) would train weights that no position uses:
  // skipped, the tables must not change.
  ModelConfig c = small_config();
  c.train_lag = GENERATE(0, 1);
  const int streams = 2;
  const size_t len = GENERATE(size_t{4 * 16}, size_t{4 * 16 + 5}, size_t{16 + 3}, size_t{7});
  INFO("train_lag " << c.train_lag << ", " << len << " positions");
  const std::string text = repetitive_text(len * streams, 6);
  CHECK(all_tables(c, RuntimeOptions{}, text, streams, /*tell_length=*/true) ==
        all_tables(c, RuntimeOptions{}, text, streams));
}

TEST_CASE("flat training computes LibTorch's Adam and clipping over all weights at once", "[model]") {
  // flat_train 1 (format 5) keeps every weight in one buffer and runs the
  // clipping and Adam over it; flat_train 0 runs LibTorch's clip_grad_norm_
  // and torch::optim::Adam tensor by tensor. Same formulas, different
  // rounding: over the first 16 steps the two models must predict the same
  // probabilities up to float noise (which online learning later amplifies
  // chaotically). A small clip norm makes every step clip, and beta1 > 0
  // exercises the first moment; both lags.
  ModelConfig c = clipping_config();
  c.train_lag = GENERATE(0, 1);
  INFO("train_lag " << c.train_lag);
  const int streams = 2;
  const std::string text = repetitive_text(16 * c.seg_len * streams, 7);
  c.train_kernels = 0;  // LibTorch's autograd in all three
  ModelConfig flat = c, per_tensor = c, unclipped = c;
  flat.flat_train = 1;
  per_tensor.flat_train = 0;
  unclipped.flat_train = 0;
  unclipped.clip = 1e6f;
  Predictor a(flat, streams, RuntimeOptions{}), b(per_tensor, streams, RuntimeOptions{}),
      u(unclipped, streams, RuntimeOptions{});
  const std::vector<double> gaps = largest_gaps(b, {&a, &u}, text, streams);
  const double flat_gap = gaps[0], clip_gap = gaps[1];  // largest probability differences
  REQUIRE(a.train_steps() == b.train_steps());
  REQUIRE(a.train_steps() >= 15);
  INFO("flat vs tensor by tensor: " << flat_gap << ", clipped vs not: " << clip_gap);
  CHECK(flat_gap < 1e-5);
  CHECK(clip_gap > 1e-3);  // the clipping mattered, so the first check covers it
}

TEST_CASE("the model learns a repetitive text", "[model]") {
  ModelConfig c = small_config();
  c.dim = 64;
  const int streams = 4;
  const std::string text = repetitive_text(24 * 1024, 2);
  const size_t len = text.size() / streams;
  Predictor p(c, streams, RuntimeOptions{});
  std::vector<uint32_t> cdfs(streams * kCdfSize);
  std::vector<uint8_t> bytes(streams);
  double first_bits = 0, last_bits = 0;
  for (size_t i = 0; i < len; ++i) {
    p.predict(cdfs.data());
    for (int b = 0; b < streams; ++b) {
      bytes[b] = static_cast<uint8_t>(text[b * len + i]);
      const double bits = -std::log2(p.probs()[b * 256 + bytes[b]]);
      if (i < 256) first_bits += bits;
      if (i >= len - 256) last_bits += bits;
    }
    p.observe(bytes.data());
  }
  const double first = first_bits / (256.0 * streams), last = last_bits / (256.0 * streams);
  INFO("first KB " << first << " bits/byte, last KB " << last << " bits/byte");
  CHECK(first > 4.0);
  CHECK(last < 1.5);
}

TEST_CASE("the arithmetic count follows the built model's matrices", "[model]") {
  // Every matrix of the model is used once per position in a product (the
  // embedding as the tied decoder), except the value gate's, which is applied
  // once per training step; the attention adds 4 x keys x d.
  for (int level = kMinPreset; level <= kMaxPreset; ++level) {
    const ModelConfig c = preset(level).model;
    INFO("preset " << level);
    ShaRnn net(c);
    double matrix_flops = 0;
    for (const auto& item : net->named_parameters()) {
      if (item.value().dim() == 2 && item.key() != "attn_vq_weight") matrix_flops += 2.0 * item.value().numel();
    }
    const double d = c.dim;
    const double attn = c.attn_layer >= 0 ? 4 * d : 0;
    const ModelConfig::Flops f = c.flops_per_byte();
    CHECK(f.predict == Approx(matrix_flops + attn * (c.mem_len + 1)));
    CHECK(f.train == Approx(3 * (matrix_flops + attn * (c.mem_len + 1 + c.seg_len))));
    CHECK(f.total() == f.predict + f.train);
  }
}

TEST_CASE("the kernel predictor codes the tables of the LibTorch-held model on the same kernels", "[model]") {
  // Format 7 on, on the CPU, Predictor runs KernelPredictor (flat arrays, no
  // LibTorch); RuntimeOptions::kernel_predictor off keeps the model in
  // LibTorch's tensors around the same kernels, as before shazip 0.21. Every
  // table and probability must be the same: attention in either block or
  // none, both lags, training groups, inline or threaded training, with and
  // without the length known.
  ModelConfig c = small_config();
  c.seg_len = 8;
  c.attn_layer = GENERATE(-1, 0, 1);
  c.train_lag = GENERATE(0, 1);
  c.train_groups = GENERATE(1, 2);
  // 65 memory slots: each segment start copies the slots written in two
  // segments (16); 6: more are written than there are, the whole memory.
  c.mem_len = c.attn_layer < 0 ? 0 : GENERATE(64, 5);
  INFO("attn_layer " << c.attn_layer << ", train_lag " << c.train_lag << ", groups " << c.train_groups
                     << ", memory " << c.mem_len);
  REQUIRE(KernelPredictor::handles(c, true));
  const int streams = 3;
  const std::string text = repetitive_text(12 * c.seg_len * streams, 11);
  RuntimeOptions libtorch;
  libtorch.kernel_predictor = false;
  const auto kernels = all_tables(c, RuntimeOptions{}, text, streams);
  CHECK(kernels == all_tables(c, libtorch, text, streams));
  RuntimeOptions inline_rt;
  inline_rt.async_train = false;
  CHECK(all_tables(c, inline_rt, text, streams) == kernels);
  CHECK(all_tables(c, RuntimeOptions{}, text, streams, /*tell_length=*/true) == kernels);

  // The float probabilities behind the tables too.
  Predictor a(c, streams, RuntimeOptions{}), b(c, streams, libtorch);
  std::vector<uint32_t> cdfs(streams * kCdfSize);
  std::vector<uint8_t> bytes(streams);
  bool same = true;
  for (size_t i = 0; i < 4 * static_cast<size_t>(c.seg_len); ++i) {
    a.predict(cdfs.data());
    b.predict(cdfs.data());
    same = same && std::equal(a.probs(), a.probs() + streams * 256, b.probs());
    for (int k = 0; k < streams; ++k) bytes[k] = static_cast<uint8_t>(text[k * 100 + i]);
    a.observe(bytes.data());
    b.observe(bytes.data());
  }
  CHECK(same);
  CHECK(a.train_steps() == b.train_steps());
}

TEST_CASE("the flat layout lists ShaRnn's parameters in its order", "[model]") {
  // KernelPredictor's weights start as ShaRnn's: the same names, shapes and
  // order (the order the initial values are drawn in), and the same values.
  ModelConfig c = small_config();
  c.attn_layer = GENERATE(-1, 1);
  const FlatLayout layout(c);
  ShaRnn net(c);
  const auto named = net->named_parameters(/*recurse=*/false);
  REQUIRE(named.size() == layout.specs().size());
  std::vector<float> flat(static_cast<size_t>(layout.size()));
  layout.init(flat.data());
  for (size_t i = 0; i < named.size(); ++i) {
    const ParamSpec& spec = layout.specs()[i];
    INFO(spec.name);
    CHECK(named[i].key() == spec.name);
    CHECK(named[i].value().sizes().vec() == spec.shape);
    CHECK(layout.offsets()[i] % kFlatAlign == 0);
    const at::Tensor t = named[i].value().contiguous();
    CHECK(std::equal(flat.begin() + layout.offsets()[i], flat.begin() + layout.offsets()[i] + spec.numel(),
                     t.data_ptr<float>()));
  }
  CHECK(layout.size() % kFlatAlign == 0);
}

TEST_CASE("det_expf is accurate over the gate range", "[model]") {
  double worst = 0;
  for (float x = -30.0f; x <= 30.0f; x += 0.001f) {
    const double ref = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(shazip::model::det_expf(x) - ref) / ref);
  }
  CHECK(worst < 5e-7);
  CHECK(shazip::model::det_expf(1000.0f) > 1e38f);
  CHECK(shazip::model::det_expf(-1000.0f) >= 0.0f);
}

TEST_CASE("fused LSTM layer matches torch's LSTM, values and gradients", "[model]") {
  const int64_t batch = 3, steps = 7, d = 16;
  torch::manual_seed(0);
  auto w_ih = (torch::randn({4 * d, d}) * 0.3).requires_grad_();
  auto w_hh = (torch::randn({4 * d, d}) * 0.3).requires_grad_();
  auto b_ih = (torch::randn({4 * d}) * 0.3).requires_grad_();
  auto b_hh = (torch::randn({4 * d}) * 0.3).requires_grad_();
  auto x = torch::randn({batch, steps, d}).requires_grad_();
  const auto h0 = torch::randn({batch, d}), c0 = torch::randn({batch, d});
  const auto weights = torch::randn({batch, steps, d});

  const auto ours = shazip::model::lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh);
  (ours * weights).sum().backward();
  std::vector<at::Tensor> ours_grads = {x.grad().clone(), w_ih.grad().clone(), w_hh.grad().clone(),
                                        b_ih.grad().clone(), b_hh.grad().clone()};
  for (auto* t : {&x, &w_ih, &w_hh, &b_ih, &b_hh}) t->mutable_grad().zero_();

  auto ref = std::get<0>(at::lstm(x, {h0.unsqueeze(0), c0.unsqueeze(0)}, {w_ih, w_hh, b_ih, b_hh},
                                  true, 1, 0.0, true, false, true));
  (ref * weights).sum().backward();
  std::vector<at::Tensor> ref_grads = {x.grad(), w_ih.grad(), w_hh.grad(), b_ih.grad(), b_hh.grad()};

  CHECK((ours - ref).abs().max().item<double>() < 1e-5);
  for (size_t i = 0; i < ref_grads.size(); ++i) {
    INFO("gradient " << i);
    CHECK((ours_grads[i] - ref_grads[i]).abs().max().item<double>() < 1e-4);
  }
}
