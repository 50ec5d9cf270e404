// Model benchmark: bits per byte and coding speed of the online SHA-RNN.
//
// For each input file and each preset it codes the file through the real
// driver (predictor, mixing stage, range coder) and prints the SHA-RNN's own
// cross-entropy (float probabilities), the code length under the coder's
// probabilities (after mixing), the coded size in bits per byte, KB/s, and
// the model's arithmetic rate (ModelConfig::flops_per_byte()) over the run and
// in the step path, with its share of the GPU's FP32 peak on --device cuda.
// Hyperparameters can be overridden for tuning.
//
// Usage: bench_model [options] FILE...
//   -p LIST      presets, e.g. 1,3,5 (default: the default preset)
//   -n BYTES     code only the first BYTES of each file
//   -t THREADS   intra-op threads (default 1)
//   --dim D --layers L --attn A --mem M --seg T --lr LR --decay X --streams B
//                  (the model as shazip codes the input, model::model_for_input:
//                  --mix and --seg as given, --groups at most the streams)
//   --beta1 X --beta2 X --clip X --eps X --boom F --mix 0|1|2|3 --lag 0|1 --flat 0|1
//   --kernels 0|1 --train-kernels 0|1 --block-norm 0|1 --stream-contexts 0|1 --class-contexts 0|1
//   --own-rates 0|1 --one-sided 0|1 --nibble-groups 0|1 --text-contexts 0|1 --table-shapes 0|1
//   --long-matches 0|1 --scope-context 0|1 --more-runs 0|1 --word-indirect 0|1
//   --mixer-selectors 0|1 --layer2-inputs 0|1 --shape-contexts 0|1
//   --cuda-kernels 0|1 --cuda-train-kernels 0|1   (on CUDA: LibTorch's step or
//                   training instead of shazip's kernels, to compare)
//   --tiled 0|1     on CUDA: shazip's kernels' products tiled (default) or
//                   plain; the same output, to compare their speed
//   --async 0|1     training steps on a thread of their own (default 1); on
//                   CUDA, 0 makes "train s" the training step's GPU time
//                   (with 1 the GPU's training time shows in "pred s", whose
//                   table copies wait for it)
//   --kernel-predictor 0|1  format 7 on, CPU: model::KernelPredictor (default)
//                   or the LibTorch-held model on the same kernels; the same
//                   output, to compare their speed
//   --lookahead 0|1 the model runs ahead of the coder on its own thread
//                   (default: lookahead_pays()); neither changes the output
//   --min-stream BYTES  smallest stream (default kMinStreamBytes)
//   --device cpu|cuda   where the model runs (default cpu)
//   --dump-nn OUT  also write the SHA-RNN's bit probabilities for the first
//                  file and preset to OUT, for benchmarks/bench_mix
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model/context_mix.h"
#include "model/predictor.h"
#include "src/bench.h"
#include "src/driver.h"
#include "src/errors.h"
#include "src/file_io.h"

using namespace shazip;

