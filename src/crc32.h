// CRC-32 (ISO-HDLC, the polynomial of gzip and PNG), used for the original
// content and for the header of every archive.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shazip {

// Continues a CRC: crc32(data, n, crc32(prev, m)) == crc32(prev ++ data).
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace shazip
