// libFuzzer target: the archive header parser. Any input either fails with a
// shazip::Error or parses into a header that re-serialises to exactly the
// bytes it was read from; split into several archives, the same holds for each
// and they cover the input exactly. Crashes, sanitizer reports and aborts are
// findings.
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
  // The same bytes as a file of archives back to back: the members tile the
  // input exactly, and each header re-serialises to its bytes.
  try {
    uint64_t next = 0;
    for (const shazip::Member& m : shazip::split_members(data, size)) {
      if (m.offset != next || m.header_size > m.size || m.size > size - m.offset) std::abort();
      const std::vector<uint8_t> again = shazip::write_header(m.header);
      if (again.size() != m.header_size || std::memcmp(again.data(), data + m.offset, m.header_size) != 0) {
        std::abort();
      }
      next = m.offset + m.size;
    }
    if (next != size) std::abort();
  } catch (const shazip::Error&) {
  }
  return 0;
}