namespace {

std::vector<uint8_t> load(const std::string& path) {
  try {
    return read_file(path);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_model: %s: %s\n", path.c_str(), e.what());
    std::exit(1);
  }
}

// Runs the SHA-RNN alone over data as the driver would and writes, per byte in
// file order, the 8 12-bit probabilities of its bits (uint16 little-endian).
void dump_nn(const std::vector<uint8_t>& data, const CodingParams& params, const std::string& out_path) {
  const uint64_t n = data.size();
  const int streams = params.streams;
  const uint64_t len = stream_length(n, streams);
  model::Predictor predictor(params.model, streams, params.runtime);
  predictor.expect_positions(static_cast<int64_t>(len));
  std::vector<uint32_t> cdfs(static_cast<size_t>(streams) * coder::kCdfSize);
  std::vector<uint8_t> bytes(streams, 0), out(n * 16);
  for (uint64_t i = 0; i < len; ++i) {
    predictor.predict(cdfs.data());
    for (int b = 0; b < streams; ++b) {
      const uint64_t at = b * len + i;
      bytes[b] = at < n ? data[at] : 0;
      if (at >= n) continue;
      int c0 = 1;
      for (int k = 0; k < 8; ++k) {
        const int p = model::nn_bit_p12(cdfs.data() + static_cast<size_t>(b) * coder::kCdfSize, c0);
        out[(at * 8 + k) * 2] = static_cast<uint8_t>(p);
        out[(at * 8 + k) * 2 + 1] = static_cast<uint8_t>(p >> 8);
        c0 = c0 << 1 | ((data[at] >> (7 - k)) & 1);
      }
    }
    predictor.observe(bytes.data());
  }
  std::ofstream f(out_path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (!f) {
    std::fprintf(stderr, "bench_model: cannot write %s\n", out_path.c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> presets{model::kDefaultPreset};
  uint64_t limit = 0;
  int threads = 1;
  std::vector<std::pair<std::string, std::string>> overrides;
  std::vector<std::string> files;
  std::string dump_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_model: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-p") {
      presets.clear();
      std::stringstream ss(next());
      for (std::string x; std::getline(ss, x, ',');) presets.push_back(std::stoi(x));
    } else if (a == "-n") {
      limit = std::stoull(next());
    } else if (a == "-t") {
      threads = std::stoi(next());
    } else if (a == "--dump-nn") {
      dump_path = next();
    } else if (a.rfind("--", 0) == 0) {
      overrides.emplace_back(a.substr(2), next());
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: bench_model [-p 1,3] [-n BYTES] [-t THREADS] [--dim D ...] FILE...\n");
    return 2;
  }
  std::printf("%-24s %6s %-44s %7s %9s %11s %9s %9s %8s %7s %7s %8s %8s %7s\n", "file", "preset", "model", "streams",
              "bytes", "SHA-RNN bpc", "model bpc", "coded bpc", "KB/s", "pred s", "train s", "GFLOP/s", "step",
              "% peak");
  for (const auto& path : files) {
    std::vector<uint8_t> data = load(path);
    if (limit && data.size() > limit) data.resize(limit);
    for (int level : presets) {
      model::Preset p = model::preset(level);
      int max_streams = p.streams;
      bool async_train = true;
      bool tiled = true;
      bool kernel_predictor = true;
      int lookahead = -1;  // -1: lookahead_pays()
      bool seg_given = false, mix_given = false;  // else as shazip picks them for the input
      model::DeviceKind device = model::DeviceKind::kCpu;
      uint64_t min_stream = kMinStreamBytes;
      for (const auto& [k, v] : overrides) {
        if (k == "dim") p.model.dim = std::stoi(v);
        else if (k == "layers") p.model.layers = std::stoi(v);
        else if (k == "attn") p.model.attn_layer = std::stoi(v);
        else if (k == "mem") p.model.mem_len = std::stoi(v);
        else if (k == "seg") {
          p.model.seg_len = std::stoi(v);
          seg_given = true;
        }
        else if (k == "lr") p.model.lr = std::stof(v);
        else if (k == "decay") p.model.lr_decay = std::stof(v);
        else if (k == "beta1") p.model.beta1 = std::stof(v);
        else if (k == "beta2") p.model.beta2 = std::stof(v);
        else if (k == "clip") p.model.clip = std::stof(v);
        else if (k == "eps") p.model.adam_eps = std::stof(v);
        else if (k == "boom") p.model.boom_factor = std::stoi(v);
        else if (k == "mix") {
          p.model.mix = std::stoi(v);
          mix_given = true;
        }
        else if (k == "lag") p.model.train_lag = std::stoi(v);
        else if (k == "flat") p.model.flat_train = std::stoi(v);
        else if (k == "kernels") p.model.step_kernels = std::stoi(v);
        else if (k == "train-kernels") p.model.train_kernels = std::stoi(v);
        else if (k == "cuda-kernels") p.model.cuda_step_kernels = std::stoi(v);
        else if (k == "cuda-train-kernels") p.model.cuda_train_kernels = std::stoi(v);
        else if (k == "block-norm") p.model.block_norm = std::stoi(v);
        else if (k == "stream-contexts") p.model.stream_contexts = std::stoi(v);
        else if (k == "class-contexts") p.model.class_contexts = std::stoi(v);
        else if (k == "own-rates") p.model.own_rates = std::stoi(v);
        else if (k == "one-sided") p.model.one_sided = std::stoi(v);
        else if (k == "nibble-groups") p.model.nibble_groups = std::stoi(v);
        else if (k == "text-contexts") p.model.text_contexts = std::stoi(v);
        else if (k == "table-shapes") p.model.table_shapes = std::stoi(v);
        else if (k == "long-matches") p.model.long_matches = std::stoi(v);
        else if (k == "scope-context") p.model.scope_context = std::stoi(v);
        else if (k == "more-runs") p.model.more_runs = std::stoi(v);
        else if (k == "word-indirect") p.model.word_indirect = std::stoi(v);
        else if (k == "mixer-selectors") p.model.mixer_selectors = std::stoi(v);
        else if (k == "layer2-inputs") p.model.layer2_inputs = std::stoi(v);
        else if (k == "shape-contexts") p.model.shape_contexts = std::stoi(v);
        else if (k == "groups") p.model.train_groups = std::stoi(v);
        else if (k == "async") async_train = std::stoi(v) != 0;
        else if (k == "tiled") tiled = std::stoi(v) != 0;
        else if (k == "kernel-predictor") kernel_predictor = std::stoi(v) != 0;
        else if (k == "lookahead") lookahead = std::stoi(v) != 0 ? 1 : 0;
        else if (k == "min-stream") min_stream = std::stoull(v);
        else if (k == "streams") max_streams = std::stoi(v);
        else if (k == "device") {
          if (v != "cpu" && v != "cuda") {
            std::fprintf(stderr, "bench_model: --device must be cpu or cuda\n");
            return 2;
          }
          device = v == "cuda" ? model::DeviceKind::kCuda : model::DeviceKind::kCpu;
          if (device == model::DeviceKind::kCuda && !model::backend_info().cuda_available) {
            std::fprintf(stderr, "bench_model: --device cuda: no CUDA device or this build has no CUDA\n");
            return 2;
          }
        }
        else {
          std::fprintf(stderr, "bench_model: unknown option --%s\n", k.c_str());
          return 2;
        }
      }
      const std::string err = p.model.validate();
      if (!err.empty()) {
        std::fprintf(stderr, "bench_model: %s\n", err.c_str());
        return 2;
      }
      CodingParams params;
      params.streams = choose_streams(data.size(), max_streams, min_stream);
      params.model = model::model_for_input(p.model, params.streams, data.size());
      if (seg_given) params.model.seg_len = p.model.seg_len;
      if (mix_given) params.model.mix = p.model.mix;
      params.runtime.threads = threads;
      params.runtime.async_train = async_train;
      params.runtime.cuda_tiled_products = tiled;
      params.runtime.kernel_predictor = kernel_predictor;
      params.runtime.device = device;
      params.lookahead = lookahead < 0 ? lookahead_pays(params) : lookahead == 1;
      if (!dump_path.empty()) {
        dump_nn(data, params, dump_path);
        std::printf("wrote %s\n", dump_path.c_str());
        return 0;
      }
      coder::NullSink sink;
      const CodingStats s = encode_neural(data.data(), data.size(), params, sink);
      const double n = static_cast<double>(data.size());
      std::string name = path.substr(path.find_last_of('/') + 1);
      // GFLOP/s of the model's arithmetic over the whole run and in the step
      // path alone; the step's share of the GPU's FP32 peak on CUDA.
      const ModelRates rates = model_rates(p.model, data.size(), s.seconds, s.predict_seconds, device);
      char share[32] = "-";
      if (rates.peak_gflops > 0) std::snprintf(share, sizeof share, "%.3g", rates.peak_percent());
      std::printf("%-24s %6d %-44s %7d %9zu %11.4f %9.4f %9.4f %8.2f %7.1f %7.1f %8.2f %8.2f %7s\n", name.c_str(),
                  level, params.model.describe().c_str(), params.streams, data.size(), s.nn_bits / n, s.model_bits / n,
                  8.0 * s.coded_bytes / n, n / 1024.0 / s.seconds, s.predict_seconds, s.train_seconds,
                  rates.model_gflops, rates.step_gflops, share);
      std::fflush(stdout);
    }
  }
  return 0;
}
