// Fused LSTM layer; see lstm.h.
#include "model/lstm.h"

#include <torch/autograd.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "model/step_kernels.h"

namespace shazip::model {

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
  step::lstm_pointwise(gates.data_ptr<float>(), cc.data_ptr<float>(), c_new.data_ptr<float>(),
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
      step::lstm_pointwise(gates.data_ptr<float>(), cs[t].data_ptr<float>(), cs[t + 1].data_ptr<float>(),
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
