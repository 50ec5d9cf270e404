// Driver tests (src/driver.h): the encoder's lookahead thread changes nothing
// in the archive, its errors reach the caller, and a coder that fails stops it.
// Also the archive layer's parallel blocks (src/archive.h).
#include <catch2/catch.hpp>

#include <sched.h>

#include <atomic>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/context_mix.h"
#include "src/archive.h"
#include "src/container.h"
#include "src/crc32.h"
#include "src/errors.h"
#include "src/driver.h"
#include "src/file_io.h"

using namespace shazip;

namespace {

std::string text(size_t n) {
  const char* words[] = {"online ", "learning ", "codes ", "each ", "byte ", "as ", "it ", "comes.\n"};
  std::mt19937 rng(11);
  std::string s;
  while (s.size() < n) s += words[rng() % 8];
  s.resize(n);
  return s;
}

CodingParams small_params(int mix) {
  CodingParams p;
  p.model.dim = 32;
  p.model.layers = 1;
  p.model.attn_layer = 0;
  p.model.mem_len = 32;
  p.model.seg_len = 4;
  p.model.mix = mix;
  p.streams = 3;
  return p;
}

struct Encoded {
  std::vector<uint8_t> payload;
  CodingStats stats;
};

Encoded encode(const std::string& s, const CodingParams& params) {
  Encoded e;
  coder::VectorSink<std::vector<uint8_t>> sink(e.payload);
  e.stats = encode_neural(reinterpret_cast<const uint8_t*>(s.data()), s.size(), params, sink);
  return e;
}

// Accepts `limit` bytes, then fails as a full disk would.
struct FailingSink final : coder::ByteSink {
  size_t left;
  explicit FailingSink(size_t limit) : left(limit) {}
  void write(const uint8_t*, size_t n) override {
    if (n > left) throw std::runtime_error("disk full");
    left -= n;
  }
};

}  // namespace

TEST_CASE("the encoder's lookahead thread gives the inline model's archive", "[driver]") {
  // 3 streams over 3001 bytes: the last stream ends early and gets fillers.
  const std::string s = text(3001);
  for (int mix : {0, 2}) {
    INFO("mix level " << mix);
    CodingParams params = small_params(mix);
    params.lookahead = true;
    const Encoded ahead = encode(s, params);
    params.lookahead = false;
    const Encoded inline_ = encode(s, params);
    REQUIRE(!ahead.payload.empty());
    CHECK(ahead.payload == inline_.payload);
    CHECK(ahead.stats.model_bits == inline_.stats.model_bits);
    CHECK(ahead.stats.nn_bits == inline_.stats.nn_bits);
    CHECK(ahead.stats.nn_bits > 0);

    std::vector<uint8_t> out(s.size());
    decode_neural(ahead.payload.data(), ahead.payload.size(), s.size(), params, out.data());
    CHECK(std::string(out.begin(), out.end()) == s);
  }
}

TEST_CASE("an archive with training groups carries them to the decoder", "[driver]") {
  // Format 8's header field: the decoder must train in the same groups, or
  // its tables part from the encoder's and the content check fails.
  const std::string s = text(6000);
  const auto* data = reinterpret_cast<const uint8_t*>(s.data());
  CodingParams params = small_params(1);
  params.model.train_groups = 3;  // one group per stream
  const Encoded e = encode(s, params);
  CodingParams one = params;
  one.model.train_groups = 1;
  CHECK(encode(s, one).payload != e.payload);
  Header h;
  h.method = Method::kNeural;
  h.original_size = s.size();
  h.content_crc = crc32(data, s.size());
  h.model = params.model;
  h.streams = params.streams;
  h.threads = 1;
  h.backend = current_backend(model::DeviceKind::kCpu);
  h.payload_size = e.payload.size();
  std::vector<uint8_t> archive = write_header(h);
  archive.insert(archive.end(), e.payload.begin(), e.payload.end());
  CHECK(decompress_buffer(archive.data(), archive.size()) == std::vector<uint8_t>(s.begin(), s.end()));
  // The same archive with its field set to one group no longer decodes.
  h.model.train_groups = 1;
  std::vector<uint8_t> wrong = write_header(h);
  wrong.insert(wrong.end(), e.payload.begin(), e.payload.end());
  CHECK_THROWS_AS(decompress_buffer(wrong.data(), wrong.size()), Error);
}

