// libFuzzer target: the archive header parser. Any input either fails with a
// shazip::Error or parses into a header that re-serialises to exactly the
// bytes it was read from. Crashes, sanitizer reports and aborts are findings.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "src/container.h"
#include "src/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t header_size = 0;
  try {
    const shazip::Header h = shazip::parse_header(data, size, &header_size);
    if (header_size > size) std::abort();
    const std::vector<uint8_t> again = shazip::write_header(h);
    if (again.size() != header_size || std::memcmp(again.data(), data, header_size) != 0) std::abort();
  } catch (const shazip::Error&) {
  }
  return 0;
}
