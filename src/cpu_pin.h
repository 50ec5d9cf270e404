// Pins the CPU kernel sets that change floating-point results, so that an
// archive made on one x86-64 CPU with AVX2 decodes bit-exactly on any other.
//
// LibTorch picks its kernels by the processor's instruction set
// (ATEN_CPU_CAPABILITY) and OpenBLAS by its core type (OPENBLAS_CORETYPE).
// OpenBLAS reads its variable when the library loads, before main(), so the
// only way to set it from inside shazip is to re-execute the program once with
// both variables set. Call first thing in main(), before any LibTorch call.
#pragma once

namespace shazip {

// On an x86-64 CPU with AVX2 and FMA: makes sure the process runs with
// OPENBLAS_CORETYPE=Haswell and ATEN_CPU_CAPABILITY=avx2, re-executing itself
// (through /proc/self/exe) if they were not already so. Elsewhere, or if the
// re-exec fails, it returns and the kernels stay whatever the libraries pick;
// the archive then records "auto" and decodes only on a like machine.
void pin_cpu_kernels(char** argv);

}  // namespace shazip