TEST_CASE("a coder that fails stops the lookahead thread", "[driver]") {
  const std::string s = text(20000);
  CodingParams params = small_params(2);
  FailingSink sink(100);
  CHECK_THROWS_WITH(encode_neural(reinterpret_cast<const uint8_t*>(s.data()), s.size(), params, sink),
                    "disk full");
  // And the next encoder is unaffected.
  CHECK(encode(s.substr(0, 500), params).payload.size() > 0);
}

TEST_CASE("an error in the model's thread reaches the caller", "[driver]") {
  if (model::backend_info().cuda_available) {
    WARN("skipped: this build has a GPU, so asking for CUDA does not fail");
    return;
  }
  // No CUDA here: the predictor cannot be built, on the lookahead thread or not.
  const std::string s = text(1000);
  CodingParams params = small_params(1);
  params.runtime.device = model::DeviceKind::kCuda;
  for (bool lookahead : {true, false}) {
    INFO("lookahead " << lookahead);
    params.lookahead = lookahead;
    CHECK_THROWS(encode(s, params));
  }
}

TEST_CASE("the lookahead thread is used where a core is free for it, or with a GPU", "[driver]") {
  CodingParams params = small_params(2);
  params.runtime.threads = 256;  // more than any test machine has
  CHECK(!lookahead_pays(params));
  params.runtime.threads = 1;
  CHECK(!lookahead_pays(params, 256));  // shazip -j 256: three threads each
  params.runtime.device = model::DeviceKind::kCuda;  // the host only waits for the device
  CHECK(lookahead_pays(params));
}

TEST_CASE("usable_cores counts the cores the process may run on", "[driver]") {
  cpu_set_t all;
  REQUIRE(sched_getaffinity(0, sizeof all, &all) == 0);
  CHECK(usable_cores() == CPU_COUNT(&all));
  // Held to one core (as `taskset -c N` does): one.
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &all)) {
      CPU_SET(c, &one);
      break;
    }
  }
  REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  CHECK(usable_cores() == 1);
  REQUIRE(sched_setaffinity(0, sizeof all, &all) == 0);
}

TEST_CASE("a GPU archive names the GPU it needs", "[driver]") {
  // cuBLAS picks kernels by GPU model: an archive whose training ran on
  // LibTorch's autograd (before format 10, or with cuda_train_kernels off)
  // decodes only on the same model and CUDA runtime (no GPU needed to check
  // the rule).
  Header made;
  made.method = Method::kNeural;
  made.model.cuda_train_kernels = 0;
  Backend& b = made.backend;
  b.device = model::DeviceKind::kCuda;
  b.torch_version = "2.11.0";
  b.blas = "NVIDIA H100 80GB HBM3 sm_90";
  b.cpu_capability = "CUDA 13.0";
  model::BackendInfo here;
  here.torch_version = "2.11.0";
  here.cuda_available = true;
  here.gpu = b.blas;
  here.cuda_runtime = b.cpu_capability;
  CHECK(!portable_arithmetic(made));
  CHECK(backend_mismatch(made, here).empty());
  here.gpu = "NVIDIA H200 sm_90";
  const std::string why = backend_mismatch(made, here);
  CHECK(why.find("NVIDIA H100 80GB HBM3 sm_90") != std::string::npos);
  CHECK(why.find("NVIDIA H200 sm_90") != std::string::npos);
  here.gpu = b.blas;
  here.cuda_runtime = "CUDA 12.8";
  CHECK(backend_mismatch(made, here).find("CUDA 12.8") != std::string::npos);
  here.cuda_available = false;
  CHECK(backend_mismatch(made, here).find("CUDA build of shazip") != std::string::npos);
  // The GPU fields say nothing about a CPU archive.
  Header cpu;
  cpu.method = Method::kNeural;
  cpu.backend = current_backend(model::DeviceKind::kCpu);
  CHECK(backend_mismatch(cpu, model::backend_info()).empty());
}

