// The CUDA vocabulary of model/cuda/'s kernels, and an emulation of it on the
// host, so that the kernels run and are tested on machines without a GPU.
//
// Compiled by nvcc (or included by C++ that calls the kernels), this is CUDA
// itself: the runtime API's types, kernels launched with SHAZIP_LAUNCH.
//
// With SHAZIP_SIMT_EMULATE defined, a C++ translation unit that includes a
// .cu file of model/cuda/ compiles its kernels for the host: SHAZIP_LAUNCH
// runs the grid block by block, each block's threads as fibers (ucontext) of
// the calling thread, switched at __syncthreads(), so that a block's threads
// meet at every barrier as on a GPU; __shared__ variables are statics (the
// blocks run one at a time), "device" pointers are host pointers. The
// arithmetic is the same C++ (model/kernel_math.h picks the host's IEEE
// operations where nvcc's intrinsics stand), so an emulated kernel computes
// what the GPU does wherever the kernel fixes the order of its operations,
// which the bit-exact kernels do. What the emulation cannot show: races
// between threads that a barrier should have ordered (fibers switch only at
// barriers), and nvcc's own compilation. The emulated functions live in
// namespace SHAZIP_CUDA_NS (set it, e.g. to cuda_simt, before including), so
// that they link beside the real ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#ifndef SHAZIP_CUDA_NS
#define SHAZIP_CUDA_NS cuda
#endif

#if !defined(SHAZIP_SIMT_EMULATE)

#include <cuda_runtime_api.h>

#define SHAZIP_LAUNCH(kernel, grid, block, shared, stream) kernel<<<(grid), (block), (shared), (stream)>>>

namespace shazip::simt {

inline cudaError_t copy_async(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  return cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
}
inline cudaError_t last_error() { return cudaGetLastError(); }
// Device memory: allocation (synchronising), release, zeroing on the stream,
// and a copy to the host that waits for the stream.
inline cudaError_t alloc(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
inline void release(void* p) { cudaFree(p); }
inline cudaError_t zero_async(void* p, size_t bytes, cudaStream_t stream) {
  return cudaMemsetAsync(p, 0, bytes, stream);
}
inline cudaError_t to_host(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream);
  return e != cudaSuccess ? e : cudaStreamSynchronize(stream);
}
// Waits until the stream's work is done (before device memory it used is released).
inline cudaError_t wait(cudaStream_t stream) { return cudaStreamSynchronize(stream); }

#if defined(__CUDACC__)
// The block's dynamic shared memory (the launch's third argument).
template <class T>
__device__ __forceinline__ T* dynamic_shared() {
  extern __shared__ unsigned char shazip_dynamic_shared[];
  return reinterpret_cast<T*>(shazip_dynamic_shared);
}
#endif

}  // namespace shazip::simt

#else  // SHAZIP_SIMT_EMULATE: the host emulation

#include <ucontext.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <type_traits>
#include <vector>

#if __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
#else
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };
using cudaStream_t = struct CUstream_st*;
#endif

// (CUDA's headers, where present, define these as nothing for a host compiler.)
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#undef __align__
#define __align__(n) __attribute__((aligned(n)))

