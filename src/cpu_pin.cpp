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

bool pin_would_reexec() {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
  if (env_is("OPENBLAS_CORETYPE", "Haswell") && env_is("ATEN_CPU_CAPABILITY", "avx2")) return false;
  // Guard against a loop if the environment does not survive the exec.
  return std::getenv("SHAZIP_PIN_TRIED") == nullptr;
#else
  return false;
#endif
}

void pin_cpu_kernels(char** argv) {
  if (!pin_would_reexec()) return;
  setenv("SHAZIP_PIN_TRIED", "1", 1);
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  setenv("ATEN_CPU_CAPABILITY", "avx2", 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc?): carry on unpinned; the archive records it.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("ATEN_CPU_CAPABILITY");
}

}  // namespace shazip