TEST_CASE("a GPU archive of the CUDA kernels (format 10 on) decodes anywhere", "[driver]") {
  // Both CUDA switches (the step and the training step on shazip's kernels,
  // which compute the CPU kernels' bits) and the CPU's: no GPU is needed to
  // decode, and no particular one. Either switch off, or an older format, and
  // the GPU is named again.
  Header h;
  h.method = Method::kNeural;
  h.backend.device = model::DeviceKind::kCuda;
  h.backend.torch_version = "2.11.0";
  h.backend.blas = "NVIDIA H200 sm_90";
  h.backend.cpu_capability = "CUDA 13.0";
  REQUIRE(h.version == kFormatVersion);
  model::BackendInfo here;  // no GPU, another LibTorch
  here.torch_version = "1.13.0";
  CHECK(portable_arithmetic(h));
  CHECK(backend_mismatch(h, here).empty());
  using model::ModelConfig;
  for (int ModelConfig::*field : {&ModelConfig::cuda_step_kernels, &ModelConfig::cuda_train_kernels,
                                  &ModelConfig::block_norm, &ModelConfig::train_kernels}) {
    Header off = h;
    off.model.*field = 0;
    CHECK(!portable_arithmetic(off));
    CHECK(backend_mismatch(off, here).find("CUDA build of shazip") != std::string::npos);
  }
  // Where this process has no GPU it decodes such an archive on the CPU;
  // one that needs its GPU keeps the device, and backend_mismatch refuses it.
  if (!model::backend_info().cuda_available) {
    CHECK(decode_device(h) == model::DeviceKind::kCpu);
    Header libtorch = h;
    libtorch.model.cuda_train_kernels = 0;
    CHECK(decode_device(libtorch) == model::DeviceKind::kCuda);
  }
  Header cpu = h;
  cpu.backend.device = model::DeviceKind::kCpu;
  CHECK(decode_device(cpu) == model::DeviceKind::kCpu);
  h.version = 10;
  CHECK(portable_arithmetic(h));
  h.version = 9;
  CHECK(!portable_arithmetic(h));
}

TEST_CASE("a format-7 CPU archive decodes whatever the BLAS and ATen, an older one names its kernels", "[driver]") {
  Header h;
  h.method = Method::kNeural;
  h.backend.device = model::DeviceKind::kCpu;
  h.backend.torch_version = "1.13.0";
  h.backend.blas = "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY core=Haswell MAX_THREADS=64";
  h.backend.cpu_capability = "avx2";
  model::BackendInfo here;
  here.torch_version = "2.11.0";
  here.blas = "the reference BLAS";
  here.cpu_capability = "default";
  REQUIRE(h.version >= 7);
  CHECK(portable_arithmetic(h));
  CHECK(backend_mismatch(h, here).empty());
  // Without the training kernels (or before format 7) the training step is
  // LibTorch's: the same LibTorch, BLAS and kernel set are needed.
  h.model.train_kernels = 0;
  CHECK(!portable_arithmetic(h));
  CHECK(backend_mismatch(h, here).find("LibTorch 1.13.0") != std::string::npos);
  h.model.train_kernels = 1;
  h.version = 6;
  CHECK(!portable_arithmetic(h));
  here.torch_version = h.backend.torch_version;
  CHECK(backend_mismatch(h, here).find("OpenBLAS 0.3.21") != std::string::npos);
  // Stored archives need nothing.
  h.method = Method::kStored;
  CHECK(portable_arithmetic(h));
}

namespace {

// Watches a progress callback: calls one at a time, sums never going back.
struct ProgressWatch {
  std::atomic<int> inside{0};
  bool overlapped = false, backwards = false;
  uint64_t last_done = 0;
  ProgressFn fn() {
    overlapped = backwards = false;
    last_done = 0;
    return [this](uint64_t done, double) {
      overlapped = overlapped || inside.fetch_add(1) != 0;
      backwards = backwards || done < last_done;
      last_done = done;
      inside.fetch_sub(1);
    };
  }
};

}  // namespace

