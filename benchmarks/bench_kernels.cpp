// Kernel benchmark: the products of one CPU training step (model/step_kernels.h
// `linear`, as the training kernels call it) shape by shape, the weight
// gradients' products on transposes against `linear_tn`, the input
// gradients' against `linear_nn`, the whole training pass
// (model/train_kernels.h SegmentPass::run) on random weights, and the Adam
// step over as many weights.
// Torch-free; one thread.
//
// The shapes are those of preset 2 (d = 96, Boom 4d, one block with attention
// over 64 + 1 memory slots, T = 8 unless --seg) for B streams: rows x k (summed) x n
// (outputs), and how often a step runs each.
//
// Usage: bench_kernels [B] [--seg T] [--plain | --avx2]   (default B = 16,
// T = 8; --plain: no AVX2; --avx2: AVX2 without linear's AVX-512 kernel,
// which is otherwise used where the CPU has it). Inputs of one or two streams
// above 8 KB train on T = 16.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/step_kernels.h"
#include "model/train_kernels.h"

using namespace shazip::model;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 16, seg = 8;
  bool plain = false, avx2 = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--plain") == 0) {
      plain = true;
    } else if (std::strcmp(argv[i], "--avx2") == 0) {
      avx2 = true;
    } else if (std::strcmp(argv[i], "--seg") == 0 && i + 1 < argc) {
      seg = std::atoll(argv[++i]);
      if (seg < 2 || seg > 4096) {
        std::fprintf(stderr, "bench_kernels: --seg takes 2 to 4096\n");
        return 1;
      }
    } else {
      batch = std::atoll(argv[i]);
      if (batch < 1 || batch > 4096) {
        std::fprintf(stderr, "usage: bench_kernels [B] [--seg T] [--plain | --avx2]\n");
        return 1;
      }
    }
  }
  step::set_simd(!plain);
  if (avx2) step::set_avx512(false);
  const int64_t d = 96, f = 4 * d, slots = 65;
  const int64_t n = batch * seg, np = (n + 7) / 8 * 8;
  std::mt19937 rng(1);

  struct Shape {
    const char* what;
    int64_t rows, k, n, count;
  };
  const Shape shapes[] = {
      {"LSTM gates, per position", batch, 2 * d, 4 * d, seg},
      {"query", n, d, d, 1},
      {"Boom", n, d, f, 1},
      {"decoder", n, d, 256, 1},
      {"d embedding (decoder)", 256, np, d, 1},
      {"d decoder input", n, 256, d, 1},
      {"d Boom input", n, f, d, 1},
      {"d Boom weight", f, np, d, 1},
      {"d query input", n, d, d, 1},
      {"d query weight", d, np, d, 1},
      {"d LSTM h, per position", batch, 4 * d, d, seg - 1},
      {"d LSTM weights (two)", 4 * d, np, d, 2},
      {"d LSTM input", n, 4 * d, d, 1},
  };
  std::printf("step::linear, B = %lld, T = %lld, %s\n", static_cast<long long>(batch), static_cast<long long>(seg),
              step::avx512() ? "AVX2 + FMA, linear in AVX-512" : step::simd() ? "AVX2 + FMA" : "plain C++");
  std::printf("%-26s %5s %5s %5s %6s %9s %12s\n", "product", "rows", "k", "n", "count", "GFLOP/s", "us per step");
  double total_s = 0, total_flop = 0;
  for (const Shape& s : shapes) {
    const auto x = random_floats(static_cast<size_t>(s.rows * s.k), rng, 1.0f);
    const auto w = random_floats(static_cast<size_t>(s.n * s.k), rng, 1.0f);
    std::vector<float> y(static_cast<size_t>(s.rows * s.n));
    const double flop = 2.0 * static_cast<double>(s.rows * s.k * s.n);
    const int reps = std::max(10, static_cast<int>(5e8 / flop));
    step::linear(x.data(), s.rows, s.k, w.data(), s.n, nullptr, y.data());
    const double t0 = now();
    for (int i = 0; i < reps; ++i) step::linear(x.data(), s.rows, s.k, w.data(), s.n, nullptr, y.data());
    const double per = (now() - t0) / reps;
    std::printf("%-26s %5lld %5lld %5lld %6lld %9.1f %12.1f\n", s.what, static_cast<long long>(s.rows),
                static_cast<long long>(s.k), static_cast<long long>(s.n), static_cast<long long>(s.count),
                flop / per / 1e9, per * 1e6 * static_cast<double>(s.count));
    total_s += per * static_cast<double>(s.count);
    total_flop += flop * static_cast<double>(s.count);
  }
  std::printf("all products: %.3f ms per step, %.1f GFLOP/s\n", total_s * 1e3, total_flop / total_s / 1e9);

  // The weight gradients' products as the rows (N = B T positions) come:
  // step::linear on the transposes, zero-padded to a multiple of 8 (the
  // transposes' time not counted), against step::linear_tn on the rows as
  // they are (train_kernels.cpp takes it up to kDirectRows rows, 64 with
  // AVX-512). Same bits.
  struct Grad {
    const char* what;
    int64_t out, in, count;
  };
  // Seconds per call of fn, repeated for about 2e8 flop of gr's product.
  auto per_call = [n](const Grad& gr, const auto& fn) {
    const int reps = std::max(10, static_cast<int>(2e8 / (2.0 * static_cast<double>(n * gr.out * gr.in))));
    const double t0 = now();
    for (int i = 0; i < reps; ++i) fn();
    return (now() - t0) / reps;
  };
  auto print_header = [n](const char* what, const char* direct) {
    std::printf("\n%s over N = %lld rows: us per step\n", what, static_cast<long long>(n));
    std::printf("%-26s %5s %5s %5s %12s %12s\n", "product", "out", "in", "count", "transposed", direct);
  };
  auto print_pair = [](const Grad& gr, double transposed, double direct) {
    std::printf("%-26s %5lld %5lld %5lld %12.1f %12.1f\n", gr.what, static_cast<long long>(gr.out),
                static_cast<long long>(gr.in), static_cast<long long>(gr.count),
                transposed * 1e6 * static_cast<double>(gr.count), direct * 1e6 * static_cast<double>(gr.count));
  };
  const Grad grads[] = {
      {"d embedding (decoder)", 256, d, 1},
      {"d Boom weight", f, d, 1},
      {"d query weight", d, d, 1},
      {"d LSTM weights (two)", 4 * d, d, 2},
  };
  print_header("weight gradients", "linear_tn");
  for (const Grad& gr : grads) {
    const auto dy = random_floats(static_cast<size_t>(n * gr.out), rng, 1.0f);
    const auto x = random_floats(static_cast<size_t>(n * gr.in), rng, 1.0f);
    std::vector<float> dyt(static_cast<size_t>(gr.out * np), 0.0f), xt(static_cast<size_t>(gr.in * np), 0.0f);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < gr.out; ++j) dyt[j * np + r] = dy[r * gr.out + j];
      for (int64_t i = 0; i < gr.in; ++i) xt[i * np + r] = x[r * gr.in + i];
    }
    std::vector<float> y(static_cast<size_t>(gr.out * gr.in));
    const double transposed =
        per_call(gr, [&] { step::linear(dyt.data(), gr.out, np, xt.data(), gr.in, nullptr, y.data()); });
    const double direct = per_call(gr, [&] { step::linear_tn(dy.data(), x.data(), n, np, gr.out, gr.in, y.data()); });
    print_pair(gr, transposed, direct);
  }

  // The input gradients' products, dX = dY W: step::linear on W's transpose
  // (the transpose's time not counted) against step::linear_nn on W as it is
  // (train_kernels.cpp takes it up to 64 rows where AVX-512 is used). Same bits.
  const Grad inputs[] = {
      {"d decoder input", 256, d, 1},
      {"d Boom input", f, d, 1},
      {"d query input", d, d, 1},
      {"d LSTM input", 4 * d, d, 1},
  };
  print_header("input gradients", "linear_nn");
  for (const Grad& gr : inputs) {
    const auto dy = random_floats(static_cast<size_t>(n * gr.out), rng, 1.0f);
    const auto wt = random_floats(static_cast<size_t>(gr.out * gr.in), rng, 1.0f);  // W (out x in)
    std::vector<float> wtt(static_cast<size_t>(gr.in * gr.out));
    for (int64_t j = 0; j < gr.out; ++j) {
      for (int64_t i = 0; i < gr.in; ++i) wtt[i * gr.out + j] = wt[j * gr.in + i];
    }
    std::vector<float> y(static_cast<size_t>(n * gr.in));
    const double transposed =
        per_call(gr, [&] { step::linear(dy.data(), n, gr.out, wtt.data(), gr.in, nullptr, y.data()); });
    const double direct = per_call(gr, [&] { step::linear_nn(dy.data(), n, gr.out, wt.data(), gr.in, y.data()); });
    print_pair(gr, transposed, direct);
  }

  // The whole pass: forward, backward, every gradient (not the Adam step).
  std::vector<std::vector<float>> store;
  store.reserve(64);
  auto make = [&](int64_t count, float scale) {
    store.push_back(random_floats(static_cast<size_t>(count), rng, scale));
    return store.back().data();
  };
  train::Params<float*> p, g;
  size_t weight_arrays = 0;  // p's, first in store
  for (train::Params<float*>* q : {&p, &g}) {
    q->embed = make(256 * d, 0.1f);
    q->dec_bias = make(256, 0.1f);
    q->blocks.push_back({make(d, 0.1f), make(d, 0.1f), make(4 * d * d, 0.1f), make(4 * d * d, 0.1f),
                         make(4 * d, 0.1f), make(4 * d, 0.1f), make(d, 0.1f), make(d, 0.1f), make(d, 0.1f),
                         make(d, 0.1f), make(f * d, 0.1f), make(f, 0.1f)});
    q->attn = {make(d, 0.1f), make(d, 0.1f), make(d, 0.1f), make(d, 0.1f), make(d * d, 0.1f),
               make(d, 0.1f), make(d, 0.1f), make(d, 0.1f), make(d, 0.1f), make(d, 0.1f),
               make(d, 0.1f), make(2 * d * d, 0.1f), make(2 * d, 0.1f)};
    if (q == &p) weight_arrays = store.size();
  }
  train::Weights w;
  w.embed = p.embed;
  w.dec_bias = p.dec_bias;
  const auto& b = p.blocks[0];
  w.blocks.push_back({b.ln_start_w, b.ln_start_b, b.w_ih, b.w_hh, b.b_ih, b.b_hh, b.ln_ff_w, b.ln_ff_b, b.ln_xff_w,
                      b.ln_xff_b, b.boom_w, b.boom_b});
  const auto& a = p.attn;
  w.attn = {a.ln_mem_w, a.ln_mem_b, a.ln_mid_w, a.ln_mid_b, a.q_w, a.q_b, a.q_ln_w,
            a.q_ln_b,   a.qs,       a.ks,       a.vs,       a.vq_w, a.vq_b};
  train::Shape shape;
  shape.batch = batch;
  shape.seg = seg;
  shape.dim = d;
  shape.boom_factor = 4;
  shape.attn_layer = 0;
  shape.ln_eps = 1e-12f;
  train::Start start;
  start.h.push_back(make(batch * d, 0.5f));
  start.c.push_back(make(batch * d, 0.5f));
  start.mem = make(batch * slots * d, 1.0f);
  start.slots = slots;
  start.mem_fill = slots;
  std::vector<int64_t> bytes(static_cast<size_t>(batch * (seg + 1)));
  for (auto& byte : bytes) byte = static_cast<int64_t>(rng() % 256);
  train::SegmentPass pass;
  pass.run(shape, w, start, bytes.data(), g);
  const int reps = 500;
  const double t0 = now();
  for (int i = 0; i < reps; ++i) pass.run(shape, w, start, bytes.data(), g);
  std::printf("SegmentPass::run: %.3f ms per step\n", (now() - t0) / reps * 1e3);

  // The Adam step over as many weights as the model has (all of them in one
  // flat buffer, as KernelPredictor keeps them; the two weight buffers of lag
  // 1; no clipping), on one thread: one square root and a division per weight
  // (sqrt(v) / bias2_sqrt goes by FMA), without momentum as the presets (m
  // not touched) and with it.
  int64_t params = 0;
  for (size_t i = 0; i < weight_arrays; ++i) params += static_cast<int64_t>(store[i].size());
  std::vector<float> aw(static_cast<size_t>(params), 0.01f), aw_out(aw.size()), ag(aw.size(), 0.001f),
      am(aw.size(), 0.0f), av(aw.size(), 1e-6f);
  for (const double beta1 : {0.0, 0.9}) {
    train::AdamConfig cfg{3e-3, beta1, 0.9999, 1e-6, 5.0};
    train::AdamConstants k = train::adam_constants(cfg, beta1, 0.9999, params, ag.data());
    k.coef = 1.0f;
    const int adam_reps = 200;
    const double a0 = now();
    for (int i = 0; i < adam_reps; ++i) {
      train::adam_range(k, 0, params, aw.data(), aw_out.data(), ag.data(), am.data(), av.data());
    }
    const double adam = (now() - a0) / adam_reps;
    std::printf("Adam step, beta1 = %g, %lld weights: %.1f us (%.2f ns per weight)\n", beta1,
                static_cast<long long>(params), adam * 1e6, adam * 1e9 / static_cast<double>(params));
  }
  return 0;
}
