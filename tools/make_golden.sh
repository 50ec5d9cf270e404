#!/usr/bin/env bash
# Writes tests/golden/vN/*.shz (N: the built shazip's format version) and
# regenerates tests/golden-errors/*.shz from them. Run only on a deliberate
# format or model change (bump kFormatVersion and record it in docs/FORMAT.md
# first). The archives of older versions stay as they are: they must keep
# decoding byte-exactly forever, or be refused with a clear message.
# Usage: tools/make_golden.sh [SHAZIP_BINARY]   (needs python3)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-build/shazip}")"
# shazip pins LibTorch's and OpenBLAS's CPU kernels only to decode archives
# before format 7; pin them here too, so that the goldens' headers, which
# record the kernel sets, do not depend on the machine that made them.
export OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2

version="$("$bin" -V | sed -n 's/.*archive format \([0-9]*\).*/\1/p')"
[ -n "$version" ] || { echo "make_golden.sh: cannot read the format version of $bin" >&2; exit 1; }
mkdir -p "tests/golden/v$version"
cd tests/golden
for f in design.txt one-byte.txt empty.txt noise.bin; do "$bin" -q -1 -T 1 -c "$f" > "v$version/$f.shz"; done
"$bin" -q -2 -T 1 -c design-p2.txt > "v$version/design-p2.txt.shz"
# A GPU preset, coded on the CPU. v11's archive, made by shazip 0.13, is mix
# level 3 (test_cli checks it); since 0.14 level 3 codes only inputs above
# 1 MiB, so this small input now gives level 2.
"$bin" -q -6 -T 1 -c design-p6.txt > "v$version/design-p6.txt.shz"
# Two streams (inputs of 64 KiB and more have them), so that the stream
# contexts of format 12 are in use: a frozen copy of docs/DESIGN.md and
# docs/FORMAT.md as they were then. (Every archive from format 13 on has the
# class contexts, from format 14 on the own rates, from format 15 on the
# one-sided inputs, from format 16 on the nibble groups, from format 18 on
# the text contexts, from format 19 on the table shapes, from format 20 on
# the long matches and the scope context, from format 21 on the more run
# maps and the word's indirect context, from format 22 on the mixer
# selectors, from format 23 on the layer-2 inputs and from format 24 on the
# shape contexts, with one stream or more; format 17 writes the same bits as
# 16 behind a shorter header, but
# from shazip 0.20 this two-stream input trains every 16 positions:
# model::seg_for_input.)
"$bin" -q -2 -T 1 -c streams-2.txt > "v$version/streams-2.txt.shz"

# A neural archive small enough for the decoding fuzzer (tests/fuzz).
python3 -c "import sys; sys.stdout.write(('The model learns while it codes. ' * 16)[:500])" |
  "$bin" -q -1 -T 1 -c > ../fuzz/seeds/repeat-500.txt.shz
# And one of the default preset (its attention), from design.txt's first 500 bytes.
head -c 500 design.txt | "$bin" -q -2 -T 1 -c > ../fuzz/seeds/design-500-p2.txt.shz

# Broken archives, each named NAME.EXITCODE.shz, derived from design.txt.shz.
cd ../golden-errors
GOLDEN_VERSION="$version" python3 - <<'PY'
import os, struct, zlib
src = open('../golden/v%s/design.txt.shz' % os.environ['GOLDEN_VERSION'], 'rb').read()
def skip_varint(b, pos):      # a LEB128 number (format 17 on)
    while b[pos] & 0x80:
        pos += 1
    return pos + 1

def settings_offset(b):       # the compact block's settings byte (format 17 on):
    pos = 22                  # after 11 LEB128 counts that follow preset and device
    for _ in range(11):
        pos = skip_varint(b, pos)
    return pos

def more_flags_offset(b):     # the compact block's more flags (format 21 on): after the
    pos = settings_offset(b)  # settings byte, the settings it names (the seed a number)
    written = b[pos]
    pos += 1 + 4 * bin(written & 0x3f).count('1')
    if written & 0x40:
        pos = skip_varint(b, pos)
    return pos

def header_size(b):           # header CRC included
    if b[4] >= 17:            # the compact block: 11 LEB128 counts after preset and device,
        pos = more_flags_offset(b)  # the settings, from format 21 the more flags (a number)
        if b[4] >= 21:
            pos = skip_varint(b, pos)
    else:                     # the fixed block: the first string at 90 (88 before version 8)
        pos = 90 if b[4] >= 8 else 88
    for _ in range(3):
        pos += 1 + b[pos]
    return pos + 4

hs = header_size(src)

def reseal(b):                # recompute the header CRC after an edit
    b = bytearray(b)
    n = header_size(b)
    b[n - 4:n] = struct.pack('<I', zlib.crc32(bytes(b[:n - 4])) & 0xffffffff)
    return bytes(b)

def flip(offset, mask, seal, *more):
    b = bytearray(src)
    b[offset] ^= mask
    for o, m in more:
        b[o] ^= m
    return reseal(b) if seal else bytes(b)

out = {
    'not-an-archive.3.shz': b'Hello, this is plain text, not an archive.\n',
    'truncated-header.4.shz': src[:40],
    'truncated-payload.4.shz': src[:hs + (len(src) - hs) // 2],
    'damaged-payload.5.shz': flip(hs + 100, 0x04, False),
    'content-crc.5.shz': flip(16, 0x01, True),
    'header-crc.5.shz': flip(hs - 6, 0x01, False),  # in the last string (the CPU capability)
    # bits 0-15: lag, flat training, step, training, CUDA step, CUDA training kernels, block norm,
    # stream contexts (format 12), class contexts (format 13), own rates (format 14),
    # one-sided inputs (format 15), nibble groups (format 16), text contexts (format 18),
    # table shapes (format 19), long matches and scope context (format 20, bits 14 and 15);
    # from format 21 the compact block's more flags: bits 16 and 17 the more run maps and
    # the word's indirect context, 18 the mixer selectors (format 22), 19 the layer-2
    # inputs (format 23), 20 the shape contexts (format 24), so its bit 5 (flag bit 21)
    # is reserved
    'reserved-flags.5.shz': flip(more_flags_offset(src), 0x20, True),
    'newer-version.6.shz': bytes(src[:4]) + bytes([200]) + src[5:],
    # Made on a GPU whose training ran on LibTorch (CUDA training kernels
    # off): only that GPU decodes it. (With them on it would decode anywhere.)
    'cuda-backend.7.shz': flip(21, 0x01, True, (6, 0x20)),
}
# Kernels this build does not use: an archive of format 6, whose training
# step ran on the BLAS (format 7's CPU archives need none).
s = bytearray(open('../golden/v6/design.txt.shz', 'rb').read())
bp = 88 + 1 + s[88]
n = s[bp]
old = bytes(s[bp + 1:bp + 1 + n])
new = old.replace(b'core=Haswell', b'core=Zen____')
assert len(new) == len(old) and new != old
s[bp + 1:bp + 1 + n] = new
out['other-cpu-kernels.7.shz'] = reseal(s)
for name, data in out.items():
    open(name, 'wb').write(data)
PY
