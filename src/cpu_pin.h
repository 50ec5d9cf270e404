// Pins the CPU kernel sets that change floating-point results in LibTorch's
// CPU arithmetic, which archives before format 7 went through, so that one made
// on one x86-64 CPU with AVX2 decodes bit-exactly on any other.
//
// LibTorch picks its kernels by the processor's instruction set
// (ATEN_CPU_CAPABILITY) and OpenBLAS by its core type (OPENBLAS_CORETYPE).
// OpenBLAS reads its variable when the library loads, before main(), so the
// only way to set it from inside shazip is to re-execute the program once with
// both variables set, which costs a second start of LibTorch (about 0.4 s).
// Format 7 on the CPU needs neither kernel set (its arithmetic is shazip's own),
// so the CLI pays for the restart only to decode an older archive.
#pragma once

namespace shazip {

// Whether pin_cpu_kernels() would re-execute: an x86-64 CPU with AVX2 and FMA
// whose process does not run with both variables set yet (and has not tried).
bool pin_would_reexec();

// On an x86-64 CPU with AVX2 and FMA: makes sure the process runs with
// OPENBLAS_CORETYPE=Haswell and ATEN_CPU_CAPABILITY=avx2, re-executing itself
// (through /proc/self/exe, with the same arguments) if they were not already
// so. Call before any LibTorch call and before anything is written. Elsewhere,
// or if the re-exec fails, it returns and the kernels stay whatever the
// libraries pick; an archive made so records "auto", and a pre-7 archive made
// pinned then fails to decode with the reason.
void pin_cpu_kernels(char** argv);

}  // namespace shazip
