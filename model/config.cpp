#include "model/config.h"

#include <algorithm>
#include <sstream>
#include <string>

#include "coder/assert.h"
#include "model/context_mix.h"

namespace shazip::model {

int64_t ModelConfig::param_count() const {
  const int64_t d = dim;
  const int64_t f = static_cast<int64_t>(boom_factor) * d;
  // Tied embedding/decoder (256 x d) and the decoder's bias.
  int64_t n = 256 * d + 256;
  // Per block: LayerNorm (2d), LSTM (two 4d x d matrices, two 4d biases),
  // the Boom's LayerNorms (4d) and its d -> f linear (f*d + f).
  n += layers * (2 * d + 8 * d * d + 8 * d + 4 * d + f * d + f);
  // The attention block: LayerNorms for memory and query side (4d), query
  // linear (d*d + d) and its LayerNorm (2d), gates qs, ks, vs (3d), and the
  // overparameterised value gate d -> 2d (2d*d + 2d).
  if (attn_layer >= 0) n += 4 * d + d * d + d + 2 * d + 3 * d + 2 * d * d + 2 * d;
  return n;
}

ModelConfig::Flops ModelConfig::flops_per_byte() const {
  const double d = dim;
  const double f = static_cast<double>(boom_factor) * d;
  // Per position: each block's LSTM (two 4d x d products) and Boom (d -> f),
  // the tied decoder (d -> 256).
  double dense = layers * (2 * 8 * d * d + 2 * f * d) + 2 * 256 * d;
  // The attention's query (d x d), and its scores and mix over the keys: the
  // step path sees the memory (mem_len + 1 slots, the position's own among
  // them); a training segment sees the memory and the whole segment (the
  // causal mask is applied after the product).
  double step_keys = 0, seg_keys = 0;
  if (attn_layer >= 0) {
    dense += 2 * d * d;
    step_keys = mem_len + 1.0;
    seg_keys = mem_len + 1.0 + seg_len;
  }
  Flops fl;
  fl.predict = dense + 4 * step_keys * d;
  fl.train = 3 * (dense + 4 * seg_keys * d);
  return fl;
}

std::string ModelConfig::describe() const {
  std::ostringstream s;
  s << "d=" << dim << " L=" << layers << " attn=" << attn_layer << " M=" << mem_len
    << " T=" << seg_len << " lr=" << lr;
  if (mix) s << " mix=" << mix;
  if (!train_lag) s << " lag=0";
  if (!flat_train) s << " flat=0";
  if (!step_kernels) s << " kernels=0";
  if (!train_kernels) s << " train-kernels=0";
  if (train_groups != 1) s << " G=" << train_groups;
  if (mix >= 2 && !stream_contexts) s << " stream-contexts=0";
  if (mix >= 2 && !class_contexts) s << " class-contexts=0";
  if (mix >= 2 && !own_rates) s << " own-rates=0";
  if (mix >= 2 && !one_sided) s << " one-sided=0";
  if (mix >= 2 && !nibble_groups) s << " nibble-groups=0";
  if (mix >= 2 && !text_contexts) s << " text-contexts=0";
  if (mix >= 2 && !table_shapes) s << " table-shapes=0";
  if (mix >= 2 && !long_matches) s << " long-matches=0";
  if (mix >= 2 && text_contexts && !scope_context) s << " scope-context=0";
  if (mix >= 2 && !more_runs) s << " more-runs=0";
  if (mix >= 2 && !word_indirect) s << " word-indirect=0";
  if (mix >= 2 && !mixer_selectors) s << " mixer-selectors=0";
  if (mix >= 2 && !layer2_inputs) s << " layer2-inputs=0";
  if (mix >= 2 && !shape_contexts) s << " shape-contexts=0";
  return s.str();
}

std::string ModelConfig::validate() const {
  if (dim < 8 || dim > 8192 || dim % 8 != 0) return "dim must be a multiple of 8 in 8..8192";
  if (layers < 1 || layers > 64) return "layers must be in 1..64";
  if (attn_layer < -1 || attn_layer >= layers) return "attention layer out of range";
  if (boom_factor < 1 || boom_factor > 16) return "boom factor must be in 1..16";
  if (mem_len < 0 || mem_len > 65536) return "memory length must be in 0..65536";
  if (seg_len < 1 || seg_len > 4096) return "segment length must be in 1..4096";
  if (!(lr > 0 && lr < 1)) return "learning rate must be in (0, 1)";
  if (!(lr_decay >= 0 && lr_decay < 1)) return "learning-rate decay must be in [0, 1)";
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) return "Adam betas must be in [0, 1)";
  if (!(adam_eps > 0 && adam_eps < 1)) return "Adam epsilon must be in (0, 1)";
  if (!(clip > 0)) return "gradient clip must be positive";
  if (train_lag < 0 || train_lag > 1) return "training lag must be 0 or 1";
  if (flat_train < 0 || flat_train > 1) return "flat training must be 0 or 1";
  if (step_kernels < 0 || step_kernels > 1) return "step kernels must be 0 or 1";
  if (train_kernels < 0 || train_kernels > 1) return "training kernels must be 0 or 1";
  if (train_kernels && !(flat_train && step_kernels)) return "training kernels need flat training and step kernels";
  if (cuda_step_kernels < 0 || cuda_step_kernels > 1) return "CUDA step kernels must be 0 or 1";
  if (cuda_train_kernels < 0 || cuda_train_kernels > 1) return "CUDA training kernels must be 0 or 1";
  if (block_norm < 0 || block_norm > 1) return "block norm must be 0 or 1";
  if (stream_contexts < 0 || stream_contexts > 1) return "stream contexts must be 0 or 1";
  if (class_contexts < 0 || class_contexts > 1) return "class contexts must be 0 or 1";
  if (own_rates < 0 || own_rates > 1) return "own rates must be 0 or 1";
  if (one_sided < 0 || one_sided > 1) return "one-sided inputs must be 0 or 1";
  if (nibble_groups < 0 || nibble_groups > 1) return "nibble groups must be 0 or 1";
  if (text_contexts < 0 || text_contexts > 1) return "text contexts must be 0 or 1";
  if (table_shapes < 0 || table_shapes > 1) return "table shapes must be 0 or 1";
  if (long_matches < 0 || long_matches > 1) return "long matches must be 0 or 1";
  if (scope_context < 0 || scope_context > 1) return "the scope context must be 0 or 1";
  if (more_runs < 0 || more_runs > 1) return "more run maps must be 0 or 1";
  if (word_indirect < 0 || word_indirect > 1) return "the word's indirect context must be 0 or 1";
  if (mixer_selectors < 0 || mixer_selectors > 1) return "the mixer selectors must be 0 or 1";
  if (layer2_inputs < 0 || layer2_inputs > 1) return "the layer-2 inputs must be 0 or 1";
  if (shape_contexts < 0 || shape_contexts > 1) return "the shape contexts must be 0 or 1";

