// Context-mixing benchmark and tuner: bits per byte of the mixing stage
// (model/context_mix.h) on a file, alone or on top of recorded SHA-RNN
// probabilities, in a fraction of a second per megabyte instead of minutes.
//
// The SHA-RNN's probabilities do not depend on the mixing stage, so one run of
// `bench_model --dump-nn DUMP FILE` records them (8 12-bit bit probabilities
// per byte, little-endian uint16, in file order) and this program replays them
// with any mixing knobs. Streams are interleaved exactly as the driver does.
//
// Usage: bench_mix [--nn DUMP] [--level 1|2|3] [--streams B] [--shards K] [--lr N] [--lr-min N]
//                  [--decay N] [--lr2 N] [--shift N] [--table-bits N] [--limit N] [--history-limit N]
//                  [--state-limit N] [--apm-rate N] [--nn-weight N] [--cm-weight N]
//                  [--stream-contexts 0|1] [--class-contexts 0|1] [--own-rates 0|1]
//                  [--one-sided 0|1] [--nibble-groups 0|1] [--text-contexts 0|1] [--table-shapes 0|1]
//                  [--long-matches 0|1] [--scope-context 0|1] [--more-runs 0|1] [--word-indirect 0|1]
//                  [--mixer-selectors 0|1] [--layer2-inputs 0|1] [--shape-contexts 0|1]
//                  [--portable] [--prefault 0|1] FILE
// (--level: the mix level, default the highest; --shards: split the streams
// into K contiguous runs, each mixed apart, to price that design;
// --stream-contexts: without (0) or with (1, the default, as format 12
// writes) the stream contexts of model/context_mix.h; --class-contexts: the
// same for the class contexts (format 13); --own-rates: the same for the
// own rates (format 14); --one-sided: the same for the one-sided inputs
// (format 15); --nibble-groups: the same for the nibble groups and their
// initial weights (format 16; the weight knobs still override those, in any
// order); --text-contexts: the same for the text contexts (format 18);
// --table-shapes: the same for the table shapes (format 19);
// --long-matches, --scope-context: the same for format 20's long matches and
// scope context; --more-runs, --word-indirect: the same for format 21's
// more run maps and the word's indirect context; --mixer-selectors: the same
// for format 22's mixer selectors; --layer2-inputs: for format 23's layer-2
// inputs; --shape-contexts: for format 24's shape contexts;
// --portable: the mixers' portable loops instead of AVX2, same
// results; --prefault 0: the tables' pages faulted in by the coding
// thread as it touches them, not ahead on a thread of their own, same
// results.) Prints the bits per byte and
// the mixing stage's time and speed (file loading and start-up excluded).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/context_mix.h"
#include "src/driver.h"
#include "src/errors.h"
#include "src/file_io.h"

using namespace shazip;