TEST_CASE("parallel blocks: the archives depend on the block size alone and decode in parallel", "[driver][blocks]") {
  const std::string s = text(28000);
  const auto* data = reinterpret_cast<const uint8_t*>(s.data());
  const uint64_t block = 8000;  // three blocks and a 4,000-byte one
  CompressOptions options;
  options.preset = 1;
  ProgressWatch watch;
  options.progress = watch.fn();
  CompressReport report;
  const std::vector<uint8_t> parallel = compress_blocks(data, s.size(), block, 3, options, &report);
  CHECK(!watch.overlapped);
  CHECK(!watch.backwards);
  CHECK(watch.last_done == s.size());
  CHECK(report.blocks == 4);
  CHECK(!report.fell_back());
  CHECK(report.stored_blocks == 0);
  options.progress = {};
  CHECK(compress_blocks(data, s.size(), block, 1, options) == parallel);

  // Each block is the archive compress_buffer() makes of it.
  const std::vector<Member> members = split_members(parallel.data(), parallel.size());
  REQUIRE(members.size() == 4);
  for (size_t i : {size_t{0}, size_t{3}}) {
    const std::vector<uint8_t> alone =
        compress_buffer(data + i * block, std::min<uint64_t>(block, s.size() - i * block), options);
    CHECK(std::vector<uint8_t>(parallel.begin() + static_cast<std::ptrdiff_t>(members[i].offset),
                               parallel.begin() + static_cast<std::ptrdiff_t>(members[i].offset + members[i].size)) ==
          alone);
  }
  // One block: compress_buffer()'s archive.
  CHECK(compress_blocks(data, block, block, 3, options) == compress_buffer(data, block, options));

  for (int jobs : {1, 2, 4}) {
    const std::vector<uint8_t> back = decompress_members(parallel.data(), members, watch.fn(), jobs);
    CHECK(std::string(back.begin(), back.end()) == s);
    CHECK(!watch.overlapped);
    CHECK(!watch.backwards);
    CHECK(watch.last_done == s.size());
  }

  // A damaged block fails the whole decode (the other threads finish and
  // are joined), in parallel as one at a time.
  std::vector<uint8_t> bad = parallel;
  bad[members[2].offset + members[2].header_size + members[2].header.payload_size / 2] ^= 0x10;
  for (int jobs : {1, 4}) {
    try {
      decompress_members(bad.data(), split_members(bad.data(), bad.size()), {}, jobs);
      FAIL("a damaged block decoded");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kCorrupt);
    }
  }
}

TEST_CASE("parallel blocks: a failing block stops the blocks after it and not those before", "[driver][blocks]") {
  // A stored archive whose content check fails at once, and a neural one of
  // 70,000 bytes (two streams, seconds to decode), decoded two at a time.
  const std::string s = text(70000);
  CompressOptions options;
  options.preset = 1;
  const std::vector<uint8_t> neural =
      compress_buffer(reinterpret_cast<const uint8_t*>(s.data()), s.size(), options);
  Header h;
  h.original_size = 100;
  h.content_crc = 1;  // not that of 100 bytes of 'x'
  std::vector<uint8_t> stored = write_header(h);
  stored.resize(stored.size() + 100, 'x');
  for (bool stored_first : {true, false}) {
    INFO((stored_first ? "the damaged block first" : "the damaged block second"));
    std::vector<uint8_t> file = stored_first ? stored : neural;
    const std::vector<uint8_t>& second = stored_first ? neural : stored;
    file.insert(file.end(), second.begin(), second.end());
    ProgressWatch watch;
    try {
      decompress_members(file.data(), split_members(file.data(), file.size()), watch.fn(), 2);
      FAIL("a damaged block decoded");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kCorrupt);
    }
    // After the damaged block, the neural one stops within a few 4 KB
    // reports; before it, it decodes to its end (it could have failed too,
    // and the first block's error is the one to report).
    if (stored_first) {
      CHECK(watch.last_done < s.size() / 2);
    } else {
      CHECK(watch.last_done >= s.size());
    }
  }
}