  if (train_groups < 1 || train_groups > 256) return "training groups must be in 1..256";
  if (mix < 0 || mix > kMaxMixLevel) return "mix level must be 0 to " + std::to_string(kMaxMixLevel);
  return "";
}

Preset preset(int level) {
  SHAZIP_ASSERT(level >= kMinPreset && level <= kMaxPreset);
  // Tuned on enwik6 (benchmarks/RESULTS.md, "Model search"): on CPU-sized
  // inputs, learning speed is what counts, so short segments (T = 8, more Adam
  // steps per byte), 16 streams and one wide block beat deeper models; clipping
  // at norm 5 rather than 1 lets the early steps move, and a slow lr decay
  // (1 / (1 + 2e-4 step)) helps the later part of the file. Presets 6..9 are for a
  // GPU, where more streams fill the device.
  //
  // Mix level 3 (format 11) for presets 3-9, on inputs above 1 MiB: on all of
  // dickens it takes preset 6 to 1.600 bpc, from level 2's 1.618 (-1.1%) and
  // level 1's 1.688, mostly by its larger tables (the stage takes up to 1.9
  // GB, for inputs of 4 MB and more; level 2 0.6 GB); with presets 2, 3 and 5's
  // SHA-RNNs it gains 0.45-0.66% on 2.5-4 MB texts (preset 2's: 1.4% on
  // dickens). Inputs of 1 MiB or less get level 2 (mix_for_input): its tables
  // are as large there, and level 3's finer rates and extra mixer cost
  // 0.1-0.8% on most of them (benchmarks/RESULTS.md, "Mix level 3" and "Mix
  // level by input size").
  // Presets 1 and 2 keep level 2 and its 0.6 GB whatever the input.
  // Every preset has the stream contexts (ModelConfig::stream_contexts, format
  // 12): 0.2-4.5% smaller archives of inputs with two streams or more, for
  // four more tables and larger indirect ones (the stage at 10 MB: level 2
  // 0.67 GB, level 3 2.2 GB) and 8% of its speed (RESULTS.md, "Stream
  // contexts").
  // The context models run on the host, one core, at about 120 KB/s on the
  // 2-core VM (huge pages pay for the larger tables): the encoder overlaps
  // them with the model, the decoder cannot, so they cap a GPU's compression
  // near that speed and add to its decompression time.
  // The text contexts (format 18) are in presets 1-5 only: 0.4-0.6% smaller,
  // but at level 3 they take the stage from 110-118 KB/s to 91-100 on 4 MB
  // of enwik8 (RESULTS.md, "Text contexts"), under the 100 KB/s that the GPU
  // presets aim at, whose size target preset 6 already meets (1.547 bpc on
  // dickens). The header flag records the choice, so it can change with a
  // GPU host's measurement, without a new format.
  //
  // Training groups (format 8): the GPU presets' many streams would cut the
  // Adam steps per byte (on dickens, preset 2's SHA-RNN with 256 streams and
  // T = 32 instead of 16 and T = 8: +18% bits); G steps per segment, each on
  // B / G streams, keep them (+1.5% with G = 16), at the price of G smaller
  // training passes one after the other (benchmarks/RESULTS.md, "Training
  // groups"; what that costs on a GPU is unmeasured).
  struct Row { int dim, layers, attn, mem, streams, seg; float lr; int mix, groups; };
  static constexpr Row kRows[] = {
      {64, 1, -1, 0, 16, 8, 3e-3f, 2, 1},        // 1: no attention, fastest
      {96, 1, 0, 64, 16, 8, 3e-3f, 2, 1},        // 2: default
      {128, 1, 0, 128, 16, 8, 3e-3f, 3, 1},      // 3
      {192, 1, 0, 256, 16, 8, 3e-3f, 3, 1},      // 4
      {256, 2, 0, 256, 16, 8, 2e-3f, 3, 1},      // 5
      {384, 2, 0, 512, 64, 16, 1e-3f, 3, 4},     // 6: GPU from here on
      {512, 3, 1, 1024, 128, 16, 5e-4f, 3, 8},   // 7
      {768, 4, 2, 2048, 256, 32, 4e-4f, 3, 8},   // 8
      {1024, 4, 2, 4096, 512, 32, 3e-4f, 3, 16}, // 9
  };
  const Row& r = kRows[level - 1];
  Preset p;
  p.model.dim = r.dim;
  p.model.layers = r.layers;
  p.model.attn_layer = r.attn;
  p.model.mem_len = r.mem;
  p.model.seg_len = r.seg;
  p.model.lr = r.lr;
  p.model.lr_decay = 2e-4f;  // lr halves after 5000 steps (tuned on enwik6)
  p.model.mix = r.mix;
  p.model.train_groups = r.groups;
  p.model.text_contexts = level <= 5 ? 1 : 0;
  p.streams = r.streams;
  return p;
}

