// Dequantization kernels: whole matrices to fp16 for the prefill GEMMs (one thread per
// block, the math is dequantize_block_to_half from gpu/math/layer_math.hpp) and embedding
// rows to fp32.
#include "troupe/gpu/kernel_common.cuh"
#include "troupe/gpu/kernels.hpp"

namespace troupe::gpu::kernels {

namespace {

template <class Block>
__global__ void dequantize_to_half_kernel(const Block* blocks, int64_t num_blocks, uint16_t* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= num_blocks) return;
  dequantize_block_to_half(blocks[i], out + i * block_info<Block>::elements);
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
  with_block_type(w.type, [&](auto tag) {
    using block = typename decltype(tag)::type;
    const int64_t num_blocks = w.rows * w.cols / block_info<block>::elements;
    constexpr int threads = 256;
    dequantize_to_half_kernel<block><<<blocks_for(num_blocks, threads), threads, 0, stream>>>(
        static_cast<const block*>(w.data), num_blocks, out);
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
