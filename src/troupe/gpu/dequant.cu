// Dequantization kernels: whole matrices to fp16 for the prefill GEMMs (one thread per 8
// values, dequantize_group8 from gpu/math/dequant_group.hpp, so a warp reads neighbouring
// bytes and writes 512 contiguous bytes) and embedding rows to fp32.
#include <cstdint>

#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"
#include "troupe/gpu/math/dequant_group.hpp"

namespace troupe::gpu::kernels {

namespace {

template <class Block>
__global__ void dequantize_to_half_kernel(const Block* blocks, int64_t num_groups, uint16_t* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= num_groups) return;
  float v[8];
  dequantize_group8(blocks, 8 * i, v);
  uint4 packed;
  packed.x = (uint32_t)fp32_to_fp16(v[0]) | ((uint32_t)fp32_to_fp16(v[1]) << 16);
  packed.y = (uint32_t)fp32_to_fp16(v[2]) | ((uint32_t)fp32_to_fp16(v[3]) << 16);
  packed.z = (uint32_t)fp32_to_fp16(v[4]) | ((uint32_t)fp32_to_fp16(v[5]) << 16);
  packed.w = (uint32_t)fp32_to_fp16(v[6]) | ((uint32_t)fp32_to_fp16(v[7]) << 16);
  reinterpret_cast<uint4*>(out)[i] = packed;  // out is cudaMalloc'd: 16-byte aligned
}

template <class Block>
__global__ void embed_kernel(const Block* table, int64_t blocks_per_row, const int32_t* tokens, float* x) {
  constexpr int n = block_info<Block>::elements;
  const int64_t row = blockIdx.x;
  const Block* src = table + (int64_t)tokens[row] * blocks_per_row;
  float* dst = x + row * blocks_per_row * n;
  for (int64_t b = threadIdx.x; b < blocks_per_row; b += blockDim.x) dequantize_block(src[b], dst + b * n);
}

}  // namespace

void dequantize_to_half(const device_matrix& w, uint16_t* out, cudaStream_t stream) {
  if ((w.rows * w.cols) % 8 != 0 || reinterpret_cast<uintptr_t>(out) % 16 != 0) {
    throw error(error_code::internal, "dequantize_to_half needs a multiple of 8 values and an aligned output");
  }
  with_block_type(w.type, [&](auto tag) {
    using block = typename decltype(tag)::type;
    const int64_t num_groups = w.rows * w.cols / 8;
    constexpr int threads = 256;
    dequantize_to_half_kernel<block><<<blocks_for(num_groups, threads), threads, 0, stream>>>(
        static_cast<const block*>(w.data), num_groups, out);
  });
  check_launch("dequantize_to_half");
}

void embed(const device_matrix& table, const int32_t* tokens, int32_t num_rows, float* x, cudaStream_t stream) {
  if (num_rows == 0) return;
  with_block_type(table.type, [&](auto tag) {
    using block = typename decltype(tag)::type;
    embed_kernel<block><<<num_rows, 128, 0, stream>>>(static_cast<const block*>(table.data),
                                                      table.cols / block_info<block>::elements, tokens, x);
  });
  check_launch("embed");
}

}  // namespace troupe::gpu::kernels
