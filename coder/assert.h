// Invariant checks shared by every library of shazip (the first of the three
// error tiers in docs/DESIGN.md). A failed SHAZIP_ASSERT is a bug in shazip,
// never a property of the input: it prints file and line and aborts. Bad input
// is reported through exceptions by the container and the driver instead.
#pragma once

#include <cstdio>
#include <cstdlib>

#define SHAZIP_ASSERT(cond)                                                   \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "shazip: internal error: %s:%d: assertion %s\n",   \
                   __FILE__, __LINE__, #cond);                                \
      std::abort();                                                           \
    }                                                                         \
  } while (0)