namespace {

std::vector<uint8_t> load(const std::string& path) {
  try {
    return read_file(path);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_mix: %s: %s\n", path.c_str(), e.what());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // The level first: the knobs below override its settings.
  int level = model::kMaxMixLevel;
  int nibble_groups = 1;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--level") level = std::atoi(argv[i + 1]);
    if (std::string(argv[i]) == "--nibble-groups") nibble_groups = std::atoi(argv[i + 1]);
  }
  if (level < 1 || level > model::kMaxMixLevel) {
    std::fprintf(stderr, "bench_mix: --level must be 1..%d\n", model::kMaxMixLevel);
    return 2;
  }
  model::ModelConfig as_written;  // the level with the flags shazip writes
  as_written.mix = level;
  as_written.nibble_groups = nibble_groups != 0;
  model::MixTuning t = model::mix_tuning(as_written);
  std::string file, dump;
  int streams = 0, shards = 1;
  bool prefault = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_mix: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto num = [&]() { return std::atoi(next().c_str()); };
    if (a == "--nn") dump = next();
    else if (a == "--level") next();
    else if (a == "--streams") streams = num();
    else if (a == "--shards") shards = num();
    else if (a == "--lr") t.mixer_lr = num();
    else if (a == "--lr-min") t.mixer_lr_min = num();
    else if (a == "--lr2") t.mixer2_lr = num();
    else if (a == "--decay") t.mixer_decay = num();
    else if (a == "--shift") t.mixer_shift = num();
    else if (a == "--table-bits") t.table_bits = num();
    else if (a == "--limit") t.counter_limit = num();
    else if (a == "--history-limit") t.history_limit = num();
    else if (a == "--state-limit") t.state_limit = num();
    else if (a == "--apm-rate") t.apm_rate = num();
    else if (a == "--nn-weight") t.nn_weight = num();
    else if (a == "--cm-weight") t.cm_weight = num();
    else if (a == "--stream-contexts") t.stream_contexts = num() != 0;
    else if (a == "--class-contexts") t.class_contexts = num() != 0;
    else if (a == "--own-rates") t.own_rates = num() != 0;
    else if (a == "--one-sided") t.one_sided = num() != 0;
    else if (a == "--text-contexts") t.text_contexts = num() != 0;
    else if (a == "--table-shapes") t.table_shapes = num() != 0;
    else if (a == "--long-matches") t.long_matches = num() != 0;
    else if (a == "--scope-context") t.scope_context = num() != 0;
    else if (a == "--more-runs") t.more_runs = num() != 0;
    else if (a == "--word-indirect") t.word_indirect = num() != 0;
    else if (a == "--mixer-selectors") t.mixer_selectors = num() != 0;
    else if (a == "--layer2-inputs") t.layer2_inputs = num() != 0;
    else if (a == "--shape-contexts") t.shape_contexts = num() != 0;
    else if (a == "--nibble-groups") next();  // applied above, with the level
    else if (a == "--portable") model::set_mixer_simd(false);
    else if (a == "--prefault") prefault = num() != 0;
    else file = a;
  }
  const bool prefaulting = model::set_table_prefault(prefault);
  if (t.mixer_shift < 1 || t.mixer_shift > model::kMaxMixerShift || t.table_bits < model::kMinTableBits ||
      t.table_bits > model::kMaxTableBits) {
    std::fprintf(stderr, "bench_mix: --shift must be 1..%d and --table-bits %d..%d\n", model::kMaxMixerShift,
                 model::kMinTableBits, model::kMaxTableBits);
    return 2;
  }
  if (model::uses_own_rates(t) &&
      (t.apm_rate < model::kMinCountedApmRate || t.apm_rate > model::kMaxCountedApmRate)) {
    std::fprintf(stderr, "bench_mix: with the own rates --apm-rate must be %d..%d\n", model::kMinCountedApmRate,
                 model::kMaxCountedApmRate);
    return 2;
  }
  if (file.empty()) {
    std::fprintf(stderr, "usage: bench_mix [--nn DUMP] [--level 1|2|3] [--streams B] [--shards K] [knobs] FILE\n");
    return 2;
  }
  const std::vector<uint8_t> data = load(file);
  const uint64_t n = data.size();
  std::vector<uint16_t> nn;
  if (!dump.empty()) {
    const std::vector<uint8_t> raw = load(dump);
    if (raw.size() != n * 16) {
      std::fprintf(stderr, "bench_mix: %s holds %zu bytes, expected %llu\n", dump.c_str(), raw.size(),
                   static_cast<unsigned long long>(n * 16));
      return 1;
    }
    nn.resize(n * 8);
    for (size_t i = 0; i < nn.size(); ++i) nn[i] = static_cast<uint16_t>(raw[2 * i] | raw[2 * i + 1] << 8);
  } else {
    t.use_nn = false;
  }
  if (streams == 0) streams = choose_streams(n, model::preset(model::kDefaultPreset).streams);
  const uint64_t len = stream_length(n, streams);
  const auto start = std::chrono::steady_clock::now();
  // Shards: contiguous runs of streams, each with a mixing stage of its own
  // (a design that would let cores share the work, at the price of tables
  // that each see only their shard's text).
  shards = std::clamp(shards, 1, streams);
  std::vector<std::unique_ptr<model::ContextMixer>> mixers;
  std::vector<int> shard_of(streams), index_in_shard(streams);
  for (int s = 0, b = 0; s < shards; ++s) {
    const int end = static_cast<int>(int64_t{streams} * (s + 1) / shards);
    mixers.push_back(std::make_unique<model::ContextMixer>(end - b, len, t));
    for (int first = b; b < end; ++b) {
      shard_of[b] = s;
      index_in_shard[b] = b - first;
    }
  }
  double bits = 0, nn_bits = 0;
  for (uint64_t i = 0; i < len; ++i) {
    for (int b = 0; b < streams; ++b) {
      const uint64_t at = b * len + i;
      if (at >= n) continue;
      model::ContextMixer& mixer = *mixers[shard_of[b]];
      mixer.begin(index_in_shard[b]);
      for (int k = 0; k < 8; ++k) {
        const int bit = (data[at] >> (7 - k)) & 1;
        const int nn_p = nn.empty() ? 2048 : nn[at * 8 + k];
        const uint32_t p = mixer.predict(nn_p);
        bits -= std::log2((bit ? p : 65536 - p) / 65536.0);
        nn_bits -= std::log2((bit ? nn_p : 4096 - nn_p) / 4096.0);
        mixer.update(bit);
      }
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s level=%d%s%s%s%s%s%s%s%s%s%s%s%s%s%s streams=%d shards=%d mixed %.4f bpc", file.c_str(), level,
              t.stream_contexts ? "" : " stream-contexts=0", t.class_contexts ? "" : " class-contexts=0",
              t.own_rates ? "" : " own-rates=0", t.one_sided ? "" : " one-sided=0",
              t.nibble_groups ? "" : " nibble-groups=0", t.text_contexts ? "" : " text-contexts=0",
              t.table_shapes ? "" : " table-shapes=0", t.long_matches ? "" : " long-matches=0",
              t.scope_context ? "" : " scope-context=0", t.more_runs ? "" : " more-runs=0",
              t.word_indirect ? "" : " word-indirect=0", t.mixer_selectors ? "" : " mixer-selectors=0",
              t.layer2_inputs ? "" : " layer2-inputs=0", t.shape_contexts ? "" : " shape-contexts=0", streams,
              shards, bits / n);
  if (!nn.empty()) std::printf("  sha-rnn alone %.4f bpc", nn_bits / n);
  std::printf("  %.2f s %.1f KB/s (mixers %s%s)\n", seconds, n / 1e3 / seconds,
              model::mixer_simd() ? "avx2" : "portable", prefaulting ? ", prefault" : "");
  return 0;
}
