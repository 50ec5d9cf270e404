// libFuzzer target: whole-archive decoding, SHA-RNN included, on small
// archives (seed it with tests/golden/*/*.shz). Inputs whose header asks for
// an expensive model or more than 512 bytes are skipped, so that an execution
// stays in the milliseconds. Any input must end in a decoded buffer equal to
// what the header promises (its CRC is checked inside) or in a shazip::Error.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "src/archive.h"
#include "src/cpu_pin.h"
#include "src/errors.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** argv) {
  shazip::pin_cpu_kernels(*argv);  // the kernels the golden archives record
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t header_size = 0;
  try {
    const shazip::Header h = shazip::parse_header(data, size, &header_size);
    if (h.method == shazip::Method::kNeural &&
        (h.original_size > 512 || h.model.param_count() > 120000 || h.model.mem_len > 256 || h.threads > 2)) {
      return 0;
    }
    const std::vector<uint8_t> out = shazip::decompress_body(h, data + header_size);
    if (out.size() != h.original_size) std::abort();
  } catch (const shazip::Error&) {
  }
  return 0;
}
