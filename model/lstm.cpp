// Fused LSTM layer; see lstm.h.
#include "model/lstm.h"

#include <torch/autograd.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace shazip::model {

namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + det_expf(-x)); }
inline float tanh_(float x) { return 2.0f / (1.0f + det_expf(-2.0f * x)) - 1.0f; }

#if defined(__SSE2__)
// det_expf, sigmoid and tanh_ on four floats: the same IEEE operations in the
// same order (no fused multiply-add: -ffp-contract=off), so every lane equals
// the scalar function bit for bit (tested). SSE2 is part of x86-64.
inline __m128 set1(float v) { return _mm_set1_ps(v); }
inline __m128 det_expf4(__m128 x) {
  x = _mm_min_ps(x, set1(88.0f));   // NaN gives the second operand, 88, as in det_expf
  x = _mm_max_ps(x, set1(-86.0f));
  const __m128 shifted = _mm_add_ps(_mm_mul_ps(x, set1(1.44269504088896341f)), set1(12582912.0f));
  const __m128 k = _mm_sub_ps(shifted, set1(12582912.0f));
  const __m128 r = _mm_sub_ps(_mm_sub_ps(x, _mm_mul_ps(k, set1(0.693145751953125f))),
                              _mm_mul_ps(k, set1(1.428606765330187045e-06f)));
  __m128 p = set1(1.0f / 720.0f);
  p = _mm_add_ps(_mm_mul_ps(p, r), set1(1.0f / 120.0f));
  p = _mm_add_ps(_mm_mul_ps(p, r), set1(1.0f / 24.0f));
  p = _mm_add_ps(_mm_mul_ps(p, r), set1(1.0f / 6.0f));
  p = _mm_add_ps(_mm_mul_ps(p, r), set1(0.5f));
  p = _mm_add_ps(_mm_mul_ps(p, r), set1(1.0f));
  p = _mm_add_ps(_mm_mul_ps(p, r), set1(1.0f));
  const __m128i bits = _mm_slli_epi32(_mm_add_epi32(_mm_cvttps_epi32(k), _mm_set1_epi32(127)), 23);
  return _mm_mul_ps(p, _mm_castsi128_ps(bits));
}
inline __m128 sigmoid4(__m128 x) {
  const __m128 neg = _mm_xor_ps(x, set1(-0.0f));
  return _mm_div_ps(set1(1.0f), _mm_add_ps(set1(1.0f), det_expf4(neg)));
}
inline __m128 tanh4(__m128 x) {
  const __m128 e = det_expf4(_mm_mul_ps(set1(-2.0f), x));
  return _mm_sub_ps(_mm_div_ps(set1(2.0f), _mm_add_ps(set1(1.0f), e)), set1(1.0f));
}
#endif

}  // namespace

void lstm_pointwise(const float* gates, const float* c_prev, float* c, float* h,
                    float* saved_acts, float* saved_tanh_c, int64_t batch, int64_t d) {
  for (int64_t b = 0; b < batch; ++b) {
    const float* g = gates + b * 4 * d;
    float* a = saved_acts ? saved_acts + b * 4 * d : nullptr;
    int64_t j = 0;
#if defined(__SSE2__)
    for (; j + 4 <= d; j += 4) {
      const __m128 ig = sigmoid4(_mm_loadu_ps(g + j));
      const __m128 fg = sigmoid4(_mm_loadu_ps(g + d + j));
      const __m128 gg = tanh4(_mm_loadu_ps(g + 2 * d + j));
      const __m128 og = sigmoid4(_mm_loadu_ps(g + 3 * d + j));
      const __m128 cn = _mm_add_ps(_mm_mul_ps(fg, _mm_loadu_ps(c_prev + b * d + j)), _mm_mul_ps(ig, gg));
      const __m128 tc = tanh4(cn);
      _mm_storeu_ps(c + b * d + j, cn);
      _mm_storeu_ps(h + b * d + j, _mm_mul_ps(og, tc));
      if (a) {
        _mm_storeu_ps(a + j, ig);
        _mm_storeu_ps(a + d + j, fg);
        _mm_storeu_ps(a + 2 * d + j, gg);
        _mm_storeu_ps(a + 3 * d + j, og);
        _mm_storeu_ps(saved_tanh_c + b * d + j, tc);
      }
    }
#endif
    for (; j < d; ++j) {
      const float ig = sigmoid(g[j]);
      const float fg = sigmoid(g[d + j]);
      const float gg = tanh_(g[2 * d + j]);
      const float og = sigmoid(g[3 * d + j]);
      const float cn = fg * c_prev[b * d + j] + ig * gg;
      const float tc = tanh_(cn);
      c[b * d + j] = cn;
      h[b * d + j] = og * tc;
      if (a) {
        a[j] = ig;
        a[d + j] = fg;
        a[2 * d + j] = gg;
        a[3 * d + j] = og;
        saved_tanh_c[b * d + j] = tc;
      }
    }
  }
}

