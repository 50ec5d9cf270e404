// libFuzzer target: whole-archive decoding, SHA-RNN included, on small
// archives, one or several back to back (seed it with tests/golden/*/*.shz).
// Inputs whose headers ask for a model larger than preset 3's (so the default
// preset 2 and its attention are in), more than 512 bytes in one archive or
// 2048 in all are skipped, so that an execution stays in the tens of
// milliseconds. Any input must end in a decoded buffer of the size the headers
// promise (each archive's CRC is checked inside) or in a shazip::Error.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "src/archive.h"
#include "src/container.h"
#include "src/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    // One archive or several back to back, as the CLI decodes them.
    const std::vector<shazip::Member> members = shazip::split_members(data, size);
    for (const shazip::Member& m : members) {
      const shazip::Header& h = m.header;
      if (h.method == shazip::Method::kNeural &&
          (h.original_size > 512 || h.model.param_count() > 300000 || h.model.mem_len > 256 || h.threads > 2)) {
        return 0;
      }
    }
    const uint64_t total = shazip::content_size(members);
    if (total > 2048) return 0;
    const std::vector<uint8_t> out = shazip::decompress_members(data, members);
    if (out.size() != total) std::abort();
  } catch (const shazip::Error&) {
  }
  return 0;
}
