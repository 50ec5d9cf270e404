// Model and online-learning hyperparameters. Torch-free, so the container and
// the CLI can read, write and print them without pulling in LibTorch.
//
// Every field here changes the model's arithmetic, so every field is stored in
// the archive header (docs/FORMAT.md) and the decoder rebuilds the exact model
// from it.
#pragma once

#include <cstdint>
#include <string>

#include "model/context_mix.h"

namespace shazip::model {

struct ModelConfig {
  // --- architecture (Merity 2019, "Single Headed Attention RNN") ---
  int dim = 128;            // d: embedding, LSTM hidden and attention width
  int layers = 2;           // L: blocks of LayerNorm -> LSTM -> [attention] -> Boom
  int attn_layer = 0;       // index of the one block with attention; -1 for none
                            // (the reference puts it in the second-to-last block)
  int boom_factor = 4;      // Boom width = boom_factor * dim, summed back in chunks
  int mem_len = 256;        // M: past positions per stream the attention sees

  // --- online learning ---
  int seg_len = 8;          // T: positions coded between two training steps
  float lr = 3e-3f;         // Adam learning rate at the start
  float lr_decay = 0.0f;    // lr(step) = lr / (1 + lr_decay * step)
  float beta1 = 0.0f;       // Adam first-moment decay (nncp uses 0)
  float beta2 = 0.9999f;    // Adam second-moment decay (nncp uses 0.9999)
  float adam_eps = 1e-6f;   // Adam epsilon
  float clip = 5.0f;        // gradient clipping: maximum global L2 norm

  int train_lag = 1;        // 0: segment k + 1 is predicted with the weights trained on
                            //    segments 0..k (formats 1-3); 1: with those trained on
                            //    0..k-1, so that the training step on segment k runs
                            //    beside the coding of segment k + 1 (format v4)

  int flat_train = 1;       // 0: LibTorch's Adam and gradient clipping, tensor by tensor
                            //    (formats 1-4); 1: both over all parameters at once, kept
                            //    in one buffer (format v5; FlatAdam in model/torch_predictor.cpp, KernelPredictor)

  int step_kernels = 1;     // 0: the step path on LibTorch's operators and the BLAS
                            //    (formats 1-5); 1: on shazip's own CPU kernels, every sum
                            //    in a fixed order (format v6; model/step_kernels.h). Only
                            //    the CPU reads it; on CUDA, cuda_step_kernels decides.

  int cuda_step_kernels = 1;  // on CUDA: 0, the step path on LibTorch's operators and cuBLAS
                              //    (formats 1-8); 1, on shazip's own CUDA kernels, which
                              //    compute the CPU's step kernels' bits (format v9;
                              //    model/cuda/step_kernels.h). Only CUDA reads it.

  int train_kernels = 1;    // 0: the training step on LibTorch's autograd, operators and
                            //    the BLAS (formats 1-6); 1: on shazip's own CPU kernels,
                            //    forward, backward and Adam (format v7;
                            //    model/train_kernels.h), so that a CPU archive depends on
                            //    neither the BLAS nor ATen. Needs flat_train and
                            //    step_kernels; only the CPU reads it.

  int cuda_train_kernels = 1;  // on CUDA: 0, the training step on LibTorch's autograd and
                               //    cuBLAS (formats 1-9); 1, on shazip's own CUDA kernels, which
                               //    compute the CPU's training kernels' bits (format v10;
                               //    model/cuda/train_kernels.h), so that with cuda_step_kernels
                               //    a GPU archive decodes on the CPU and the reverse. Only CUDA
                               //    reads it, and only with flat_train and block_norm
                               //    (cuda_training_kernels()).

  int block_norm = 1;       // the clip's gradient norm: 0, one dot8 over every parameter
                            //    (formats 7-9); 1, a dot8 per block of 4096 floats, then the
                            //    sum8 of the blocks (format v10; train::grad_norm), which a GPU
                            //    spreads over its threads. Read by the training kernels.

