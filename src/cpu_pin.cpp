#include "src/cpu_pin.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace shazip {
namespace {

bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, value) == 0;
}

}  // namespace

void pin_cpu_kernels(char** argv) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  if (env_is("OPENBLAS_CORETYPE", "Haswell") && env_is("ATEN_CPU_CAPABILITY", "avx2")) return;
  // Guard against a loop if the environment does not survive the exec.
  if (std::getenv("SHAZIP_PIN_TRIED")) return;
  setenv("SHAZIP_PIN_TRIED", "1", 1);
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  setenv("ATEN_CPU_CAPABILITY", "avx2", 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc?): carry on unpinned; the archive records it.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("ATEN_CPU_CAPABILITY");
#else
  (void)argv;
#endif
}

}  // namespace shazip
