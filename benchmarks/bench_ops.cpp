// Operator count: how many LibTorch operators that do work (kernel launches
// on a GPU) the model's LibTorch paths run per coded position, per preset.
// On a GPU each costs a launch of a few microseconds whatever its size, so
// for the GPU presets' one-position steps the count, not the arithmetic, can
// set the speed. Counted on the CPU by LibTorch's operator callbacks, leaves
// only (an operator that calls others counts through them), views and
// allocations left out:
//   step      one predict() on LibTorch's operators (step_kernels 0), what a
//             CUDA archive before format 9 runs per position, with the
//             softmax; and format 9's CUDA step kernels, their products
//             plain and tiled, plus 1 launch for the tables
//   segment   the observe() that ends a segment: the training step on
//             LibTorch's autograd (train_kernels 0, what CUDA runs before
//             format 10), its G groups, and the weights' hand-over to the
//             step path; and the same on format 10's CUDA training kernels,
//             their products plain and tiled
// The CUDA kernels' launches, device copies and memsets are counted by
// running their own sources in model/cuda/simt.h's host emulation (the
// count depends on the layers, the attention and T, not on d or B, so a
// tiny model of the preset's shape runs).
// The CPU's LSTM layer runs a GEMM per position forward and backward, as a
// GPU's LSTM does; its pointwise cell is one of shazip's loops here, a kernel
// of cuDNN's there.
//
// Usage: bench_ops [-p LIST]   presets (default 6,7,8,9)
#include <torch/torch.h>

#include <ATen/record_function.h>

#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/predictor.h"
#include "model/sha_rnn.h"

// The CUDA kernels compiled for the host (model/cuda/simt.h), to count what
// they launch.
#define SHAZIP_SIMT_EMULATE
#define SHAZIP_CUDA_NS cuda_simt
#include "model/cuda/step_kernels.cu"
#include "model/cuda/train_kernels.cu"

using namespace shazip::model;

namespace {

// Operators that only allocate, view or describe memory.
const std::set<std::string>& no_work() {
  static const std::set<std::string> names = {
      "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::view", "aten::reshape", "aten::_reshape_alias",
      "aten::narrow", "aten::slice", "aten::select", "aten::as_strided", "aten::alias", "aten::t", "aten::transpose",
      "aten::unsqueeze", "aten::squeeze", "aten::expand", "aten::chunk", "aten::split", "aten::unbind",
      "aten::detach", "detach", "aten::detach_", "aten::contiguous", "aten::to", "aten::lift_fresh",
      "aten::resize_", "aten::set_", "aten::_has_compatible_shallow_copy_type", "aten::is_nonzero",
      "aten::result_type", "aten::numpy_T", "aten::permute", "aten::expand_as", "aten::view_as"};
  return names;
}

thread_local std::vector<bool> t_has_child;  // per open operator: whether it called another
thread_local bool t_counting = false;
thread_local long t_count = 0;

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction&) {
  if (!t_has_child.empty()) t_has_child.back() = true;
  t_has_child.push_back(false);
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  const bool parent = t_has_child.back();
  t_has_child.pop_back();
  if (t_counting && !parent && !no_work().count(fn.name())) ++t_count;
}

template <class F>
long count(F&& f) {
  t_count = 0;
  t_counting = true;
  f();
  t_counting = false;
  return t_count;
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) v.push_back(std::stoi(item));
  return v;
}

// A tiny model of the preset's shape: the CUDA kernels' operation counts
// depend on nothing else.
ModelConfig tiny(const ModelConfig& preset_model) {
  ModelConfig c = preset_model;
  c.dim = 8;
  c.mem_len = 4;
  return c;
}

// Device operations of one position of the format-9 CUDA step kernels,
// without the tables' kernel.
long cuda_step_operations(const ModelConfig& preset_model) {
  torch::NoGradGuard no_grad;
  const ModelConfig c = tiny(preset_model);
  ShaRnn net(c);
  const int64_t batch = 1;
  ShaRnnState st = net->initial_state(batch, torch::kCPU);
  const cuda_simt::StepShape shape = net->step_shape(st);
  const cuda_simt::StepState state = net->step_state(st);
  std::vector<float> gates(2 * static_cast<size_t>(c.dim)), scratch(cuda_simt::step_scratch_floats(shape));
  std::vector<float> logits(256 * batch);
  const std::vector<int64_t> bytes(batch, 'e');
  const long before = shazip::simt::emulated_operations();
  if (cuda_simt::step_device(shape, net->weights(), gates.data(), gates.data() + c.dim, state, 0,
                             c.attn_layer >= 0 ? 1 : 0, bytes.data(), scratch.data(), logits.data(),
                             nullptr) != cudaSuccess) {
    return -1;
  }
  return shazip::simt::emulated_operations() - before;
}