  int train_groups = 1;     // G: each training step is G Adam steps, one after the other,
                            //    each on a B / G share of the streams' segments (format
                            //    v8), so that many streams (a GPU's batch) do not cut the
                            //    number of optimizer steps per byte; 1 before format 8

  uint64_t seed = 0x5a5a2019;  // seeds the initial weights

  // --- coding ---
  int mix = 2;              // 0: the SHA-RNN's byte table codes each byte (format v1);
                            // 1-3: bytes are coded bit by bit, the SHA-RNN mixed with
                            //    context models (model/context_mix.h; mix level 1 since
                            //    format v2, level 2 since v3, level 3 since v11)
  int stream_contexts = 1;  // mix levels 2 and 3 with more than one stream: 0, every
                            //    context model shared by all streams (formats up to 11);
                            //    1, four more keyed by the stream as well, and the run
                            //    maps and indirect contexts per stream (format v12;
                            //    MixTuning::stream_contexts)
  int class_contexts = 1;   // mix levels 2 and 3: 0, no character classes (formats up to
                            //    12); 1, a context of the last 12 bytes' classes, order 12
                            //    and the column with the word in the places of three older
                            //    contexts, a mixer picked by the last 4 bytes' classes and
                            //    the second layer by the last byte's (format v13;
                            //    MixTuning::class_contexts)
  int own_rates = 1;        // mix levels 2 and 3: 0, the first mixing layer's rate falls
                            //    with the bits coded and the APMs' is fixed (formats up
                            //    to 13); 1, each weight set's and APM knot's falls with
                            //    its own updates (format v14; MixTuning::own_rates)
  int one_sided = 1;        // mix levels 2 and 3: 1, an input per hashed context for a bit
                            //    history of one value only and a second layer-2 vector by
                            //    the match state (format v15; MixTuning::one_sided); 0,
                            //    neither (formats up to 14)
  int nibble_groups = 1;    // mix levels 2 and 3: 1, a context's slots for a nibble's four
                            //    bits in one pair of cache lines, and lower initial mixer
                            //    weights (format v16; MixTuning::nibble_groups); 0, every
                            //    bit's slot hashed apart (formats up to 15)
  int text_contexts = 1;    // mix levels 2 and 3: 1, six contexts of the text's structure
                            //    and an order-3 APM (format v18; MixTuning::text_contexts);
                            //    0, neither (formats up to 17)
  int table_shapes = 1;     // mix levels 2 and 3: 1, each hashed context's table sized by
                            //    what it holds (format v19; MixTuning::table_shapes); 0, all
                            //    tables alike (formats up to 18)
  int long_matches = 1;     // mix levels 2 and 3: 1, the match model also finds 12-byte
                            //    contexts and goes on past a mispredicted byte (format v20;
                            //    MixTuning::long_matches); 0, neither (formats up to 19)
  int scope_context = 1;    // mix levels 2 and 3 with the text contexts: 1, a context of the
                            //    last markup tag's name, the sentence's first word and the
                            //    word (format v20; MixTuning::scope_context); 0, none
  int more_runs = 1;        // mix levels 2 and 3: 1, three more run maps (the word with the
                            //    previous word, order 8, the word trigram) (format v21;
                            //    MixTuning::more_runs); 0, orders 3, 4 and the word with the
                            //    last byte only (formats up to 20)
  int word_indirect = 1;    // mix levels 2 and 3: 1, a context of the two bytes that followed
                            //    the word and the last byte when they last occurred (format
                            //    v21; MixTuning::word_indirect); 0, none (formats up to 20)
  int mixer_selectors = 1;  // mix levels 2 and 3: 1, four of layer 1's mixers also picked by
                            //    the last two bytes or their classes (format v22;
                            //    MixTuning::mixer_selectors); 0, as formats up to 21
  int layer2_inputs = 1;    // mix levels 2 and 3: 1, layer 2 also weighs four of layer 1's
                            //    inputs, at its sets' own rates (format v23;
                            //    MixTuning::layer2_inputs); 0, as formats up to 22
  int shape_contexts = 1;   // mix levels 2 and 3 with the class contexts: 1, the shape
                            //    context and layer 2's third weight vector (format v24;
                            //    MixTuning::shape_contexts); 0, as formats up to 23