TEST_CASE("a preset's mix level 3 codes only inputs above 1 MiB", "[driver]") {
  // Preset 6's row asks for level 3; a small input gets level 2 (its tables
  // would be no larger at level 3), and the archive says so.
  REQUIRE(model::preset(6).model.mix == 3);
  CHECK(model::mix_for_input(3, model::kMixLevel3MinBytes) == 2);
  CHECK(model::mix_for_input(3, model::kMixLevel3MinBytes + 1) == 3);
  for (int mix : {0, 1, 2}) CHECK(model::mix_for_input(mix, uint64_t{1} << 30) == mix);
  const std::string s = text(3000);
  CompressOptions options;
  options.preset = 6;
  CompressReport report;
  const std::vector<uint8_t> archive =
      compress_buffer(reinterpret_cast<const uint8_t*>(s.data()), s.size(), options, &report);
  CHECK(report.header.model.mix == 2);
  CHECK(decompress_buffer(archive.data(), archive.size()) == std::vector<uint8_t>(s.begin(), s.end()));
  // Above 1 MiB the memory plan holds level 3's tables, as compress_buffer()
  // builds them (64 streams at preset 6 for 4 MiB, 16 at presets 2 and 3,
  // with the stream and class contexts); the default keeps level 2's, a third of that.
  const uint64_t n = uint64_t{4} << 20;
  const auto level3 = [&](int streams) {
    return model::ContextMixer::memory_bytes(streams, stream_length(n, streams),
                                             model::mix_tuning(model::preset(6).model));
  };
  CHECK(compress_memory(6, n) > level3(64));
  CHECK(compress_memory(3, n) > level3(16));
  CHECK(compress_memory(2, n) < level3(16) / 2);
}

TEST_CASE("the text contexts are in presets 1 to 5 and not in the GPU presets and the table shapes, long matches, more "
          "run maps, the word's indirect context, the mixer selectors, the layer-2 inputs and the shape contexts in "
          "all",
          "[driver]") {
  // Format 18's text contexts cost the mixing stage some 15% at level 3,
  // which the GPU presets' host cannot spare (model/config.cpp); the archive
  // records the choice, and decodes by it.
  for (int level = model::kMinPreset; level <= model::kMaxPreset; ++level) {
    INFO("preset " << level);
    CHECK(model::preset(level).model.text_contexts == (level <= 5 ? 1 : 0));
    CHECK(model::preset(level).model.table_shapes == 1);  // format 19's, in every preset
    CHECK(model::preset(level).model.long_matches == 1);  // format 20's, in every preset
    CHECK(model::preset(level).model.scope_context == 1);  // with the text contexts
    CHECK(model::preset(level).model.more_runs == 1);      // format 21's, in every preset
    CHECK(model::preset(level).model.word_indirect == 1);  // likewise
    CHECK(model::preset(level).model.mixer_selectors == 1);  // format 22's, in every preset
    CHECK(model::preset(level).model.layer2_inputs == 1);    // format 23's, in every preset
    CHECK(model::preset(level).model.shape_contexts == 1);   // format 24's, in every preset
  }
  const std::string s = text(3000);
  for (int level : {2, 6}) {
    INFO("preset " << level);
    CompressOptions options;
    options.preset = level;
    CompressReport report;
    const std::vector<uint8_t> archive =
        compress_buffer(reinterpret_cast<const uint8_t*>(s.data()), s.size(), options, &report);
    CHECK(report.header.model.text_contexts == (level == 2 ? 1 : 0));
    CHECK(report.header.model.table_shapes == 1);
    CHECK(report.header.model.long_matches == 1);
    CHECK(report.header.model.more_runs == 1);
    CHECK(report.header.model.word_indirect == 1);
    CHECK(report.header.model.mixer_selectors == 1);
    CHECK(report.header.model.layer2_inputs == 1);
    CHECK(report.header.model.shape_contexts == 1);
    CHECK(model::uses_scope_context(model::mix_tuning(report.header.model)) == (level == 2));
    CHECK(decompress_buffer(archive.data(), archive.size()) == std::vector<uint8_t>(s.begin(), s.end()));
  }
}

