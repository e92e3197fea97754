// Shared by the .cu files: launch checks, the ggml type -> block struct dispatch, and
// block-wide reductions whose result every thread of the block receives.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "troupe/gpu/math/layer_math.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/quant.hpp"

namespace troupe::gpu::kernels {

inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw error(error_code::internal, std::string(what) + ": " + cudaGetErrorString(e));
}

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

template <class Block> struct block_tag { using type = Block; };

// Calls f(block_tag<Block>{}) for the block struct of `type`.
template <class F>
void with_block_type(ggml_type type, F&& f) {
  switch (type) {
    case ggml_type::f32: return f(block_tag<f32_value>{});
    case ggml_type::f16: return f(block_tag<f16_value>{});
    case ggml_type::bf16: return f(block_tag<bf16_value>{});
    case ggml_type::q4_0: return f(block_tag<block_q4_0>{});
    case ggml_type::q4_1: return f(block_tag<block_q4_1>{});
    case ggml_type::q5_0: return f(block_tag<block_q5_0>{});
    case ggml_type::q5_1: return f(block_tag<block_q5_1>{});
    case ggml_type::q8_0: return f(block_tag<block_q8_0>{});
    case ggml_type::q4_k: return f(block_tag<block_q4_k>{});
    case ggml_type::q6_k: return f(block_tag<block_q6_k>{});
    default:
      throw error(error_code::unsupported, "the CUDA backend has no kernel for tensor type " +
                                               std::string(traits_of(type).name));
  }
}

template <class T>
__device__ T warp_sum(T v) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <class T>
__device__ T warp_max(T v) {
  for (int off = 16; off > 0; off /= 2) {
    const T o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o > v ? o : v;
  }
  return v;
}

// Sum (or max) over the block; scratch holds 33 values. Every thread gets the result.
template <class T>
__device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, num_warps = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < num_warps ? scratch[lane] : T(0);
    w = warp_sum(w);
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  return scratch[32];
}

template <class T>
__device__ T block_max(T v, T lowest, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, num_warps = (blockDim.x + 31) / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < num_warps ? scratch[lane] : lowest;
    w = warp_max(w);
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  return scratch[32];
}

}  // namespace troupe::gpu::kernels