int mix_for_input(int mix, uint64_t n) { return mix == 3 && n <= kMixLevel3MinBytes ? 2 : mix; }

int seg_for_input(int seg, int streams, uint64_t n) {
  return streams <= kFewStreams && n > kFewStreamsMinBytes ? std::max(seg, kFewStreamsSegLen) : seg;
}

ModelConfig model_for_input(ModelConfig m, int streams, uint64_t n) {
  m.train_groups = std::min(m.train_groups, streams);
  m.mix = mix_for_input(m.mix, n);
  m.seg_len = seg_for_input(m.seg_len, streams, n);
  return m;
}

MixTuning mix_tuning(const ModelConfig& m) {
  MixTuning t = MixTuning::for_level(m.mix);
  t.stream_contexts = m.stream_contexts != 0;
  t.class_contexts = m.class_contexts != 0;
  t.own_rates = m.own_rates != 0;
  t.one_sided = m.one_sided != 0;
  set_nibble_groups(t, m.nibble_groups != 0);
  t.text_contexts = m.text_contexts != 0;
  t.table_shapes = m.table_shapes != 0;
  t.long_matches = m.long_matches != 0;
  t.scope_context = m.scope_context != 0;
  t.more_runs = m.more_runs != 0;
  t.word_indirect = m.word_indirect != 0;
  t.mixer_selectors = m.mixer_selectors != 0;
  t.layer2_inputs = m.layer2_inputs != 0;
  t.shape_contexts = m.shape_contexts != 0;
  return t;
}

}  // namespace shazip::model