TEST_CASE("inputs in one or two streams train every 16 positions above 8 KiB", "[driver]") {
  // The rule: one or two streams and more than kFewStreamsMinBytes, at
  // least T = 16; longer rows keep theirs, many streams and tiny inputs the row's.
  CHECK(model::seg_for_input(8, 1, model::kFewStreamsMinBytes + 1) == 16);
  CHECK(model::seg_for_input(8, 2, 90000) == 16);
  CHECK(model::seg_for_input(32, 1, 90000) == 32);
  CHECK(model::seg_for_input(8, 3, 100000) == 8);
  CHECK(model::seg_for_input(8, 1, model::kFewStreamsMinBytes) == 8);
  // What compress_buffer() writes: the default preset's T = 8 row, 16 for
  // 20,000 bytes in one stream, 8 for 6,000; the archives decode (the
  // header carries T: decoding needs no rule).
  REQUIRE(model::preset(model::kDefaultPreset).model.seg_len == 8);
  for (const auto& [size, seg] : {std::pair{size_t{20000}, 16}, std::pair{size_t{6000}, 8}}) {
    INFO(size << " bytes");
    const std::string s = text(size);
    CompressOptions options;
    CompressReport report;
    const std::vector<uint8_t> archive =
        compress_buffer(reinterpret_cast<const uint8_t*>(s.data()), s.size(), options, &report);
    CHECK(report.header.streams == 1);
    CHECK(report.header.model.seg_len == seg);
    CHECK(decompress_buffer(archive.data(), archive.size()) == std::vector<uint8_t>(s.begin(), s.end()));
  }
  // Sixteen streams (the row's most) keep T = 8.
  CHECK(model::seg_for_input(8, choose_streams(uint64_t{1} << 20, 16), uint64_t{1} << 20) == 8);
}

TEST_CASE("model_for_input applies the streams' group limit and both size rules", "[driver]") {
  // Preset 9's row (16 training groups, level 3, T = 32) on 20,000 bytes in
  // one stream: one group, level 2, its own T; preset 1's in one stream T = 16.
  const model::ModelConfig big = model::model_for_input(model::preset(9).model, 1, 20000);
  CHECK(big.train_groups == 1);
  CHECK(big.mix == 2);
  CHECK(big.seg_len == 32);
  const model::ModelConfig small = model::model_for_input(model::preset(1).model, 1, 20000);
  CHECK(small.seg_len == 16);
  CHECK(small.mix == 2);
  // Many streams of a large input keep the row: groups, level 3, T.
  const model::ModelConfig row = model::preset(9).model;
  const model::ModelConfig large = model::model_for_input(row, 512, uint64_t{64} << 20);
  CHECK(large.train_groups == row.train_groups);
  CHECK(large.mix == 3);
  CHECK(large.seg_len == row.seg_len);
  CHECK(model::model_for_input(row, 8, uint64_t{64} << 20).train_groups == 8);
}

TEST_CASE("parallel blocks: jobs are planned within the memory available", "[driver][blocks]") {
  CHECK(jobs_within_memory(4, 100, 1000) == 4);
  CHECK(jobs_within_memory(4, 100, 399) == 3);
  CHECK(jobs_within_memory(4, 100, 250) == 2);
  CHECK(jobs_within_memory(4, 100, 50) == 1);  // one job runs whatever the memory says
  CHECK(jobs_within_memory(4, 0, 10) == 4);
  // What is available comes from /proc/meminfo (MemAvailable, Linux 3.14 and
  // later) or a cgroup's limit: a number here, not "unknown".
  CHECK(available_memory() > 0);
  CHECK(available_memory() < UINT64_MAX);
  // A coding's memory is its mixing stage and more; the tables grow with the
  // input up to 16 MiB each (1 MB at preset 2 reaches that).
  // compress_memory sizes them as compress_buffer() does (16 streams here).
  const model::Preset p = model::preset(2);
  const uint64_t mb = compress_memory(2, 1000000);
  CHECK(mb > model::ContextMixer::memory_bytes(16, stream_length(1000000, 16), model::mix_tuning(p.model)));
  // 4 MB: the context tables stay at their cap; the match model's table and
  // the histories grow.
  CHECK(compress_memory(2, 4000000) < mb + mb / 5);
  CHECK(compress_memory(2, 50000) < mb / 4);  // one stream
  // Decoding an archive takes what compressing it took; a stored one nothing.
  const std::string s = text(20000);
  CompressReport report;
  compress_buffer(reinterpret_cast<const uint8_t*>(s.data()), s.size(), CompressOptions{}, &report);
  CHECK(decode_memory(report.header) == compress_memory(model::kDefaultPreset, s.size()));
  CHECK(decode_memory(Header{}) == 0);
}

