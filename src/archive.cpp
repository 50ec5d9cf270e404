#include "src/archive.h"

#include <utility>

#include "src/crc32.h"
#include "src/errors.h"

namespace shazip {

std::vector<uint8_t> compress_buffer(const uint8_t* data, uint64_t n, const CompressOptions& options,
                                     CompressReport* report) {
  const uint32_t content_crc = crc32(data, n);
  Header h;
  h.original_size = n;
  h.content_crc = content_crc;
  CompressReport local;
  CompressReport& rep = report ? *report : local;

  std::vector<uint8_t> payload;
  if (n > 0) {
    const model::Preset p = model::preset(options.preset);
    CodingParams params;
    params.model = p.model;
    params.streams = choose_streams(n, p.streams);
    params.runtime = options.runtime;
    params.lookahead = lookahead_pays(params);
    coder::VectorSink<std::vector<uint8_t>> sink(payload);
    rep.stats = encode_neural(data, n, params, sink, options.progress);
    h.method = Method::kNeural;
    h.preset = options.preset;
    h.model = params.model;
    h.streams = params.streams;
    h.threads = params.runtime.threads;
    h.backend = current_backend(params.runtime.device);
    h.payload_size = payload.size();
  }
  std::vector<uint8_t> out = write_header(h);
  if (h.method == Method::kNeural && out.size() + payload.size() >= n + kStoredHeaderSize) {
    // The model could not shrink this input: store it.
    rep.fell_back = true;
    h = Header{};
    h.original_size = n;
    h.content_crc = content_crc;
    out = write_header(h);
  }
  if (h.method == Method::kNeural) {
    out.insert(out.end(), payload.begin(), payload.end());
  } else {
    out.insert(out.end(), data, data + n);
  }
  rep.header = h;
  return out;
}

std::vector<uint8_t> decompress_buffer(const uint8_t* archive, size_t size, const ProgressFn& progress) {
  return decompress_members(archive, split_members(archive, size), progress);
}

std::vector<uint8_t> decompress_members(const uint8_t* file, const std::vector<Member>& members,
                                        const ProgressFn& progress) {
  std::vector<uint8_t> out;
  double bits_before = 0;
  for (const Member& m : members) {
    const uint64_t before = out.size();
    double bits = 0;
    ProgressFn member_progress;
    if (progress) {
      member_progress = [&](uint64_t done, double b) {
        bits = b;
        progress(before + done, bits_before + b);
      };
    }
    std::vector<uint8_t> part = decompress_body(m.header, file + m.offset + m.header_size, member_progress);
    if (out.empty()) {
      out = std::move(part);  // one archive (the usual file): no copy
    } else {
      out.insert(out.end(), part.begin(), part.end());
    }
    bits_before += bits;
  }
  return out;
}

std::vector<uint8_t> decompress_body(const Header& h, const uint8_t* body, const ProgressFn& progress) {
  std::vector<uint8_t> out;
  if (h.method == Method::kStored) {
    out.assign(body, body + h.original_size);
  } else {
    const std::string why = backend_mismatch(h, model::backend_info());
    if (!why.empty()) throw Error(ErrorCode::kBackend, "cannot decode on this machine: " + why);
    CodingParams params;
    params.model = h.model;
    params.streams = h.streams;
    params.runtime.threads = h.threads;
    params.runtime.device = h.backend.device;
    out.resize(h.original_size);
    decode_neural(body, h.payload_size, h.original_size, params, out.data(), progress);
  }
  if (crc32(out.data(), out.size()) != h.content_crc) {
    throw Error(ErrorCode::kCorrupt, "checksum mismatch: the decoded data is not the original");
  }
  return out;
}

}  // namespace shazip
