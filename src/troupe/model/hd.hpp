// TROUPE_HD marks per-element math that the CPU backend and the CUDA kernels share.
#pragma once
#if defined(__CUDACC__)
#define TROUPE_HD __host__ __device__ inline
#else
#define TROUPE_HD inline
#endif