namespace {

std::vector<uint8_t> noise(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// The stored archive of data[0..n).
std::vector<uint8_t> stored_archive(const uint8_t* data, uint64_t n) {
  Header h;
  h.original_size = n;
  h.content_crc = crc32(data, n);
  std::vector<uint8_t> out = write_header(h);
  out.insert(out.end(), data, data + n);
  return out;
}

}  // namespace

TEST_CASE("compress_buffer fills a reused report afresh", "[driver]") {
  const std::vector<uint8_t> rand = noise(20000, 2);
  const std::string s = text(20000);
  CompressOptions options;
  options.preset = 1;
  CompressReport report;
  compress_buffer(rand.data(), rand.size(), options, &report);
  CHECK(report.fell_back());
  compress_buffer(reinterpret_cast<const uint8_t*>(s.data()), s.size(), options, &report);
  CHECK(!report.fell_back());
  CHECK(report.header.method == Method::kNeural);
}

TEST_CASE("an input the model does not shrink is stored after give_up_point bytes, one it shrinks anywhere is coded",
          "[driver]") {
  CHECK(give_up_point(1) == kGiveUpBytes);
  CHECK(give_up_point(16) == kGiveUpBytes);
  CHECK(give_up_point(512) == uint64_t{2} << 20);  // 4 KiB a stream
  CompressOptions options;
  options.preset = 1;
  options.glance = false;  // the model's own check (the glance: the next test)

  // Noise: stored once the model has coded give_up_point() bytes (6 streams
  // here), the rest not coded. The progress reaches the end: the rest at 8
  // bits a byte.
  const std::vector<uint8_t> rand = noise(200 << 10, 3);
  ProgressWatch watch;
  options.progress = watch.fn();
  CompressReport report;
  std::vector<uint8_t> archive = compress_buffer(rand.data(), rand.size(), options, &report);
  CHECK(archive == stored_archive(rand.data(), rand.size()));
  CHECK(report.fell_back());
  CHECK(report.stored_blocks == 1);
  CHECK(report.gave_up_at >= kGiveUpBytes);
  CHECK(report.gave_up_at < kGiveUpBytes + 8192);
  CHECK(report.stats.seconds > 0);
  CHECK(watch.last_done == rand.size());
  CHECK(!watch.backwards);
  CHECK(decompress_buffer(archive.data(), archive.size()) == rand);

  // Without the check: the whole input coded, and stored all the same.
  options.progress = {};
  options.give_up = false;
  archive = compress_buffer(rand.data(), rand.size(), options, &report);
  CHECK(archive == stored_archive(rand.data(), rand.size()));
  CHECK(report.fell_back());
  CHECK(report.gave_up_at == 0);
  options.give_up = true;

  // Half text, half noise: the streams sample both halves, the text's
  // savings show from the start, and the whole is coded, smaller than stored.
  const std::string words = text(100 << 10);
  std::vector<uint8_t> mixed(words.begin(), words.end());
  const std::vector<uint8_t> more = noise(100 << 10, 4);
  mixed.insert(mixed.end(), more.begin(), more.end());
  archive = compress_buffer(mixed.data(), mixed.size(), options, &report);
  CHECK(!report.fell_back());
  CHECK(report.stored_blocks == 0);
  CHECK(report.gave_up_at == 0);
  CHECK(archive.size() < mixed.size() * 3 / 4);
  CHECK(decompress_buffer(archive.data(), archive.size()) == mixed);

  // Noise shorter than the check: coded to its end, then stored.
  archive = compress_buffer(rand.data(), 100 << 10, options, &report);
  CHECK(report.fell_back());
  CHECK(report.gave_up_at == 0);
  CHECK(archive == stored_archive(rand.data(), 100 << 10));

  // Parallel blocks check each block: of two blocks of noise the first (140
  // KiB) gives up, the second (60 KiB) is coded to its end; both stored, the
  // progress summed to the end.
  options.progress = watch.fn();
  archive = compress_blocks(rand.data(), rand.size(), 140 << 10, 2, options, &report);
  CHECK(report.blocks == 2);
  CHECK(report.fell_back());
  CHECK(report.stored_blocks == 2);
  CHECK(report.gave_up_at >= kGiveUpBytes);
  CHECK(report.gave_up_at < kGiveUpBytes + 8192);
  CHECK(watch.last_done == rand.size());
  CHECK(!watch.overlapped);
  CHECK(decompress_buffer(archive.data(), archive.size()) == rand);
  CHECK(!report.at_a_glance);
}

TEST_CASE("an input the context models alone do not shrink is stored at a glance, before the model is built",
          "[driver]") {
  CompressOptions options;
  options.preset = 1;
  int models = 0;  // how often compress_buffer went on to build the model
  options.before_model = [&models] { ++models; };

  // Noise: the 131,072 bytes that the model's check would see (the first
  // 21,846 of each of 6 streams), coded by the context models alone, come to
  // more than that: stored, no model built. Its progress goes to the end.
  const std::vector<uint8_t> rand = noise(200 << 10, 3);
  CHECK(stored_at_a_glance(rand.data(), rand.size(), 1));
  ProgressWatch watch;
  options.progress = watch.fn();
  CompressReport report;
  std::vector<uint8_t> archive = compress_buffer(rand.data(), rand.size(), options, &report);
  CHECK(archive == stored_archive(rand.data(), rand.size()));
  CHECK(report.fell_back());
  CHECK(report.at_a_glance);
  CHECK(report.gave_up_at == 6 * 21846);
  CHECK(models == 0);
  CHECK(watch.last_done == rand.size());
  options.progress = {};

  // A walk of small random steps: every byte value about as often (an
  // order-0 entropy near 8, so the glance is taken), but each byte one of
  // four after the last. The context models see that: coded by the model.
  std::vector<uint8_t> walk(rand.size());
  for (size_t i = 1; i < walk.size(); ++i) walk[i] = static_cast<uint8_t>(walk[i - 1] + 1 + (rand[i] & 3) * 5);
  CHECK(!stored_at_a_glance(walk.data(), walk.size(), 1));
  archive = compress_buffer(walk.data(), walk.size(), options, &report);
  CHECK(!report.fell_back());
  CHECK(!report.at_a_glance);
  CHECK(models == 1);
  CHECK(archive.size() < walk.size() / 3);
  CHECK(decompress_buffer(archive.data(), archive.size()) == walk);

  // Nothing to glance at below the model's check (the model codes it all,
  // then stores it), or for text; the glance off, or the early store off.
  CHECK(!stored_at_a_glance(rand.data(), kGiveUpBytes, 1));
  // With more than 32 streams (a GPU preset: 64 streams for 2 MiB) the
  // glance takes 4 KiB of each, as the check would.
  const std::vector<uint8_t> more = noise(2 << 20, 5);
  uint64_t looked_at = 0;
  CHECK(stored_at_a_glance(more.data(), more.size(), 6, &looked_at));
  CHECK(looked_at == 64 * 4096);
  const std::string words = text(200 << 10);
  CHECK(!stored_at_a_glance(reinterpret_cast<const uint8_t*>(words.data()), words.size(), 1));
  archive = compress_buffer(rand.data(), 100 << 10, options, &report);
  CHECK(report.fell_back());
  CHECK(!report.at_a_glance);
  CHECK(models == 2);
  for (const bool glance : {false, true}) {
    CompressOptions off = options;
    off.glance = glance;
    off.give_up = !glance;
    compress_buffer(rand.data(), rand.size(), off, &report);
    CHECK(report.fell_back());
    CHECK(!report.at_a_glance);
  }
  CHECK(models == 4);

  // Parallel blocks glance each block: of two blocks of noise the first
  // (140 KiB) is stored at a glance, the second (60 KiB) coded and stored.
  archive = compress_blocks(rand.data(), rand.size(), 140 << 10, 2, options, &report);
  CHECK(report.stored_blocks == 2);
  CHECK(report.at_a_glance);
  CHECK(models == 5);
  CHECK(decompress_buffer(archive.data(), archive.size()) == rand);
}