struct SimtDim3 {
  unsigned x = 1, y = 1, z = 1;
  SimtDim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
#if !__has_include(<cuda_runtime_api.h>)
using dim3 = SimtDim3;
#endif

// The running thread's coordinates, as CUDA's built-in variables.
inline thread_local SimtDim3 threadIdx, blockIdx, blockDim, gridDim;

namespace shazip::simt {

// Kernel launches, device copies and memsets this thread has run: what a GPU
// would queue (benchmarks/bench_ops.cpp counts them).
inline thread_local long t_operations = 0;
inline long emulated_operations() { return t_operations; }

inline cudaError_t copy_async(void* dst, const void* src, size_t bytes, cudaStream_t) {
  ++t_operations;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t last_error() { return cudaSuccess; }
inline cudaError_t alloc(void** p, size_t bytes) {
  *p = std::malloc(bytes);
  return *p || bytes == 0 ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline void release(void* p) { std::free(p); }
inline cudaError_t zero_async(void* p, size_t bytes, cudaStream_t) {
  ++t_operations;
  std::memset(p, 0, bytes);
  return cudaSuccess;
}
inline cudaError_t to_host(void* dst, const void* src, size_t bytes, cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t wait(cudaStream_t) { return cudaSuccess; }

namespace detail {

struct Block {
  ucontext_t scheduler;
  std::vector<ucontext_t> threads;
  std::vector<char> done;
  size_t current = 0;
  std::vector<unsigned char> shared;  // the launch's dynamic shared memory
  const std::function<void()>* body = nullptr;
};
inline thread_local Block* t_block = nullptr;
constexpr size_t kStack = 64 * 1024;  // per emulated thread

// getcontext() returns twice, as setjmp: kept out of run_grid's frame.
__attribute__((noinline)) inline void init_fiber(ucontext_t* c, char* stack, ucontext_t* link, void (*entry)()) {
  getcontext(c);
  c->uc_stack.ss_sp = stack;
  c->uc_stack.ss_size = kStack;
  c->uc_link = link;
  makecontext(c, entry, 0);
}

inline void fiber_entry() {
  Block& b = *t_block;
  (*b.body)();
  b.done[b.current] = 1;  // then back to the scheduler through uc_link
}

inline std::vector<char>& stacks(size_t threads) {
  static thread_local std::vector<char> pool;
  if (pool.size() < threads * kStack) pool.resize(threads * kStack);
  return pool;
}

// Runs body() once for every thread of every block of the grid.
inline void run_grid(SimtDim3 grid, SimtDim3 block, size_t shared, const std::function<void()>& body) {
  const size_t n = static_cast<size_t>(block.x) * block.y * block.z;
  Block b;
  b.threads.resize(n);
  b.shared.assign(shared, 0);
  b.body = &body;
  std::vector<char>& stack = stacks(n);
  Block* outer = t_block;
  t_block = &b;
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = SimtDim3(bx, by, bz);
        b.done.assign(n, 0);
        for (size_t t = 0; t < n; ++t) init_fiber(&b.threads[t], stack.data() + t * kStack, &b.scheduler, fiber_entry);
        // Each round runs every live thread up to its next barrier or its end.
        for (size_t live = n; live > 0;) {
          live = 0;
          for (size_t t = 0; t < n; ++t) {
            if (b.done[t]) continue;
            b.current = t;
            threadIdx = SimtDim3(static_cast<unsigned>(t % block.x), static_cast<unsigned>(t / block.x % block.y),
                                 static_cast<unsigned>(t / (block.x * block.y)));
            swapcontext(&b.scheduler, &b.threads[t]);
            live += !b.done[t];
          }
        }
      }
    }
  }
  t_block = outer;
}

}  // namespace detail

template <class F>
struct Launch {
  F* kernel;
  SimtDim3 grid, block;
  size_t shared;
  template <class... A>
  void operator()(A... args) const {
    ++t_operations;
    const std::function<void()> body = [&] { kernel(args...); };
    detail::run_grid(grid, block, shared, body);
  }
};

template <class T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(detail::t_block->shared.data());
}

}  // namespace shazip::simt

inline void __syncthreads() {
  shazip::simt::detail::Block& b = *shazip::simt::detail::t_block;
  swapcontext(&b.threads[b.current], &b.scheduler);
}
template <class T>
T __ldg(const T* p) {
  return *p;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline uint64_t __umul64hi(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

template <class D>
SimtDim3 simt_dim(D d) {
  if constexpr (std::is_integral_v<D>) {
    return SimtDim3(static_cast<unsigned>(d));
  } else {
    return SimtDim3(d.x, d.y, d.z);
  }
}

#define SHAZIP_LAUNCH(kernel, grid, block, shared, stream) \
  (static_cast<void>(stream),                              \
   ::shazip::simt::Launch<decltype(kernel)>{kernel, simt_dim(grid), simt_dim(block), static_cast<size_t>(shared)})

#endif  // SHAZIP_SIMT_EMULATE