std::pair<at::Tensor, at::Tensor> lstm_step(const at::Tensor& x, const at::Tensor& h,
                                            const at::Tensor& c, const at::Tensor& w_ih,
                                            const at::Tensor& w_hh, const at::Tensor& b_ih,
                                            const at::Tensor& b_hh) {
  if (!x.is_cpu()) {
    // GPU: LibTorch's fused cell (deterministic for fixed launch shapes).
    auto hc = at::lstm_cell(x, {h, c}, w_ih, w_hh, b_ih, b_hh);
    return {std::get<0>(hc), std::get<1>(hc)};
  }
  at::Tensor gates = at::addmm(b_ih + b_hh, x, w_ih.t());
  gates.addmm_(h, w_hh.t());
  gates = gates.contiguous();
  const at::Tensor cc = c.contiguous();
  at::Tensor h_new = at::empty_like(cc), c_new = at::empty_like(cc);
  lstm_pointwise(gates.data_ptr<float>(), cc.data_ptr<float>(), c_new.data_ptr<float>(),
                 h_new.data_ptr<float>(), nullptr, nullptr, x.size(0), cc.size(1));
  return {h_new, c_new};
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct LstmLayerFn : torch::autograd::Function<LstmLayerFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& h0,
                            const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                            const at::Tensor& b_ih, const at::Tensor& b_hh) {
    const int64_t batch = x.size(0), steps = x.size(1), d = w_hh.size(1);
    const at::Tensor xt = x.transpose(0, 1).contiguous();  // (T, B, d)
    // Input projections for the whole segment in one GEMM.
    const at::Tensor xproj =
        at::addmm(b_ih + b_hh, xt.view({steps * batch, x.size(2)}), w_ih.t()).view({steps, batch, 4 * d});
    at::Tensor hs = at::empty({steps + 1, batch, d}, x.options());
    at::Tensor cs = at::empty({steps + 1, batch, d}, x.options());
    at::Tensor acts = at::empty({steps, batch, 4 * d}, x.options());
    at::Tensor tcs = at::empty({steps, batch, d}, x.options());
    hs[0].copy_(h0);
    cs[0].copy_(c0);
    const at::Tensor w_hh_t = w_hh.t();
    at::Tensor gates = at::empty({batch, 4 * d}, x.options());
    for (int64_t t = 0; t < steps; ++t) {
      at::addmm_out(gates, xproj[t], hs[t], w_hh_t);
      lstm_pointwise(gates.data_ptr<float>(), cs[t].data_ptr<float>(), cs[t + 1].data_ptr<float>(),
                     hs[t + 1].data_ptr<float>(), acts[t].data_ptr<float>(), tcs[t].data_ptr<float>(),
                     batch, d);
    }
    ctx->save_for_backward({xt, hs, cs, acts, tcs, w_ih, w_hh});
    return hs.narrow(0, 1, steps).transpose(0, 1);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xt = saved[0], &hs = saved[1], &cs = saved[2], &acts = saved[3],
                     &tcs = saved[4], &w_ih = saved[5], &w_hh = saved[6];
    const int64_t steps = xt.size(0), batch = xt.size(1), d = w_hh.size(1);
    const at::Tensor go = grads[0].transpose(0, 1).contiguous();  // (T, B, d)
    at::Tensor dgates = at::empty({steps, batch, 4 * d}, go.options());
    at::Tensor dh_next = at::zeros({batch, d}, go.options());
    at::Tensor dc = at::zeros({batch, d}, go.options());
    float* dcp = dc.data_ptr<float>();
    for (int64_t t = steps - 1; t >= 0; --t) {
      const float* a = acts[t].data_ptr<float>();
      const float* tc = tcs[t].data_ptr<float>();
      const float* cp = cs[t].data_ptr<float>();
      const float* gh = go[t].data_ptr<float>();
      const float* dhn = dh_next.data_ptr<float>();
      float* dg = dgates[t].data_ptr<float>();
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t j = 0; j < d; ++j) {
          const int64_t k = b * d + j;
          const float ig = a[b * 4 * d + j], fg = a[b * 4 * d + d + j];
          const float gg = a[b * 4 * d + 2 * d + j], og = a[b * 4 * d + 3 * d + j];
          const float dh = gh[k] + dhn[k];
          const float dct = dcp[k] + dh * og * (1.0f - tc[k] * tc[k]);
          float* row = dg + b * 4 * d;
          row[j] = dct * gg * ig * (1.0f - ig);
          row[d + j] = dct * cp[k] * fg * (1.0f - fg);
          row[2 * d + j] = dct * ig * (1.0f - gg * gg);
          row[3 * d + j] = dh * tc[k] * og * (1.0f - og);
          dcp[k] = dct * fg;
        }
      }
      at::mm_out(dh_next, dgates[t], w_hh);
    }
    const at::Tensor dg2 = dgates.view({steps * batch, 4 * d});
    const at::Tensor d_w_hh = at::mm(dg2.t(), hs.narrow(0, 0, steps).reshape({steps * batch, d}));
    const at::Tensor d_w_ih = at::mm(dg2.t(), xt.view({steps * batch, xt.size(2)}));
    const at::Tensor d_b = dg2.sum(0);
    const at::Tensor dx = at::mm(dg2, w_ih).view({steps, batch, xt.size(2)}).transpose(0, 1);
    return {dx, at::Tensor(), at::Tensor(), d_w_ih, d_w_hh, d_b, d_b};
  }
};

}  // namespace

at::Tensor lstm_layer(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                      const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& b_ih,
                      const at::Tensor& b_hh) {
  if (!x.is_cpu()) {
    return std::get<0>(at::lstm(x, {h0.unsqueeze(0), c0.unsqueeze(0)}, {w_ih, w_hh, b_ih, b_hh},
                                /*has_biases=*/true, /*num_layers=*/1, /*dropout=*/0.0,
                                /*train=*/true, /*bidirectional=*/false, /*batch_first=*/true));
  }
  return LstmLayerFn::apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh);
}

}  // namespace shazip::model