// Device operations of one format-10 training group: the pass and the Adam
// step, at the preset's layers, attention and T.
long cuda_training_operations(const ModelConfig& preset_model) {
  torch::NoGradGuard no_grad;
  const ModelConfig c = tiny(preset_model);
  ShaRnn net(c);
  for (auto& p : net->parameters()) p.mutable_grad() = torch::zeros_like(p);
  const int64_t batch = 1;
  const ShaRnnState st = net->initial_state(batch, torch::kCPU);
  const train::Shape shape = net->train_shape(batch);
  const train::Start start = net->train_start(st);
  std::vector<int64_t> bytes(static_cast<size_t>(batch * (c.seg_len + 1)), 'e');
  const int64_t n = c.param_count();
  std::vector<float> w(n), g(n), m(n), v(n), scratch(cuda_simt::adam_scratch_floats(n));
  cuda_simt::TrainPass pass;
  const long before = shazip::simt::emulated_operations();
  if (pass.run(shape, net->weights(), start, bytes.data(), net->gradients(), nullptr) != cudaSuccess) return -1;
  const train::AdamConfig adam{1e-3, 0, 0.9999, 1e-6, 5, true};
  cuda_simt::adam_step_device(adam, 0, 0.9999, n, w.data(), g.data(), m.data(), v.data(), scratch.data(), nullptr);
  return shazip::simt::emulated_operations() - before;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> presets = {6, 7, 8, 9};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
      presets = parse_list(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_ops [-p LIST]\n");
      return 2;
    }
  }
  const auto handle = at::addGlobalCallback(at::RecordFunctionCallback(on_start, on_end));
  std::printf("| preset | B | T | G | step: operators per position (LibTorch) "
              "| step: launches (format 9 kernels, plain / tiled) | segment: operators (training, LibTorch) "
              "| segment: operations (format 10 kernels, plain / tiled) "
              "| operators per coded byte: format 8 / 9 plain / 9 tiled / 10 plain / 10 tiled |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const int level : presets) {
    const Preset p = preset(level);
    ModelConfig c = p.model;
    c.step_kernels = 0;
    c.train_kernels = 0;
    c.cuda_step_kernels = 0;
    // The count does not depend on the streams: as few as the groups need.
    const int streams = c.train_groups;
    RuntimeOptions rt;
    rt.async_train = false;  // the training step inline, on this thread
    Predictor model(c, streams, rt);
    std::vector<uint32_t> cdfs(static_cast<size_t>(streams) * 257);
    std::vector<uint8_t> bytes(static_cast<size_t>(streams), 'e');
    long step = 0, segment = 0;
    // Two segments: at lag 1 the first one's end trains, the second's also
    // hands the weights over; count the second.
    for (int pos = 0; pos < 2 * c.seg_len; ++pos) {
      step = count([&] { model.predict(cdfs.data()); });
      const long observed = count([&] { model.observe(bytes.data()); });
      if (pos == 2 * c.seg_len - 1) segment = observed;
    }
    // The CUDA kernels, their products plain [0] and tiled [1]: the step and
    // the tables' kernel; G training groups, then the hand-over: one copy of
    // the weights and the attention gates' two kernels.
    long kernels[2], group[2], segment_own[2];
    for (int tiled = 0; tiled < 2; ++tiled) {
      cuda_simt::set_tiled_products(tiled == 1);
      kernels[tiled] = cuda_step_operations(p.model) + 1;
      group[tiled] = cuda_training_operations(p.model);
      segment_own[tiled] = c.train_groups * group[tiled] + 1 + (c.attn_layer >= 0 ? 2 : 0);
    }
    const double positions = static_cast<double>(c.seg_len) * p.streams;
    auto per_byte = [&](long step_ops, long segment_ops) {
      return (static_cast<double>(step_ops) * c.seg_len + static_cast<double>(segment_ops)) / positions;
    };
    std::printf("| %d | %d | %d | %d | %ld | %ld / %ld | %ld | %ld / %ld (%d x %ld / %ld, + %ld) "
                "| %.2f / %.2f / %.2f / %.2f / %.2f |\n",
                level, p.streams, c.seg_len, c.train_groups, step, kernels[0], kernels[1], segment, segment_own[0],
                segment_own[1], c.train_groups, group[0], group[1], segment_own[0] - c.train_groups * group[0],
                per_byte(step, segment), per_byte(kernels[0], segment), per_byte(kernels[1], segment),
                per_byte(kernels[0], segment_own[0]), per_byte(kernels[1], segment_own[1]));
    std::fflush(stdout);
  }
  at::removeCallback(handle);
  return 0;
}