  // Whether a CUDA predictor trains on shazip's CUDA kernels (format 10).
  bool cuda_training_kernels() const { return cuda_train_kernels && flat_train && block_norm; }

  // Closed-form count of trainable parameters (see model/sha_rnn.cpp).
  int64_t param_count() const;

  // Arithmetic per input byte (one position of one stream), in floating-point
  // operations, a multiply-add counting 2: the matrix products and the
  // attention, which are all but a few percent of the model's work.
  // `predict` is the step path's forward; `train` the position's share of
  // the training step, forward and backward over the segment (3 forwards).
  // The attention memory is taken as full, as it is after mem_len positions.
  struct Flops {
    double predict = 0;
    double train = 0;
    double total() const { return predict + train; }
  };
  Flops flops_per_byte() const;
  // Human-readable one-liner, e.g. "d=128 L=2 M=256 T=32 lr=0.003".
  std::string describe() const;
  // Empty if the configuration can be built, else what is wrong with it.
  std::string validate() const;
};

// Presets 1 (tiny, fastest) .. 9 (largest, for a GPU), like zstd's levels.
constexpr int kMinPreset = 1;
constexpr int kMaxPreset = 9;
constexpr int kDefaultPreset = 2;
// Presets from here on are sized for a GPU (many streams, larger models).
constexpr int kFirstGpuPreset = 6;

struct Preset {
  ModelConfig model;
  int streams;  // B: parallel streams the input is cut into
};
// A preset's row; model.mix is the mix level it codes large inputs with.
Preset preset(int level);

// Mix level 3 differs from level 2 in its larger tables only above 1 MiB (four
// slots a byte fill level 2's 2^22 there); below, its other changes cost
// 0.1-0.8% on most inputs (benchmarks/RESULTS.md, "Mix level by input size").
// So a row's level 3 codes inputs of at most kMixLevel3MinBytes at level 2.
constexpr uint64_t kMixLevel3MinBytes = uint64_t{1} << 20;
// The mix level a row's `mix` codes an input (or -j block) of n bytes with.
int mix_for_input(int mix, uint64_t n);

// An input coded as one or two streams (below 96 KiB with the CPU presets'
// 32 KiB streams) gives each Adam step few bytes, so the training's fixed
// cost, Adam over every weight, dominates its coding: such inputs train
// every kFewStreamsSegLen positions at least, instead of a row's 8, for
// 1.3-2.2x the default preset's speed at 0.1% in size on the Calgary and
// Canterbury files of 8-96 KiB (benchmarks/RESULTS.md, "Segments for small
// inputs"). Inputs of kFewStreamsMinBytes or less, whose coding time is
// mostly start-up, keep the row's T (the longer segments cost 4 KB texts
// 0.35%).
constexpr int kFewStreams = 2;
constexpr int kFewStreamsSegLen = 16;
constexpr uint64_t kFewStreamsMinBytes = uint64_t{8} << 10;
// The segment length a row's `seg` codes an input of n bytes in `streams`
// streams with. The archive records it, so decoding needs no rule.
int seg_for_input(int seg, int streams, uint64_t n);

// A row's model as shazip codes an input of n bytes in `streams` streams: at
// most one training group per stream, mix_for_input's level and
// seg_for_input's T. compress_params and bench_model both take it.
ModelConfig model_for_input(ModelConfig m, int streams, uint64_t n);

// The mixing stage's settings for a model's archive: its mix level's, and the
// stream contexts when the model has them.
MixTuning mix_tuning(const ModelConfig& m);

}  // namespace shazip::model
